package integration

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// TestReplayModeSinks: AVISO_MODE=replay with SINK=kafka (file store), and
// with the broker-held stores: SINK=jetstream with CHECKPOINT_STORE=nats-kv,
// SINK=kafka with CHECKPOINT_STORE=kafka (TestReplayModeFinishes covers
// SINK=jetstream with the file store). Each run delivers the history up to
// the end of the stream and exits 0 with the checkpoint at the last
// notification; a second run, after more notifications, asks
// /api/v1/replay for checkpoint + 1, takes the key at once (the first run
// released it), exits 0, and the sink holds every notification once, in
// order.
func TestReplayModeSinks(t *testing.T) {
	type checkpointReader func() (uint64, bool)
	cases := []struct {
		name string
		// start starts the broker and returns e with sink and store set,
		// the destination and the reader of the stored checkpoint.
		start func(t *testing.T, aviso *avisotest.Server, e env, dir string) (env, *destination, checkpointReader)
		// waiting is the store's lease-wait event ("" for the file store).
		waiting string
	}{
		{
			name: "kafka/file",
			start: func(t *testing.T, _ *avisotest.Server, e env, dir string) (env, *destination, checkpointReader) {
				cl := newKafka(t)
				return kafkaEnv(e, cl), &destination{
						read:  func() []uint64 { return readKafka(t, cl, kafkaTopic) },
						count: func() int { return kafkaCount(cl, kafkaTopic) },
					}, func() (uint64, bool) {
						return checkpointSeq(t, filepath.Join(dir, "checkpoint.json"))
					}
			},
		},
		{
			name: "jetstream/nats-kv",
			start: func(t *testing.T, aviso *avisotest.Server, e env, _ string) (env, *destination, checkpointReader) {
				ns := natstest.NewServer(t)
				js := ns.JetStream(t)
				key := derivedKey(t, aviso)
				return jetStreamEnv(e, ns).With("CHECKPOINT_STORE", "nats-kv", "CHECKPOINT_FILE", ""), &destination{
						read:  func() []uint64 { return readJetStream(t, ns) },
						count: func() int { return int(jetStreamCount(t, js)) },
					}, func() (uint64, bool) {
						c, ok := kvCheckpoint(t, js, key)
						return c.seq(), ok && c.Sequence != nil
					}
			},
			waiting: "checkpoint.nats_kv.waiting",
		},
		{
			name: "kafka/kafka",
			start: func(t *testing.T, aviso *avisotest.Server, e env, _ string) (env, *destination, checkpointReader) {
				cl := newKafka(t)
				key := derivedKey(t, aviso)
				return kafkaEnv(e, cl).With("CHECKPOINT_STORE", "kafka", "CHECKPOINT_FILE", ""), &destination{
						read:  func() []uint64 { return readKafka(t, cl, kafkaTopic) },
						count: func() int { return kafkaCount(cl, kafkaTopic) },
					}, func() (uint64, bool) {
						c, ok := kafkaCheckpoint(t, cl, key)
						return c.seq(), ok && c.Sequence != nil
					}
			},
			waiting: "checkpoint.kafka.waiting",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			aviso := avisotest.NewServer(t, avisotest.WithReplayBatch(100, 0))
			dir := t.TempDir()
			e, dst, checkpoint := tc.start(t, aviso, avisoEnv(aviso, dir).With("AVISO_MODE", "replay"), dir)

			want := publish(aviso, 1500)
			for run, more := range []int{0, 500} {
				want = append(want, publish(aviso, more)...)
				before := len(aviso.Requests())
				b := startBridge(t, "replay-"+strconv.Itoa(run+1), dir, e)
				if code := b.Wait(startupWait); code != 0 {
					t.Fatalf("run %d: exit code %d, want 0", run+1, code)
				}
				requireComplete(t, tc.name+" after run "+strconv.Itoa(run+1), dst.read(), want, 0)
				if cp, ok := checkpoint(); !ok || cp != lastOf(want) {
					t.Errorf("run %d: checkpoint %d (found %v), want %d", run+1, cp, ok, lastOf(want))
				}
				reqs := aviso.Requests()[before:]
				if len(reqs) == 0 || reqs[0].Path != "/api/v1/replay" {
					t.Fatalf("run %d: requests %+v, want /api/v1/replay", run+1, reqs)
				}
				if run == 1 {
					if reqs[0].FromID != "1501" {
						t.Errorf("run 2 asked from_id %q, want \"1501\" (checkpoint 1500 + 1)", reqs[0].FromID)
					}
					if tc.waiting != "" && b.CountEvent(tc.waiting) != 0 {
						t.Errorf("run 2 waited on the lease (%s): run 1 did not release the key when it finished", tc.waiting)
					}
				}
			}
		})
	}
}

// derivedKey is the checkpoint key the bridge derives for avisotest's URL,
// the event type and the default identifier {}.
func derivedKey(t testing.TB, aviso *avisotest.Server) string {
	t.Helper()
	k, err := bridge.CheckpointKey(aviso.URL, eventType, json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
