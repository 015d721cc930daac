package kafka_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
)

// openStore opens a store on key whose lease refreshes too rarely to write
// anything during a test (so record counts are exact), and closes it at
// cleanup.
func openStore(t *testing.T, cl *kafkatest.Cluster, key string) *kafka.Store {
	t.Helper()
	return mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key, LeaseRefresh: time.Hour}, nil)
}

// Short leases for tests: a live holder refreshes every 100ms; a store
// opening on a key held by another owner waits 600ms.
const (
	testRefresh = 100 * time.Millisecond
	testTTL     = 600 * time.Millisecond
)

// openStoreCfg opens a store on cl with cfg (Brokers and, when zero, the
// test lease settings filled in) and closes it at cleanup.
func openStoreCfg(t *testing.T, cl *kafkatest.Cluster, cfg kafka.StoreConfig, log *slog.Logger) (*kafka.Store, error) {
	t.Helper()
	cfg.Brokers = []string{cl.Addr}
	if cfg.LeaseRefresh == 0 {
		cfg.LeaseRefresh = testRefresh
	}
	if cfg.LeaseTTL == 0 && cfg.LeaseRefresh == testRefresh {
		cfg.LeaseTTL = testTTL
	}
	if log == nil {
		log = testLogger(t)
	}
	st, err := kafka.OpenStore(testContext(t, 30*time.Second), cfg, kafka.Options{Logger: log})
	if err == nil {
		t.Cleanup(func() { _ = st.Close() })
	}
	return st, err
}

// mustOpenStore is openStoreCfg failing the test on an error.
func mustOpenStore(t *testing.T, cl *kafkatest.Cluster, cfg kafka.StoreConfig, log *slog.Logger) *kafka.Store {
	t.Helper()
	st, err := openStoreCfg(t, cl, cfg, log)
	if err != nil {
		t.Fatalf("OpenStore %s: %v", cfg.CheckpointKey, err)
	}
	return st
}

// logBuffer is a concurrency-safe JSON log sink for asserting on events.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(l, nil)) }

// storedValue is a record value of the checkpoint topic as the tests read
// it.
type storedValue struct {
	Sequence   *uint64 `json:"last_committed_sequence"`
	Owner      string  `json:"owner"`
	Claim      bool    `json:"claim"`
	Basis      *int64  `json:"basis_offset"`
	ReleasedBy string  `json:"released_by"`
}

// stored returns the values written for key, oldest first.
func stored(t *testing.T, cl *kafkatest.Cluster, key string) []storedValue {
	t.Helper()
	var vs []storedValue
	for _, r := range readTopic(t, cl, kafka.DefaultCheckpointTopic) {
		if string(r.Key) != key {
			continue
		}
		var v storedValue
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatalf("value of %s at offset %d: %v", key, r.Offset, err)
		}
		vs = append(vs, v)
	}
	return vs
}

// newest is the newest value written for key.
func newest(t *testing.T, cl *kafkatest.Cluster, key string) storedValue {
	t.Helper()
	vs := stored(t, cl, key)
	if len(vs) == 0 {
		t.Fatalf("no record for %s", key)
	}
	return vs[len(vs)-1]
}

// produce writes value under key to the checkpoint topic behind the
// stores' backs and returns its offset.
func produce(t *testing.T, cl *kafkatest.Cluster, key, value string) int64 {
	t.Helper()
	res := cl.Client().ProduceSync(testContext(t, 10*time.Second), &kgo.Record{Topic: kafka.DefaultCheckpointTopic, Key: []byte(key), Value: []byte(value)})
	r, err := res.First()
	if err != nil {
		t.Fatalf("produce %s: %v", key, err)
	}
	return r.Offset
}

// endOffset is the checkpoint topic's high watermark.
func endOffset(t *testing.T, cl *kafkatest.Cluster) int64 {
	t.Helper()
	ends, err := kadm.NewClient(cl.Client()).ListEndOffsets(testContext(t, 10*time.Second), kafka.DefaultCheckpointTopic)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := ends.Lookup(kafka.DefaultCheckpointTopic, 0)
	if !ok || o.Err != nil {
		t.Fatalf("end offset: %v", o.Err)
	}
	return o.Offset
}

func mustContain(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("error %v does not name %q", err, p)
		}
	}
}

func seqCP(seq uint64) bridge.Checkpoint {
	return bridge.Checkpoint{Sequence: seq, EventID: bridge.EventID("mars", seq)}
}

func loadSeq(t *testing.T, st *kafka.Store) (uint64, bool) {
	t.Helper()
	cp, found, err := st.Load(testContext(t, 10*time.Second))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cp.Sequence, found
}

func TestStoreRoundTrip(t *testing.T) {
	cl := kafkatest.NewCluster(t, kfake.DefaultNumPartitions(3))
	ctx := testContext(t, 30*time.Second)
	st := openStore(t, cl, "key-a")
	if _, found, err := st.Load(ctx); err != nil || found {
		t.Fatalf("Load on an empty topic = found %v, %v", found, err)
	}

	// The topic was created compacted, with one partition.
	adm := kadm.NewClient(cl.Client())
	cfgs, err := adm.DescribeTopicConfigs(ctx, kafka.DefaultCheckpointTopic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfgs.On(kafka.DefaultCheckpointTopic, nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := ""
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && c.Value != nil {
			policy = *c.Value
		}
	}
	if policy != "compact" {
		t.Errorf("cleanup.policy = %q, want compact", policy)
	}
	details, err := adm.ListTopics(ctx, kafka.DefaultCheckpointTopic)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details[kafka.DefaultCheckpointTopic].Partitions); n != 1 {
		t.Errorf("%d partitions, want 1", n)
	}

	other := openStore(t, cl, "key-b")
	commits := []struct {
		st  *kafka.Store
		seq uint64
	}{{st, 5}, {other, 100}, {st, 3}, {st, 42}, {st, 42}, {other, 7}}
	for _, c := range commits {
		if err := c.st.Commit(ctx, bridge.Checkpoint{Sequence: c.seq, EventID: bridge.EventID("mars", c.seq)}); err != nil {
			t.Fatalf("Commit %d: %v", c.seq, err)
		}
	}
	// Graceful stops release both keys, so the reopenings take them at once.
	for _, s := range []*kafka.Store{st, other} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}

	for key, want := range map[string]uint64{"key-a": 42, "key-b": 100} {
		again := openStore(t, cl, key)
		cp, found, err := again.Load(ctx)
		if err != nil || !found || cp.Sequence != want || cp.EventID != bridge.EventID("mars", want) || cp.UpdatedAt.IsZero() {
			t.Errorf("%s: Load = %+v, %v, %v; want sequence %d", key, cp, found, err, want)
		}
		// Monotonic across instances: an older commit is a no-op.
		if err := again.Commit(ctx, bridge.Checkpoint{Sequence: want - 1}); err != nil {
			t.Fatal(err)
		}
		if cp, _, _ := again.Load(ctx); cp.Sequence != want {
			t.Errorf("%s: after an older commit Load = %d, want %d", key, cp.Sequence, want)
		}
		if err := again.Healthy(); err != nil {
			t.Errorf("%s: Healthy = %v", key, err)
		}
	}

	// Commits written: key-a 5 and 42, key-b 100; every other commit was a
	// no-op. Each of the four openings wrote a claim, each Close a release.
	nClaims, nReleases, nCommits := 0, 0, 0
	for _, key := range []string{"key-a", "key-b"} {
		for _, v := range stored(t, cl, key) {
			switch {
			case v.Claim:
				nClaims++
			case v.Owner == "":
				nReleases++
			default:
				nCommits++
			}
		}
	}
	if nClaims != 4 || nReleases != 2 || nCommits != 3 {
		t.Errorf("%d claims, %d releases and %d commits, want 4, 2 and 3 (no-op commits write nothing)", nClaims, nReleases, nCommits)
	}
}

func TestStoreUnreadableCheckpoint(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	ctx := testContext(t, 30*time.Second)
	st := openStore(t, cl, "key-x")
	if err := st.Commit(ctx, bridge.Checkpoint{Sequence: 9}); err != nil {
		t.Fatal(err)
	}
	// Someone writes garbage under our key: Load must fail, not report "none".
	kc := cl.Client()
	if err := kc.ProduceSync(ctx, &kgo.Record{Topic: kafka.DefaultCheckpointTopic, Key: []byte("key-x"), Value: []byte("{oops")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	_, found, err := st.Load(ctx)
	if err == nil || found || !strings.Contains(err.Error(), kafka.DefaultCheckpointTopic) {
		t.Fatalf("Load = found %v, %v; want an error naming the topic", found, err)
	}
	// A newer valid value wins again.
	if err := kc.ProduceSync(ctx, &kgo.Record{Topic: kafka.DefaultCheckpointTopic, Key: []byte("key-x"), Value: []byte(`{"last_committed_sequence":11}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if cp, found, err := st.Load(ctx); err != nil || !found || cp.Sequence != 11 {
		t.Fatalf("Load = %+v, %v, %v; want 11", cp, found, err)
	}
}

func TestStoreExistingTopic(t *testing.T) {
	// A topic created by an operator (here with 3 partitions) is used as is.
	cl := kafkatest.NewCluster(t, kfake.SeedTopics(3, "cps"))
	ctx := testContext(t, 30*time.Second)
	cfg := kafka.Config{Brokers: []string{cl.Addr}, CheckpointTopic: "cps"}
	for i, key := range []string{"a", "b", "c", "d"} {
		st, err := kafka.NewStore(ctx, cfg, key, kafka.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Commit(ctx, bridge.Checkpoint{Sequence: uint64(10 + i)}); err != nil {
			t.Fatal(err)
		}
		_ = st.Close()
	}
	for i, key := range []string{"a", "b", "c", "d"} {
		st, err := kafka.NewStore(ctx, cfg, key, kafka.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cp, found, err := st.Load(ctx)
		_ = st.Close()
		if err != nil || !found || cp.Sequence != uint64(10+i) {
			t.Fatalf("%s: Load = %+v, %v, %v", key, cp, found, err)
		}
	}
}

// TestStoreForeignCommitRaisesPosition: a commit by an older bridge that
// landed after our claim (its last commit while shutting down) is not a
// takeover, and our commits stay monotonic over it.
func TestStoreForeignCommitRaisesPosition(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	ctx := testContext(t, 30*time.Second)
	st := openStore(t, cl, "k")
	kc := cl.Client()
	if err := kc.ProduceSync(ctx, &kgo.Record{Topic: kafka.DefaultCheckpointTopic, Key: []byte("k"),
		Value: []byte(`{"last_committed_sequence":50,"owner":"old-bridge"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(ctx, bridge.Checkpoint{Sequence: 40}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if cp, _, _ := st.Load(ctx); cp.Sequence != 50 {
		t.Fatalf("Load = %d, want 50 (40 is below the stored position)", cp.Sequence)
	}
	if err := st.Commit(ctx, bridge.Checkpoint{Sequence: 60}); err != nil {
		t.Fatal(err)
	}
	if cp, _, _ := st.Load(ctx); cp.Sequence != 60 {
		t.Fatalf("Load = %d, want 60", cp.Sequence)
	}
}

// TestStoreLease: the key is a lease, as in the NATS KV store
// (TestKVStoreLease): a second bridge on a live key exits, a killed one is
// taken over after LeaseTTL, a stopped one at once.
func TestStoreLease(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	ctx := testContext(t, 120*time.Second)

	t.Run("second bridge on a live key fails", func(t *testing.T) {
		key := "live"
		first := mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key}, nil)
		if err := first.Commit(ctx, seqCP(10)); err != nil {
			t.Fatal(err)
		}
		var logs logBuffer
		began := time.Now()
		second, err := openStoreCfg(t, cl, kafka.StoreConfig{CheckpointKey: key, Owner: "second"}, logs.logger())
		if !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("second OpenStore = %v, %v; want ErrKeyHeld", second, err)
		}
		if d := time.Since(began); d > 10*testTTL {
			t.Errorf("second store failed after %v; want about one LeaseTTL (%v) at most", d, testTTL)
		}
		mustContain(t, err, "another bridge holds checkpoint key "+key, `topic "`+kafka.DefaultCheckpointTopic+`"`, "(owner "+first.Owner()+")", "CHECKPOINT_KEY")
		if !strings.Contains(logs.String(), `"checkpoint.kafka.waiting"`) || !strings.Contains(logs.String(), `"owner":"`+first.Owner()+`"`) {
			t.Errorf("no checkpoint.kafka.waiting naming %s:\n%s", first.Owner(), logs.String())
		}
		// The first keeps the key and keeps committing; the second wrote
		// nothing.
		for _, seq := range []uint64{20, 30} {
			if err := first.Commit(ctx, seqCP(seq)); err != nil {
				t.Fatalf("first bridge's commit %d after the second gave up: %v", seq, err)
			}
		}
		if err := first.Healthy(); err != nil {
			t.Errorf("first Healthy = %v", err)
		}
		for _, v := range stored(t, cl, key) {
			if v.Owner == "second" {
				t.Fatalf("the second store wrote %+v", v)
			}
		}
		if v := newest(t, cl, key); v.Owner != first.Owner() || v.Sequence == nil || *v.Sequence != 30 {
			t.Errorf("newest %+v, want sequence 30 of %s", v, first.Owner())
		}
	})

	t.Run("holder refreshes without commits", func(t *testing.T) {
		key := "refresh"
		st := mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key}, nil)
		vs := stored(t, cl, key)
		if len(vs) != 1 || !vs[0].Claim || vs[0].Owner != st.Owner() || vs[0].Sequence != nil || vs[0].Basis == nil {
			t.Fatalf("records after open %+v, want one claim of %s with a basis and no checkpoint", vs, st.Owner())
		}
		if _, found := loadSeq(t, st); found {
			t.Error("Load found a checkpoint in a key holding only a claim")
		}
		waitFor(t, 20*testTTL, "two refreshes", func() bool {
			n := 0
			for _, v := range stored(t, cl, key) {
				if v.Owner == st.Owner() && !v.Claim {
					n++
				}
			}
			return n >= 2
		})
		if err := st.Commit(ctx, seqCP(7)); err != nil {
			t.Fatal(err)
		}
		// Refreshes restate the checkpoint.
		waitFor(t, 20*testTTL, "a refresh after the commit", func() bool {
			vs := stored(t, cl, key)
			if len(vs) < 2 {
				return false
			}
			last := vs[len(vs)-1]
			return vs[len(vs)-2].Sequence != nil && *vs[len(vs)-2].Sequence == 7 &&
				last.Owner == st.Owner() && !last.Claim && last.Sequence != nil && *last.Sequence == 7
		})
		if v := newest(t, cl, key); v.Sequence == nil || *v.Sequence != 7 {
			t.Errorf("newest %+v, want the checkpoint 7 restated", v)
		}
	})

	t.Run("holder killed is taken over after LeaseTTL", func(t *testing.T) {
		key := "killed"
		first := mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key}, nil)
		if err := first.Commit(ctx, seqCP(10)); err != nil {
			t.Fatal(err)
		}
		kafka.FreezeStore(first)
		var logs logBuffer
		began := time.Now()
		second := mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key}, logs.logger())
		if d := time.Since(began); d < testTTL {
			t.Errorf("taken over after %v, before LeaseTTL %v", d, testTTL)
		}
		if seq, found := loadSeq(t, second); !found || seq != 10 {
			t.Fatalf("second bridge loads %d, %v; want 10", seq, found)
		}
		if !strings.Contains(logs.String(), `"checkpoint.kafka.taken_over"`) || !strings.Contains(logs.String(), `"previous_owner":"`+first.Owner()+`"`) {
			t.Errorf("no checkpoint.kafka.taken_over naming %s:\n%s", first.Owner(), logs.String())
		}
		if err := second.Commit(ctx, seqCP(20)); err != nil {
			t.Fatalf("second bridge's commit: %v", err)
		}
		// Had the first only been frozen, it finds out at its next commit.
		err := first.Commit(ctx, seqCP(30))
		if !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("frozen bridge's commit after the take-over = %v, want ErrKeyHeld", err)
		}
		mustContain(t, err, key, second.Owner())
		if err := first.Commit(ctx, seqCP(40)); !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("ErrKeyHeld is not sticky: %v", err)
		}
		if !errors.Is(first.Healthy(), bridge.ErrKeyHeld) {
			t.Errorf("Healthy of a fenced store = %v", first.Healthy())
		}
		if err := first.Close(); err != nil {
			t.Errorf("Close of a fenced store: %v", err)
		}
		if v := newest(t, cl, key); v.Owner != second.Owner() || v.Sequence == nil || *v.Sequence != 20 {
			t.Errorf("newest %+v, want sequence 20 of %s (the fenced store must write nothing, not even a release)", v, second.Owner())
		}
		if err := second.Healthy(); err != nil {
			t.Errorf("second Healthy = %v", err)
		}
	})

	t.Run("gracefully closed holder is taken over at once", func(t *testing.T) {
		key := "closed"
		first := mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key}, nil)
		if err := first.Commit(ctx, seqCP(10)); err != nil {
			t.Fatal(err)
		}
		if err := first.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if v := newest(t, cl, key); v.Owner != "" || v.ReleasedBy != first.Owner() || v.Sequence == nil || *v.Sequence != 10 {
			t.Fatalf("newest after Close %+v, want sequence 10, no owner, released by %s", v, first.Owner())
		}
		if err := first.Commit(ctx, seqCP(11)); err == nil || errors.Is(err, bridge.ErrKeyHeld) {
			t.Errorf("Commit after Close = %v, want a closed-store error", err)
		}
		var logs logBuffer
		second := mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key, LeaseRefresh: 10 * time.Second, LeaseTTL: time.Hour}, logs.logger())
		if strings.Contains(logs.String(), "waiting") {
			t.Errorf("waited for a released key:\n%s", logs.String())
		}
		if seq, found := loadSeq(t, second); !found || seq != 10 {
			t.Fatalf("second bridge loads %d, %v; want 10", seq, found)
		}
		if v := newest(t, cl, key); v.Owner != second.Owner() || !v.Claim {
			t.Errorf("newest %+v, want the claim of %s", v, second.Owner())
		}
	})

	t.Run("released while waiting is taken at once", func(t *testing.T) {
		key := "release-wait"
		first := mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key}, nil)
		if err := first.Commit(ctx, seqCP(10)); err != nil {
			t.Fatal(err)
		}
		kafka.FreezeStore(first) // silent, so that only the release ends the wait
		var logs logBuffer
		type result struct {
			st  *kafka.Store
			err error
		}
		res := make(chan result, 1)
		go func() {
			st, err := kafka.OpenStore(testContext(t, 20*time.Second), kafka.StoreConfig{Config: kafka.Config{Brokers: []string{cl.Addr}}, CheckpointKey: key,
				LeaseRefresh: testRefresh, LeaseTTL: time.Hour}, kafka.Options{Logger: logs.logger()})
			res <- result{st, err}
		}()
		waitFor(t, 10*time.Second, "the second store to wait", func() bool { return strings.Contains(logs.String(), "checkpoint.kafka.waiting") })
		if err := first.Close(); err != nil {
			t.Fatal(err)
		}
		r := <-res
		if r.err != nil {
			t.Fatalf("OpenStore after the holder's release: %v", r.err)
		}
		t.Cleanup(func() { _ = r.st.Close() })
		if seq, found := loadSeq(t, r.st); !found || seq != 10 {
			t.Fatalf("loads %d, %v; want 10", seq, found)
		}
	})

	t.Run("own owner id is taken at once", func(t *testing.T) {
		key := "own"
		first := mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key, Owner: "bridge-a"}, nil)
		if err := first.Commit(ctx, seqCP(10)); err != nil {
			t.Fatal(err)
		}
		kafka.FreezeStore(first)
		var logs logBuffer
		second := mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key, Owner: "bridge-a", LeaseRefresh: 10 * time.Second, LeaseTTL: time.Hour}, logs.logger())
		if strings.Contains(logs.String(), "waiting") {
			t.Errorf("waited for its own key:\n%s", logs.String())
		}
		if second.Owner() != "bridge-a" {
			t.Errorf("Owner = %q", second.Owner())
		}
		if seq, _ := loadSeq(t, second); seq != 10 {
			t.Fatalf("loads %d, want 10", seq)
		}
	})

	t.Run("context ends while waiting", func(t *testing.T) {
		key := "cancel"
		kafka.FreezeStore(mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key}, nil)) // no refresh ends the wait early
		wctx, cancel := context.WithTimeout(ctx, 5*testRefresh)
		defer cancel()
		st, err := kafka.OpenStore(wctx, kafka.StoreConfig{Config: kafka.Config{Brokers: []string{cl.Addr}}, CheckpointKey: key,
			LeaseRefresh: testRefresh, LeaseTTL: time.Hour}, kafka.Options{})
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("OpenStore = %v, %v; want the context's error", st, err)
		}
	})

	t.Run("two bridges start on a missing key", func(t *testing.T) {
		for round := range 3 {
			key := fmt.Sprintf("race-%d", round)
			start := make(chan struct{})
			errs := make(chan error, 2)
			for range 2 {
				go func() {
					<-start
					_, err := openStoreCfg(t, cl, kafka.StoreConfig{CheckpointKey: key}, nil)
					errs <- err
				}()
			}
			close(start)
			var held, ok int
			for range 2 {
				switch err := <-errs; {
				case err == nil:
					ok++
				case errors.Is(err, bridge.ErrKeyHeld):
					held++
				default:
					t.Errorf("OpenStore: %v", err)
				}
			}
			if ok != 1 || held != 1 {
				t.Fatalf("round %d: %d opened, %d got ErrKeyHeld; want one each", round, ok, held)
			}
		}
	})

	t.Run("a claim written first wins the race", func(t *testing.T) {
		// Another bridge's claim lands between what this store read (the
		// key missing) and its own claim: the first claim wins, for every
		// reader of the partition.
		key := "race-ordered"
		cfg := kafka.WithBeforeClaim(kafka.StoreConfig{CheckpointKey: key}, func() {
			produce(t, cl, key, `{"owner":"rival","claim":true,"basis_offset":0}`)
		})
		st, err := openStoreCfg(t, cl, cfg, nil)
		if !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("OpenStore = %v, %v; want ErrKeyHeld", st, err)
		}
		mustContain(t, err, "(owner rival)", key)
		// A third bridge sees the rival holding the key (and waits on it).
		var logs logBuffer
		if _, err := openStoreCfg(t, cl, kafka.StoreConfig{CheckpointKey: key}, logs.logger()); err != nil {
			t.Fatalf("third OpenStore after a silent rival: %v", err)
		}
		if !strings.Contains(logs.String(), `"previous_owner":"rival"`) {
			t.Errorf("the third store did not wait on the rival:\n%s", logs.String())
		}
	})

	t.Run("holder refreshing at the last moment keeps the key", func(t *testing.T) {
		key := "last-moment"
		first := mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key}, nil)
		if err := first.Commit(ctx, seqCP(10)); err != nil {
			t.Fatal(err)
		}
		kafka.FreezeStore(first)
		// The holder's record lands after the waiting store decided to
		// take the key over, before its claim.
		cfg := kafka.WithBeforeClaim(kafka.StoreConfig{CheckpointKey: key}, func() {
			if err := first.Commit(ctx, seqCP(15)); err != nil {
				t.Errorf("holder's commit: %v", err)
			}
		})
		st, err := openStoreCfg(t, cl, cfg, nil)
		if !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("OpenStore = %v, %v; want ErrKeyHeld", st, err)
		}
		mustContain(t, err, first.Owner())
		if err := first.Commit(ctx, seqCP(20)); err != nil {
			t.Fatalf("holder's commit after the lost claim: %v", err)
		}
		if err := first.Healthy(); err != nil {
			t.Errorf("holder Healthy = %v", err)
		}
	})

	t.Run("late claims and stray releases change nothing", func(t *testing.T) {
		key := "late"
		st := mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key}, nil)
		if err := st.Commit(ctx, seqCP(10)); err != nil {
			t.Fatal(err)
		}
		// A claim based on a read from before ours, with an old
		// checkpoint, and a release by a bridge that does not hold the key.
		produce(t, cl, key, `{"last_committed_sequence":3,"owner":"latecomer","claim":true,"basis_offset":0}`)
		produce(t, cl, key, `{"last_committed_sequence":3,"owner":"","released_by":"ghost"}`)
		if err := st.Commit(ctx, seqCP(20)); err != nil {
			t.Fatalf("Commit after a lost claim: %v", err)
		}
		if err := st.Healthy(); err != nil {
			t.Errorf("Healthy = %v", err)
		}
		if seq, _ := loadSeq(t, st); seq != 20 {
			t.Errorf("Load = %d, want 20", seq)
		}
		produce(t, cl, key, `{"last_committed_sequence":20,"owner":"","released_by":"ghost"}`)
		other, err := openStoreCfg(t, cl, kafka.StoreConfig{CheckpointKey: key}, nil)
		if !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("OpenStore after a stray release = %v, %v; want ErrKeyHeld (the holder is alive)", other, err)
		}
		mustContain(t, err, st.Owner())
	})

	t.Run("winning claim by another bridge fences the holder", func(t *testing.T) {
		key := "stolen"
		var logs logBuffer
		st := mustOpenStore(t, cl, kafka.StoreConfig{CheckpointKey: key}, logs.logger())
		if err := st.Commit(ctx, seqCP(10)); err != nil {
			t.Fatal(err)
		}
		// A winning claim, as from a bridge that waited out a lease this
		// one failed to refresh. Its basis lies beyond its own offset, so
		// that a refresh landing just before it cannot make it lose.
		produce(t, cl, key, fmt.Sprintf(`{"last_committed_sequence":10,"owner":"intruder","claim":true,"basis_offset":%d}`, endOffset(t, cl)+1000))
		// The refresher notices without a commit.
		waitFor(t, 20*testTTL, "the refresher to notice", func() bool { return errors.Is(st.Healthy(), bridge.ErrKeyHeld) })
		mustContain(t, st.Healthy(), "intruder", key)
		if !strings.Contains(logs.String(), `"checkpoint.kafka.lost"`) {
			t.Errorf("no checkpoint.kafka.lost:\n%s", logs.String())
		}
		if err := st.Commit(ctx, seqCP(100)); !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("Commit after losing the key = %v, want ErrKeyHeld", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if v := newest(t, cl, key); v.Owner != "intruder" {
			t.Errorf("newest %+v after Close, want the intruder's claim (no release of a lost key)", v)
		}
	})
}

func TestStoreConfigValidate(t *testing.T) {
	base := kafka.Config{Brokers: []string{"127.0.0.1:9092"}}
	for _, tc := range []struct {
		name string
		cfg  kafka.StoreConfig
		want string // "" when valid
	}{
		{"defaults", kafka.StoreConfig{Config: base, CheckpointKey: "k"}, ""},
		{"short lease", kafka.StoreConfig{Config: base, CheckpointKey: "k", LeaseRefresh: time.Second, LeaseTTL: 2 * time.Second}, ""},
		{"refresh only", kafka.StoreConfig{Config: base, CheckpointKey: "k", LeaseRefresh: time.Second}, ""},
		{"no key", kafka.StoreConfig{Config: base}, "CHECKPOINT_KEY"},
		{"negative refresh", kafka.StoreConfig{Config: base, CheckpointKey: "k", LeaseRefresh: -time.Second}, "must not be negative"},
		{"ttl not above refresh", kafka.StoreConfig{Config: base, CheckpointKey: "k", LeaseRefresh: time.Second, LeaseTTL: time.Second}, "must exceed LeaseRefresh"},
		{"ttl below the default refresh", kafka.StoreConfig{Config: base, CheckpointKey: "k", LeaseTTL: time.Second}, "must exceed LeaseRefresh"},
		{"kafka settings", kafka.StoreConfig{CheckpointKey: "k"}, "KAFKA_BROKERS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			mustContain(t, err, tc.want)
		})
	}
}
