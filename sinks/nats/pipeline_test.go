package nats

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/natskv"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// runPipeline feeds ns through bridge.NewPipeline over sink and store,
// closes the input and returns Run's error. during, when set, runs while
// the pipeline works (after start) and before the input is closed.
func runPipeline(t *testing.T, sink bridge.Sink, store bridge.Store, ns []*bridge.Notification,
	policy bridge.RejectPolicy, during func()) error {
	t.Helper()
	return runPipelineMetrics(t, sink, store, ns, policy, nil, during)
}

func runPipelineMetrics(t *testing.T, sink bridge.Sink, store bridge.Store, ns []*bridge.Notification,
	policy bridge.RejectPolicy, m *bridge.Metrics, during func()) error {
	t.Helper()
	p, err := bridge.NewPipeline(sink, store, bridge.PipelineConfig{
		MaxInFlight:        64,
		CheckpointInterval: 20 * time.Millisecond,
		OnReject:           policy,
		Backoff:            func(int) time.Duration { return 50 * time.Millisecond },
		Metrics:            m,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 60*time.Second)
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		for _, n := range ns {
			if err := p.Submit(ctx, n); err != nil {
				return // stopped (a fatal rejection)
			}
		}
	}()
	if during != nil {
		during()
	}
	<-submitted
	p.CloseInput()
	return <-runErr
}

// counter is a bridge.Counter for assertions.
type counter struct{ n atomic.Int64 }

func (c *counter) Inc()          { c.n.Add(1) }
func (c *counter) Add(f float64) { c.n.Add(int64(f)) }

func ids(msgs []jetstream.Msg) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Headers().Get("Nats-Msg-Id")
	}
	return out
}

func notificationIDs(ns []*bridge.Notification) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

// A notification the stream rejects permanently (over its max message
// size) follows BRIDGE_ON_REJECT through the pipeline with the real sink.
func TestPipelineRejectPolicies(t *testing.T) {
	srv := natstest.NewServer(t)
	js := avisoStream(t, srv, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 1024 })
	srv.CreateStream(t, jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq.>"}})

	tests := []struct {
		policy     bridge.RejectPolicy
		eventType  string
		wantStored func(ns []*bridge.Notification) []*bridge.Notification
		wantCP     uint64
		wantDLQ    bool
	}{
		{bridge.RejectFail, "failing", func(ns []*bridge.Notification) []*bridge.Notification { return ns[:9] }, 9, false},
		{bridge.RejectSkip, "skipping", func(ns []*bridge.Notification) []*bridge.Notification {
			return append(append([]*bridge.Notification{}, ns[:9]...), ns[10:]...)
		}, 20, false},
		{bridge.RejectDLQ, "dlqing", func(ns []*bridge.Notification) []*bridge.Notification {
			return append(append([]*bridge.Notification{}, ns[:9]...), ns[10:]...)
		}, 20, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.policy), func(t *testing.T) {
			ns := bridgetest.Notifications(1, 20, bridgetest.EventType(tt.eventType), bridgetest.DataSize(200))
			ns[9] = bridgetest.Notifications(10, 1, bridgetest.EventType(tt.eventType), bridgetest.DataSize(2000))[0] // too large for AVISO
			sink := newJetStreamSink(t, srv, Config{Stream: "AVISO", DLQSubject: "dlq.{event_type}", MaxInFlight: 64}, nil)
			mem := checkpoint.NewMemory()
			store, err := mem.Open("k")
			if err != nil {
				t.Fatal(err)
			}
			err = runPipeline(t, sink, store, ns, tt.policy, nil)
			var rej *bridge.RejectedError
			if tt.policy == bridge.RejectFail {
				if !errors.As(err, &rej) || rej.ID != ns[9].ID || !bridge.IsPermanent(rej.Err) {
					t.Fatalf("Run = %v, want a RejectedError for %s", err, ns[9].ID)
				}
			} else if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got, _ := mem.Checkpoint("k"); got.Sequence != tt.wantCP {
				t.Errorf("checkpoint %d, want %d", got.Sequence, tt.wantCP)
			}
			got := ids(natstest.ReadStream(t, js, "AVISO", "aviso."+tt.eventType))
			want := notificationIDs(tt.wantStored(ns))
			if tt.policy == bridge.RejectFail && len(got) > len(want) {
				got = got[:len(want)] // later ones may have been in flight already
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("stored\n %v\nwant\n %v", got, want)
			}
			dlq := natstest.ReadStream(t, js, "DLQ", "dlq."+tt.eventType)
			if !tt.wantDLQ {
				if len(dlq) != 0 {
					t.Fatalf("%d dead letters, want none", len(dlq))
				}
				return
			}
			if len(dlq) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dlq))
			}
			h := dlq[0].Headers()
			if h.Get("Aviso-Bridge-Dlq-Kind") != "rejected" || h.Get("Nats-Msg-Id") != "dlq:"+ns[9].ID ||
				!strings.Contains(h.Get("Aviso-Bridge-Dlq-Reason"), "message size exceeds maximum") ||
				string(dlq[0].Data()) != string(ns[9].CloudEvent) {
				t.Errorf("dead letter headers %v body %s", h, dlq[0].Data())
			}
		})
	}
}

// The server (stream and KV bucket alike) goes away for a few seconds
// while the pipeline runs with the JetStream sink and the KV store:
// everything arrives once and in order, and the checkpoint ends at the last
// notification.
func TestPipelineOutageWithKVStore(t *testing.T) {
	srv := natstest.NewServer(t)
	js := avisoStream(t, srv)
	// One connection for the sink and the store, as cmd/aviso-bridge
	// shares it.
	nc, err := Connect(testCtx(t, 10*time.Second), ConnConfig{URL: srv.URL}, ConnectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sink, err := NewJetStreamSink(testCtx(t, 10*time.Second), Config{ConnConfig: ConnConfig{URL: srv.URL}, Stream: "AVISO", MaxInFlight: 64, PublishTimeout: 2 * time.Second}, Options{Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close(context.Background()) })
	store, err := natskv.Open(testCtx(t, 10*time.Second), nc, natskv.Config{Key: strings.Repeat("ab", 32)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	ns := bridgetest.Notifications(1, 3000, bridgetest.EventType("mars"), bridgetest.DataSize(600))

	m := bridge.NopMetrics()
	var retries counter
	m.SinkRetries = &retries
	err = runPipelineMetrics(t, sink, store, ns, bridge.RejectFail, m, func() {
		bridgetest.Eventually(t, 20*time.Second, "400 stored messages", func() bool { return streamMsgs(js) >= 400 })
		if n := streamMsgs(js); n >= uint64(len(ns)) {
			t.Fatalf("all %d stored before the outage", n)
		}
		srv.Shutdown()
		down := time.Now()
		bridgetest.Eventually(t, 10*time.Second, "the sink to see the outage", func() bool { return sink.Healthy() != nil })
		<-time.After(3*time.Second - time.Since(down))
		srv.Restart()
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if retries.n.Load() == 0 {
		t.Fatal("the pipeline never re-published: the outage was not exercised")
	}
	got := ids(natstest.ReadStream(t, srv.JetStream(t), "AVISO", ""))
	if want := notificationIDs(ns); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("stream holds %d messages, want %d in order", len(got), len(want))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, found, err := store.Load(ctx); err != nil || !found || c.Sequence != 3000 {
		t.Fatalf("checkpoint %+v %v %v, want 3000", c, found, err)
	}
}
