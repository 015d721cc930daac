package kafka_test

import (
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
)

// runPipeline runs kafkatest.RunPipeline with a short backoff and the
// test logger, and returns Run's error and the committed checkpoint.
func runPipeline(t *testing.T, sink bridge.Sink, notes []*bridge.Notification, cfg bridge.PipelineConfig, onSubmit func(i int)) (bridge.Checkpoint, error) {
	t.Helper()
	if cfg.Backoff == nil {
		cfg.Backoff = func(attempt int) time.Duration {
			return min(time.Duration(attempt)*10*time.Millisecond, 100*time.Millisecond)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	return kafkatest.RunPipeline(testContext(t, 90*time.Second), sink, notes, cfg, onSubmit)
}

// TestPipelineBrokerRestart drives the sink through bridge.Pipeline while
// the broker is stopped and restarted on the same port.
func TestPipelineBrokerRestart(t *testing.T) {
	cl := kafkatest.NewRestartableCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4))
	s := newSink(t, cl, kafka.Config{Topic: "piped", Key: "{identifier.step}", BatchSize: 25, MaxInFlight: 128,
		WriteTimeout: 2 * time.Second, DialTimeout: time.Second})
	const total = 4000
	notes := bridgetest.Notifications(1, total, bridgetest.Size(600))
	var restarted atomic.Bool
	cp, runErr := runPipeline(t, s, notes, bridge.PipelineConfig{MaxInFlight: 128}, func(i int) {
		if i == total/3 {
			cl.Stop()
			bridgetest.Eventually(t, 20*time.Second, "the sink to report the outage", func() bool { return s.Healthy() != nil })
			cl.Start()
			restarted.Store(true)
		}
	})
	if runErr != nil {
		t.Fatalf("Run: %v", runErr)
	}
	if !restarted.Load() {
		t.Fatal("the broker was not restarted")
	}
	if cp.Sequence != total {
		t.Fatalf("checkpoint %d, want %d", cp.Sequence, total)
	}
	dups := checkOrdered(t, readTopic(t, cl, "piped"), seqs(1, total))
	t.Logf("duplicate records: %d", dups)
}

// TestPipelineOnReject follows permanent rejections (a record too large for
// the broker, a topic that does not exist) through each BRIDGE_ON_REJECT.
func TestPipelineOnReject(t *testing.T) {
	type rejectCase struct {
		name   string
		policy bridge.RejectPolicy
	}
	policies := []rejectCase{{"fail", bridge.RejectFail}, {"dlq", bridge.RejectDLQ}, {"skip", bridge.RejectSkip}}
	causes := []struct {
		name  string
		opts  []kfake.Opt
		cfg   kafka.Config
		notes func() []*bridge.Notification
		bad   uint64 // the rejected sequence
		topic func(n *bridge.Notification) string
	}{
		{
			name: "too-large",
			opts: []kfake.Opt{kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1),
				kfake.BrokerConfigs(map[string]string{"message.max.bytes": "5000"})},
			cfg: kafka.Config{Topic: "main", DLQTopic: "dlq", BatchSize: 4},
			notes: func() []*bridge.Notification {
				ns := bridgetest.Notifications(1, 40, bridgetest.Size(600))
				ns[19] = bridgetest.Notification(20, bridgetest.Size(8000))
				return ns
			},
			bad:   20,
			topic: func(*bridge.Notification) string { return "main" },
		},
		{
			// Topics per step; main.3 does not exist and is not created.
			name: "unknown-topic",
			opts: []kfake.Opt{kfake.SeedTopics(1, "main.0", "main.1", "main.2", "dlq")},
			cfg:  kafka.Config{Topic: "main.{identifier.step}", DLQTopic: "dlq"},
			notes: func() []*bridge.Notification {
				ns := bridgetest.Notifications(1, 40)
				for i, n := range ns {
					if n.Sequence != 20 {
						ns[i] = bridgetest.Notification(n.Sequence, bridgetest.Identifier(`{"step":"`+string(rune('0'+n.Sequence%3))+`"}`))
					} else {
						ns[i] = bridgetest.Notification(n.Sequence, bridgetest.Identifier(`{"step":"3"}`))
					}
				}
				return ns
			},
			bad: 20,
			topic: func(n *bridge.Notification) string {
				v, _ := n.IdentifierValue("step")
				return "main." + v
			},
		},
	}
	for _, cause := range causes {
		for _, pc := range policies {
			t.Run(cause.name+"/"+pc.name, func(t *testing.T) {
				cl := kafkatest.NewCluster(t, cause.opts...)
				s := newSink(t, cl, cause.cfg)
				notes := cause.notes()
				cp, runErr := runPipeline(t, s, notes, bridge.PipelineConfig{MaxInFlight: 16, OnReject: pc.policy}, nil)

				stored := map[string][]*kgo.Record{}
				for _, n := range notes {
					tp := cause.topic(n)
					if _, ok := stored[tp]; !ok && tp != "main.3" {
						stored[tp] = readTopic(t, cl, tp)
					}
				}
				var all []*kgo.Record
				for _, rs := range stored {
					all = append(all, rs...)
				}
				var want []uint64
				for _, n := range notes {
					if n.Sequence != cause.bad && (pc.policy != bridge.RejectFail || n.Sequence < cause.bad) {
						want = append(want, n.Sequence)
					}
				}
				if dups := checkOrdered(t, all, want); dups != 0 {
					t.Errorf("%d duplicates", dups)
				}
				for _, r := range all {
					if seqOf(t, r) == cause.bad {
						t.Fatalf("the rejected notification was stored in %s", r.Topic)
					}
				}
				var dlq []*kgo.Record
				if pc.policy != bridge.RejectDLQ || cause.name != "too-large" {
					// The DLQ topic is auto-created only when used.
					if recs, err := cl.Records(testContext(t, 5*time.Second), "dlq"); err == nil {
						dlq = recs
					}
				} else {
					dlq = readTopic(t, cl, "dlq")
				}
				switch pc.policy {
				case bridge.RejectFail:
					var rej *bridge.RejectedError
					if !errors.As(runErr, &rej) || rej.Sequence != cause.bad {
						t.Fatalf("Run = %v, want a RejectedError for sequence %d", runErr, cause.bad)
					}
					if cp.Sequence >= cause.bad {
						t.Fatalf("checkpoint %d passed the rejected sequence %d", cp.Sequence, cause.bad)
					}
					if len(dlq) != 0 {
						t.Fatalf("%d dead letters under fail", len(dlq))
					}
				case bridge.RejectDLQ:
					if runErr != nil {
						t.Fatalf("Run: %v", runErr)
					}
					if len(dlq) != 1 {
						t.Fatalf("%d dead letters, want 1", len(dlq))
					}
					id, _ := kafkatest.Header(dlq[0], kafka.HeaderID)
					kind, _ := kafkatest.Header(dlq[0], kafka.HeaderDLQKind)
					reason, _ := kafkatest.Header(dlq[0], kafka.HeaderDLQReason)
					if id != bridge.EventID("mars", cause.bad) || kind != "rejected" || !strings.Contains(reason, `kafka topic "`) {
						t.Fatalf("dead letter id %q kind %q reason %q", id, kind, reason)
					}
					omitted, _ := kafkatest.Header(dlq[0], kafka.HeaderDLQBodyOmitted)
					switch bad := notes[cause.bad-1]; {
					case cause.name == "too-large":
						// Too large for the dead-letter topic as well.
						if len(dlq[0].Value) != 0 || omitted != strconv.Itoa(len(bad.CloudEvent)) {
							t.Fatalf("dead letter body %d bytes, %s=%q; want the body left out", len(dlq[0].Value), kafka.HeaderDLQBodyOmitted, omitted)
						}
					case string(dlq[0].Value) != string(bad.CloudEvent) || omitted != "":
						t.Fatalf("dead letter body %s (%s=%q)", dlq[0].Value, kafka.HeaderDLQBodyOmitted, omitted)
					}
				case bridge.RejectSkip:
					if runErr != nil {
						t.Fatalf("Run: %v", runErr)
					}
					if len(dlq) != 0 {
						t.Fatalf("%d dead letters under skip", len(dlq))
					}
				}
				if pc.policy != bridge.RejectFail && cp.Sequence != uint64(len(notes)) {
					t.Fatalf("checkpoint %d, want %d", cp.Sequence, len(notes))
				}
			})
		}
	}
}
