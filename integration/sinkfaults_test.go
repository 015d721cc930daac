package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// sinkUnderTest is a destination the bridge publishes to, with the means to
// take it down and bring it back, and to read it back.
type sinkUnderTest struct {
	name string
	// start starts the destination and returns the bridge's sink
	// environment added to e.
	start func(t *testing.T, e env) (env, *destination)
	// storedDuplicates says whether the destination may store duplicates
	// (Kafka: yes, bounded; JetStream: never, Nats-Msg-Id dedup).
	storedDuplicates bool
}

// destination is a started sink destination.
type destination struct {
	stop, restart func()
	read          func() []uint64 // every stored message, in order
	count         func() int      // how many messages are stored
}

var sinksUnderTest = []sinkUnderTest{
	{
		name: "jetstream",
		start: func(t *testing.T, e env) (env, *destination) {
			ns := natstest.NewServer(t)
			js := ns.JetStream(t)
			return jetStreamEnv(e, ns), &destination{
				stop:    ns.Shutdown,
				restart: ns.Restart,
				read:    func() []uint64 { return readJetStream(t, ns) },
				count:   func() int { return int(jetStreamCount(t, js)) },
			}
		},
	},
	{
		name: "kafka",
		start: func(t *testing.T, e env) (env, *destination) {
			cl := newKafka(t)
			return kafkaEnv(e, cl), &destination{
				stop:    cl.Stop,
				restart: cl.Start,
				read:    func() []uint64 { return readKafka(t, cl, kafkaTopic) },
				count:   func() int { return kafkaCount(cl, kafkaTopic) },
			}
		},
		storedDuplicates: true,
	},
}

// maxInFlight is BRIDGE_MAX_IN_FLIGHT in the sink tests: the bound on what
// one failure may duplicate.
const maxInFlight = 256

// TestSinkOutage: the broker (nats-server with JetStream, or kfake) is down
// for 5 s in the middle of a live stream and comes back on the same port with
// the same storage. The bridge reports not ready (the sink condition) while
// it is down, then delivers everything: nothing missing, order kept,
// JetStream without a stored duplicate, Kafka with duplicates (if any)
// bounded by the in-flight window; the checkpoint ends at the last
// notification.
func TestSinkOutage(t *testing.T) {
	for _, sk := range sinksUnderTest {
		t.Run(sk.name, func(t *testing.T) {
			t.Parallel()
			aviso := avisotest.NewServer(t)
			dir := t.TempDir()
			e, dst := sk.start(t, avisoEnv(aviso, dir).With("BRIDGE_MAX_IN_FLIGHT", "256", "CHECKPOINT_INTERVAL", "200ms"))
			history := publish(aviso, 2000)
			p := startBridge(t, "bridge", dir, e)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			pub := publishAt(ctx, aviso, 8000, 800) // 10 s of live notifications
			if !eventually(startupWait, func() bool { return dst.count() >= 2500 }) {
				t.Fatalf("destination holds %d, want 2500 before the outage", dst.count())
			}
			dst.stop()
			down := time.Now()
			_, body := p.WaitHTTP(15*time.Second, "/readyz", "not ready while the broker is down", func(code int, body []byte) bool {
				var rep struct{ Failing map[string]string }
				return code == http.StatusServiceUnavailable && json.Unmarshal(body, &rep) == nil && rep.Failing["sink"] != ""
			})
			t.Logf("/readyz while down: %s", body)
			<-time.After(time.Until(down.Add(5 * time.Second))) // the outage lasts 5 s
			dst.restart()
			t.Logf("broker restarted after %v", time.Since(down).Round(time.Millisecond))
			p.WaitReady(60 * time.Second)
			<-pub.done
			want := append(history, pub.seqs...)
			if !eventually(90*time.Second, func() bool { return dst.count() >= len(want) || p.Exited() }) {
				t.Fatalf("destination holds %d of %d", dst.count(), len(want))
			}
			cp := filepath.Join(dir, "checkpoint.json")
			if !eventually(startupWait, func() bool { got, _ := checkpointSeq(t, cp); return got == want[len(want)-1] }) {
				got, _ := checkpointSeq(t, cp)
				t.Errorf("checkpoint %d, want %d", got, want[len(want)-1])
			}
			p.Signal(syscall.SIGTERM)
			if code := p.Wait(startupWait); code != 0 {
				t.Errorf("exit code %d after SIGTERM, want 0", code)
			}
			maxDup := 0
			if sk.storedDuplicates {
				maxDup = maxInFlight
			}
			requireComplete(t, sk.name, dst.read(), want, maxDup)
		})
	}
}
