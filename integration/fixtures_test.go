package integration

import (
	"context"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/integration/harness"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

const (
	eventType   = "mars"
	streamName  = "AVISO"
	subject     = "aviso.mars"
	kafkaTopic  = "aviso.mars"
	startupWait = 30 * time.Second // start-up and ready of one bridge on a busy 2-core machine
)

// avisoEnv is the source side of a bridge configuration: avisotest, the
// event type, history from sequence 1, a checkpoint file in dir.
func avisoEnv(srv *avisotest.Server, dir string) env {
	return env{
		"AVISO_URL":        srv.URL,
		"AVISO_EVENT_TYPE": eventType,
		"AVISO_FROM_ID":    "1",
		"CHECKPOINT_FILE":  filepath.Join(dir, "checkpoint.json"),
	}
}

// jetStreamEnv adds a JetStream sink (stream AVISO created by the bridge).
func jetStreamEnv(e env, ns *natstest.Server) env {
	return e.With("SINK", "jetstream", "NATS_URL", ns.URL, "NATS_STREAM", streamName, "NATS_STREAM_CREATE", "true",
		"NATS_STREAM_SUBJECTS", "aviso.>")
}

// kafkaEnv adds a Kafka sink.
func kafkaEnv(e env, cl *kafkatest.Cluster) env {
	return e.With("SINK", "kafka", "KAFKA_BROKERS", cl.Addr)
}

// newKafka starts a kfake broker that keeps its data across Stop/Start and
// creates topics on first use (3 partitions: the default key keeps one event
// type in one of them).
func newKafka(t testing.TB) *kafkatest.Cluster {
	return kafkatest.NewRestartableCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
}

// identifier is the identifier of notification i.
func identifier(i int) map[string]string {
	return map[string]string{"class": "od", "date": "20261129", "step": strconv.Itoa(i % 240)}
}

// publish publishes n notifications and returns their sequences.
func publish(srv *avisotest.Server, n int) []uint64 {
	out := make([]uint64, 0, n)
	for i := range n {
		out = append(out, srv.Publish(eventType, identifier(i), map[string]any{"i": i, "note": "data is ready"}))
	}
	return out
}

// publisher publishes n notifications at about rate per second in a
// goroutine; done is closed after the last one. The sequences are in seqs
// once done is closed.
type publisher struct {
	done chan struct{}
	seqs []uint64
	n    atomic.Int64 // published so far, readable while publishing
}

func publishAt(ctx context.Context, srv *avisotest.Server, n, rate int) *publisher {
	p := &publisher{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		const tick = 10 * time.Millisecond
		per := max(1, rate*int(tick)/int(time.Second))
		tk := time.NewTicker(tick) // pacing, not synchronisation
		defer tk.Stop()
		for i := 0; i < n; {
			for j := 0; j < per && i < n; j, i = j+1, i+1 {
				p.seqs = append(p.seqs, srv.Publish(eventType, identifier(i), map[string]any{"i": i}))
				p.n.Add(1)
			}
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	return p
}

// readJetStream reads stream AVISO back, in stream order, and returns the
// sequence of each message from its Nats-Msg-Id header (checked against
// ce-id).
func readJetStream(t testing.TB, ns *natstest.Server) []uint64 {
	t.Helper()
	return readJetStreamSubject(t, ns, subject)
}

func readJetStreamSubject(t testing.TB, ns *natstest.Server, filter string) []uint64 {
	t.Helper()
	js := ns.JetStream(t)
	msgs := natstest.ReadStream(t, js, streamName, filter)
	out := make([]uint64, 0, len(msgs))
	for _, m := range msgs {
		id := m.Headers().Get(jetstream.MsgIDHeader)
		if ce := m.Headers().Get("ce-id"); ce != id {
			t.Fatalf("JetStream message on %s: Nats-Msg-Id %q, ce-id %q", m.Subject(), id, ce)
		}
		out = append(out, seqOfID(t, id))
	}
	return out
}

// jetStreamCount returns how many messages stream AVISO holds (0 when it does
// not exist yet).
func jetStreamCount(t testing.TB, js jetstream.JetStream) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, streamName)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// readKafka reads topic back and returns the sequence of each record from its
// ce_id header, in offset order (every record of one event type is in one
// partition with the default key).
func readKafka(t testing.TB, cl *kafkatest.Cluster, topic string) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs, err := cl.Records(ctx, topic)
	if err != nil {
		t.Fatalf("read Kafka topic %s: %v", topic, err)
	}
	out := make([]uint64, 0, len(recs))
	part := int32(-1)
	for _, r := range recs {
		if part >= 0 && r.Partition != part {
			t.Fatalf("topic %s: records of one event type in partitions %d and %d (KAFKA_KEY={event_type} keeps one)", topic, part, r.Partition)
		}
		part = r.Partition
		id, ok := kafkatest.Header(r, "ce_id")
		if !ok {
			t.Fatalf("topic %s offset %d: no ce_id header", topic, r.Offset)
		}
		out = append(out, seqOfID(t, id))
	}
	return out
}

// kafkaCount returns how many records topic holds (0 when unknown).
func kafkaCount(cl *kafkatest.Cluster, topic string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := cl.Records(ctx, topic)
	if err != nil {
		return 0
	}
	return len(recs)
}

// seqOfID splits a CloudEvent id "mars@<sequence>".
func seqOfID(t testing.TB, id string) uint64 {
	t.Helper()
	return harness.SeqOfID(t, eventType, id)
}

// cloudEvents fetches every notification from sequence 1 from srv through a
// plain /api/v1/replay request and returns the CloudEvent JSON of each, as
// the server writes it, by sequence.
func cloudEvents(t testing.TB, srv *avisotest.Server) map[uint64][]byte {
	t.Helper()
	out := map[uint64][]byte{}
	for _, ev := range harness.Replay(t, srv.Client(), srv.URL, eventType, "{}", 1) {
		out[ev.Sequence] = ev.CloudEvent
	}
	return out
}
