package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// rejectSink is a sink set up so that one notification is rejected
// permanently for a realistic reason.
type rejectSink struct {
	name string
	// setup starts the destination and returns the sink's environment, a
	// function that publishes the notification it rejects, and readers of
	// the main and dead-letter destinations (sequences from message ids).
	setup func(t *testing.T, e env) (env, func(*avisotest.Server) uint64, func() []uint64, func() []deadLetter)
}

// bigNotification publishes a notification whose payload is size bytes.
func bigNotification(size int) func(*avisotest.Server) uint64 {
	return func(srv *avisotest.Server) uint64 {
		return srv.Publish(eventType, identifier(0), map[string]any{"blob": strings.Repeat("x", size)})
	}
}

// deadLetter is one message of the dead-letter destination.
type deadLetter struct {
	ID     string // the rejected notification's CloudEvent id
	Reason string
	Body   int
}

var rejectSinks = []rejectSink{
	{
		// nats-server refuses messages over its max_payload (64 KiB here);
		// a 100 KiB notification cannot be stored.
		name: "jetstream max_payload",
		setup: func(t *testing.T, e env) (env, func(*avisotest.Server) uint64, func() []uint64, func() []deadLetter) {
			ns := natstest.NewServer(t, natstest.WithMaxPayload(64<<10))
			read := func() []uint64 { return readJetStream(t, ns) }
			dlq := func() []deadLetter {
				var out []deadLetter
				for _, m := range natstest.ReadStream(t, ns.JetStream(t), streamName, "aviso.dlq") {
					h := m.Headers()
					out = append(out, deadLetter{ID: h.Get("ce-id"), Reason: h.Get("Aviso-Bridge-Dlq-Reason"), Body: len(m.Data())})
				}
				return out
			}
			return jetStreamEnv(e, ns), bigNotification(100 << 10), read, dlq
		},
	},
	{
		// A record larger than the producer's batch limit (1 MiB) can never
		// be sent.
		name: "kafka record too large",
		setup: func(t *testing.T, e env) (env, func(*avisotest.Server) uint64, func() []uint64, func() []deadLetter) {
			cl := newKafka(t)
			read := func() []uint64 { return readKafka(t, cl, kafkaTopic) }
			dlq := func() []deadLetter { return readKafkaDLQ(t, cl) }
			return kafkaEnv(e, cl), bigNotification(1536 << 10), read, dlq
		},
	},
}

func readKafkaDLQ(t testing.TB, cl *kafkatest.Cluster) []deadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := cl.Records(ctx, "aviso-dlq")
	if err != nil && strings.Contains(err.Error(), "UNKNOWN_TOPIC_OR_PARTITION") {
		return nil // never created: nothing was dead-lettered
	}
	if err != nil {
		t.Fatalf("read aviso-dlq: %v", err)
	}
	var out []deadLetter
	for _, r := range recs {
		id, _ := kafkatest.Header(r, "ce_id")
		var reason string
		for _, h := range r.Headers {
			if strings.Contains(strings.ToLower(h.Key), "reason") {
				reason = string(h.Value)
			}
		}
		out = append(out, deadLetter{ID: id, Reason: reason, Body: len(r.Value)})
	}
	return out
}

// TestRejectPolicies: a notification the sink rejects permanently, under
// each BRIDGE_ON_REJECT: fail stops with exit 1 and the position not
// advanced past it (a restart fails again on it); skip and dlq leave it out
// of the destination, deliver everything after it in order, and advance
// (dlq also publishes it to the dead-letter destination with the reason).
func TestRejectPolicies(t *testing.T) {
	const before, after = 20, 20
	for _, sk := range rejectSinks {
		for _, policy := range []string{"fail", "skip", "dlq"} {
			t.Run(sk.name+"/"+policy, func(t *testing.T) {
				aviso := avisotest.NewServer(t)
				dir := t.TempDir()
				e, publishBad, read, readDLQ := sk.setup(t, avisoEnv(aviso, dir).With("BRIDGE_ON_REJECT", policy, "CHECKPOINT_INTERVAL", "50ms"))
				seqs := publish(aviso, before)
				bad := publishBad(aviso)
				seqs = append(seqs, bad)
				seqs = append(seqs, publish(aviso, after)...)
				good := without(seqs, bad)
				cp := filepath.Join(dir, "checkpoint.json")

				b := startBridge(t, "bridge", dir, e)
				if policy == "fail" {
					if code := b.Wait(startupWait); code != 1 {
						t.Fatalf("exit code %d, want 1", code)
					}
					r := b.WaitEvent(time.Second, "bridge.failed")
					if id := fmt.Sprintf("%s@%d", eventType, bad); !strings.Contains(r.Str("error"), id) {
						t.Errorf("error %q does not name %s", r.Str("error"), id)
					}
					requireComplete(t, "destination", read(), seqRange(1, bad-1), 0)
					if got, _ := checkpointSeq(t, cp); got >= bad {
						t.Errorf("checkpoint %d passed the rejected notification %d", got, bad)
					}
					again := startBridge(t, "restart", dir, e)
					if code := again.Wait(startupWait); code != 1 {
						t.Fatalf("restart: exit code %d, want 1", code)
					}
					requireComplete(t, "destination after the restart", read(), seqRange(1, bad-1), 0)
					return
				}
				b.WaitReady(startupWait)
				if !eventually(startupWait, func() bool { got, _ := checkpointSeq(t, cp); return got == seqs[len(seqs)-1] }) {
					got, _ := checkpointSeq(t, cp)
					t.Fatalf("checkpoint %d, want %d (past the rejected %d)", got, seqs[len(seqs)-1], bad)
				}
				samples, _ := scrape(t, b.HTTPAddr)
				if v := samples[fmt.Sprintf("aviso_bridge_notifications_rejected_total{action=%q}", policy)]; v != 1 {
					t.Errorf("notifications_rejected_total{action=%q} = %v, want 1", policy, v)
				}
				b.Signal(syscall.SIGTERM)
				if code := b.Wait(startupWait); code != 0 {
					t.Fatalf("exit code %d after SIGTERM, want 0", code)
				}
				requireComplete(t, "destination", read(), good, 0)
				dl := readDLQ()
				switch policy {
				case "skip":
					if len(dl) != 0 {
						t.Errorf("dead-letter destination holds %d messages under skip", len(dl))
					}
				case "dlq":
					if len(dl) != 1 || dl[0].ID != fmt.Sprintf("%s@%d", eventType, bad) || dl[0].Reason == "" {
						t.Errorf("dead letters %+v: want one for %s@%d with a reason", dl, eventType, bad)
					}
				}
			})
		}
	}
}
