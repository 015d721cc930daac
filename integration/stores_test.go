package integration

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// Defaults of the stores named by interface.md section 2.
const (
	kvBucket        = "aviso_bridge"
	checkpointTopic = "aviso-bridge-checkpoints"
)

// storedCheckpoint is the value a checkpoint store holds for a key (the
// NATS KV value and the Kafka record value share these members).
type storedCheckpoint struct {
	Sequence *uint64 `json:"last_committed_sequence"`
	Owner    string  `json:"owner"`
}

// seq returns the committed sequence (0 when none).
func (c storedCheckpoint) seq() uint64 {
	if c.Sequence == nil {
		return 0
	}
	return *c.Sequence
}

// ownedBy reports whether the owner id (host/pid/random) names process p.
func (c storedCheckpoint) ownedBy(p *proc) bool {
	return strings.Contains(c.Owner, "/"+strconv.Itoa(p.PID())+"/")
}

// storeUnderTest is a checkpoint store (CHECKPOINT_STORE) with the sink
// whose broker also holds it, and the means to read the stored checkpoint.
type storeUnderTest struct {
	name string // CHECKPOINT_STORE
	// start starts the broker and returns e with the sink and the store
	// configured, the destination, and a reader of the checkpoint stored
	// under a key (false while there is none).
	start func(t *testing.T, e env) (env, *destination, func(key string) (storedCheckpoint, bool))
	// storedDuplicates: the sink may store duplicates after a kill -9
	// (Kafka, bounded by the in-flight window).
	storedDuplicates bool
	// Log events of the store: key taken at once, waiting on a holder, key
	// taken over after the lease, key released by a graceful stop.
	acquired, waiting, takenOver, released string
}

var storesUnderTest = []storeUnderTest{
	{
		name: "nats-kv",
		start: func(t *testing.T, e env) (env, *destination, func(string) (storedCheckpoint, bool)) {
			ns := natstest.NewServer(t)
			js := ns.JetStream(t)
			return jetStreamEnv(e, ns).With("CHECKPOINT_STORE", "nats-kv"), &destination{
					read:  func() []uint64 { return readJetStream(t, ns) },
					count: func() int { return int(jetStreamCount(t, js)) },
				}, func(key string) (storedCheckpoint, bool) {
					return kvCheckpoint(t, js, key)
				}
		},
		acquired: "checkpoint.nats_kv.acquired", waiting: "checkpoint.nats_kv.waiting",
		takenOver: "checkpoint.nats_kv.taken_over", released: "checkpoint.nats_kv.released",
	},
	{
		name: "kafka",
		start: func(t *testing.T, e env) (env, *destination, func(string) (storedCheckpoint, bool)) {
			cl := newKafka(t)
			return kafkaEnv(e, cl).With("CHECKPOINT_STORE", "kafka"), &destination{
					read:  func() []uint64 { return readKafka(t, cl, kafkaTopic) },
					count: func() int { return kafkaCount(cl, kafkaTopic) },
				}, func(key string) (storedCheckpoint, bool) {
					return kafkaCheckpoint(t, cl, key)
				}
		},
		storedDuplicates: true,
		acquired:         "checkpoint.kafka.claimed", waiting: "checkpoint.kafka.waiting",
		takenOver: "checkpoint.kafka.taken_over", released: "checkpoint.kafka.released",
	},
}

// kvCheckpoint reads key from the default bucket of the nats-kv store.
func kvCheckpoint(t testing.TB, js jetstream.JetStream, key string) (storedCheckpoint, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, kvBucket)
	if err != nil {
		return storedCheckpoint{}, false
	}
	ent, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return storedCheckpoint{}, false
	}
	if err != nil {
		t.Fatalf("nats-kv bucket %s key %s: %v", kvBucket, key, err)
	}
	var c storedCheckpoint
	if err := json.Unmarshal(ent.Value(), &c); err != nil {
		t.Fatalf("nats-kv bucket %s key %s: %v\n%s", kvBucket, key, err, ent.Value())
	}
	return c, true
}

// kafkaCheckpoint reads the newest record for key in the default
// checkpoint topic of the kafka store.
func kafkaCheckpoint(t testing.TB, cl *kafkatest.Cluster, key string) (storedCheckpoint, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := cl.Records(ctx, checkpointTopic)
	if err != nil {
		return storedCheckpoint{}, false // not created yet
	}
	var c storedCheckpoint
	found := false
	for _, r := range recs { // one partition, offset order
		if string(r.Key) != key {
			continue
		}
		c, found = storedCheckpoint{}, true
		if err := json.Unmarshal(r.Value, &c); err != nil {
			t.Fatalf("topic %s offset %d: %v\n%s", checkpointTopic, r.Offset, err, r.Value)
		}
	}
	return c, found
}

// lastOf returns the last element of s (0 when empty).
func lastOf(s []uint64) uint64 {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

// TestCheckpointStores: CHECKPOINT_STORE=nats-kv (with SINK=jetstream) and
// CHECKPOINT_STORE=kafka (with SINK=kafka), each on its default bucket or
// topic and the derived key, no CHECKPOINT_FILE (and none written), in
// four steps on one history:
//
//  1. the first bridge takes the key at once and delivers the history;
//  2. a second binary on the same key sees the holder, waits (the lease),
//     exits 1 with a bridge.failed error naming the key, the holder's owner
//     id and the key being held; the first keeps running, ready, delivering
//     and committing;
//  3. SIGTERM on the first (CHECKPOINT_INTERVAL=1h: only the drain commits)
//     exits 0 with the stored checkpoint = the newest notification in the
//     sink and the key released (empty owner); a restart takes the key at
//     once (no lease wait) and asks aviso for exactly checkpoint + 1;
//  4. kill -9 of that bridge mid-stream leaves a checkpoint naming it that
//     does not pass what the sink holds; a restarted binary waits, takes the
//     key over after the lease (>= 6 s), asks for checkpoint + 1, and
//     delivers everything: 0 missing, order kept, JetStream 0 duplicates,
//     Kafka at most the in-flight window; its SIGTERM commits the last one.
func TestCheckpointStores(t *testing.T) {
	for _, st := range storesUnderTest {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			aviso := avisotest.NewServer(t)
			dir := t.TempDir()
			// Working directory dir: the file store's default
			// data/checkpoint.json would land there.
			e, dst, stored := st.start(t, avisoEnv(aviso, dir).With("CHECKPOINT_FILE", "", "BRIDGE_MAX_IN_FLIGHT", strconv.Itoa(maxInFlight)))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			maxDup := 0
			if st.storedDuplicates {
				maxDup = maxInFlight
			}
			want := publish(aviso, 2000)

			// 1. The first bridge takes the key at once.
			first := startBridge(t, "first", dir, e.With("CHECKPOINT_INTERVAL", "1h"))
			key := first.WaitEvent(startupWait, "bridge.starting").Str("checkpoint_key")
			if k := derivedKey(t, aviso); k != key {
				t.Fatalf("checkpoint_key %q, want the derived key %q", key, k)
			}
			first.WaitEvent(startupWait, st.acquired)
			first.WaitReady(startupWait)
			if !eventually(startupWait, func() bool { return dst.count() >= len(want) }) {
				t.Fatalf("sink holds %d of %d", dst.count(), len(want))
			}

			// 2. A second bridge on the same key exits 1; the first runs on.
			second := startBridge(t, "second", dir, e)
			second.WaitEvent(startupWait, st.waiting)
			if code := second.Wait(startupWait); code != 1 {
				t.Fatalf("second bridge: exit code %d, want 1", code)
			}
			msg := second.WaitEvent(time.Second, "bridge.failed").Str("error")
			if !strings.Contains(msg, key) || !strings.Contains(msg, "holds checkpoint key") ||
				!strings.Contains(msg, "/"+strconv.Itoa(first.PID())+"/") {
				t.Errorf("second bridge: error %q should say that the key %s is held and name the first bridge (pid %d)", msg, key, first.PID())
			}
			if second.CountEvent(st.takenOver) != 0 || second.CountEvent(st.acquired) != 0 {
				t.Errorf("second bridge took the key")
			}
			if first.Exited() {
				t.Fatalf("first bridge exited (%v)", first.State())
			}
			if code, _, err := httpGet(ctx, first.HTTPAddr, "/readyz"); err != nil || code != http.StatusOK {
				t.Errorf("first bridge /readyz: %d %v", code, err)
			}
			want = append(want, publish(aviso, 300)...)
			if !eventually(startupWait, func() bool { return dst.count() >= len(want) || first.Exited() }) || first.Exited() {
				t.Fatalf("after the second bridge: sink holds %d of %d (first exited %v)", dst.count(), len(want), first.Exited())
			}

			// 3. A graceful stop commits and releases; a restart resumes at
			// once from checkpoint + 1.
			first.Signal(syscall.SIGTERM)
			if code := first.Wait(startupWait); code != 0 {
				t.Fatalf("first bridge: exit code %d after SIGTERM, want 0", code)
			}
			first.WaitEvent(time.Second, st.released)
			got := dst.read()
			cp, ok := stored(key)
			if !ok || cp.Sequence == nil || cp.seq() != lastOf(got) || cp.seq() != lastOf(want) || cp.Owner != "" {
				t.Fatalf("after SIGTERM: stored %+v (seq %d, found %v), want sequence %d (newest in the sink %d) and no owner",
					cp, cp.seq(), ok, lastOf(want), lastOf(got))
			}
			want = append(want, publish(aviso, 300)...) // published while no bridge runs
			before := len(aviso.Requests())
			restart := startBridge(t, "restart", dir, e)
			reqs, err := aviso.WaitRequests(ctx, before+1)
			if err != nil {
				t.Fatal(err)
			}
			if r := reqs[before]; r.FromID != strconv.FormatUint(cp.seq()+1, 10) {
				t.Errorf("restart asked from_id %q, want %d (checkpoint %d + 1)", r.FromID, cp.seq()+1, cp.seq())
			}
			restart.WaitEvent(startupWait, st.acquired)
			if n := restart.CountEvent(st.waiting); n != 0 {
				t.Errorf("restart after a graceful stop waited on the lease (%s): the key was not released", st.waiting)
			}

			// 4. kill -9 mid-stream; a new binary takes the key over.
			pub := publishAt(ctx, aviso, 3000, 1000) // 3 s of live notifications
			mid := len(want) + 300
			if !eventually(startupWait, func() bool {
				c, _ := stored(key)
				return (dst.count() >= mid && c.seq() > cp.seq() && c.ownedBy(restart)) || restart.Exited()
			}) || restart.Exited() {
				c, _ := stored(key)
				t.Fatalf("before the kill: sink holds %d (want %d), stored %+v (exited %v)", dst.count(), mid, c, restart.Exited())
			}
			restart.Kill9()
			killed, _ := stored(key)
			newest := lastOf(dst.read())
			if !killed.ownedBy(restart) || killed.seq() > newest || killed.seq() <= cp.seq() {
				t.Fatalf("after kill -9: stored %+v (seq %d): want a commit by the killed bridge (pid %d) above %d, not past the newest stored %d",
					killed, killed.seq(), restart.PID(), cp.seq(), newest)
			}
			before = len(aviso.Requests())
			takeover := startBridge(t, "takeover", dir, e)
			takeover.WaitEvent(startupWait, st.waiting)
			r := takeover.WaitEvent(startupWait, st.takenOver)
			if w, err := time.ParseDuration(r.Str("waited")); err != nil || w < 6*time.Second {
				t.Errorf("%s after %q (%v), want at least the 6 s lease", st.takenOver, r.Str("waited"), err)
			}
			reqs, err = aviso.WaitRequests(ctx, before+1)
			if err != nil {
				t.Fatal(err)
			}
			if r := reqs[before]; r.FromID != strconv.FormatUint(killed.seq()+1, 10) {
				t.Errorf("takeover asked from_id %q, want %d (checkpoint %d + 1)", r.FromID, killed.seq()+1, killed.seq())
			}
			<-pub.done
			want = append(want, pub.seqs...)
			if !eventually(60*time.Second, func() bool {
				c, _ := stored(key)
				return c.seq() == lastOf(want) || takeover.Exited()
			}) || takeover.Exited() {
				c, _ := stored(key)
				t.Fatalf("stored checkpoint %d, want %d (exited %v)", c.seq(), lastOf(want), takeover.Exited())
			}
			takeover.Signal(syscall.SIGTERM)
			if code := takeover.Wait(startupWait); code != 0 {
				t.Errorf("takeover: exit code %d after SIGTERM, want 0", code)
			}
			if c, _ := stored(key); c.seq() != lastOf(want) || c.Owner != "" {
				t.Errorf("after the last SIGTERM: stored %+v (seq %d), want %d and no owner", c, c.seq(), lastOf(want))
			}
			tl := requireComplete(t, st.name, dst.read(), want, maxDup)
			t.Logf("key %s; kill -9 at checkpoint %d with %d stored; taken over after %s; %d duplicates",
				key, killed.seq(), newest, r.Str("waited"), tl.Duplicates)
			if _, err := os.Stat(filepath.Join(dir, "data", "checkpoint.json")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("CHECKPOINT_STORE=%s wrote a checkpoint file (stat: %v)", st.name, err)
			}
		})
	}
}
