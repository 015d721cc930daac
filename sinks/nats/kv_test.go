package nats

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

const testKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func openKV(t *testing.T, srv *natstest.Server, key string) *KVStore {
	t.Helper()
	s, err := OpenKVStore(testCtx(t, 10*time.Second), KVConfig{ConnConfig: ConnConfig{URL: srv.URL}, Key: key}, Options{})
	if err != nil {
		t.Fatalf("OpenKVStore: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func cp(seq uint64) bridge.Checkpoint {
	return bridge.Checkpoint{Sequence: seq, EventID: bridge.EventID("mars", seq)}
}

func load(t *testing.T, s *KVStore) (uint64, bool) {
	t.Helper()
	c, found, err := s.Load(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c.Sequence, found
}

func TestKVStoreCommitLoad(t *testing.T) {
	srv := natstest.NewServer(t)
	ctx := testCtx(t, 30*time.Second)
	a := openKV(t, srv, testKey)
	if _, found := load(t, a); found {
		t.Fatal("found a checkpoint in a new bucket")
	}
	for _, seq := range []uint64{5, 10, 7} { // 7: behind, a no-op
		if err := a.Commit(ctx, cp(seq)); err != nil {
			t.Fatalf("Commit %d: %v", seq, err)
		}
	}
	if seq, found := load(t, a); !found || seq != 10 {
		t.Fatalf("Load = %d, %v; want 10", seq, found)
	}

	// The stored value is the checkpoint JSON (plus the owner), in bucket
	// aviso_bridge with history 1 and file storage.
	js := srv.JetStream(t)
	kv, err := js.KeyValue(ctx, DefaultKVBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != 1 || st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Storage != jetstream.FileStorage {
		t.Errorf("bucket history %d storage %v", st.History(), st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Storage)
	}
	e, err := kv.Get(ctx, testKey)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		t.Fatal(err)
	}
	if v["last_committed_sequence"] != float64(10) || v["last_event_id"] != "mars@10" || v["owner"] != a.Owner() || v["updated_at"] == nil {
		t.Errorf("stored value %s", e.Value())
	}

	// A reopened store (a restart) loads it.
	_ = a.Close()
	b := openKV(t, srv, testKey)
	if seq, found := load(t, b); !found || seq != 10 {
		t.Fatalf("after reopen Load = %d, %v; want 10", seq, found)
	}
}

// Short leases for tests: a live holder refreshes every 100ms; a store
// opening on a key held by another owner waits 600ms.
const (
	testRefresh = 100 * time.Millisecond
	testTTL     = 600 * time.Millisecond
)

// openKVCfg opens a store on srv with cfg (URL and, when empty, the lease
// settings filled in) and closes it at cleanup.
func openKVCfg(t *testing.T, srv *natstest.Server, cfg KVConfig, log *slog.Logger) (*KVStore, error) {
	t.Helper()
	cfg.URL = srv.URL
	if cfg.LeaseRefresh == 0 {
		cfg.LeaseRefresh = testRefresh
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = testTTL
	}
	s, err := OpenKVStore(testCtx(t, 30*time.Second), cfg, Options{Logger: log})
	if err == nil {
		t.Cleanup(func() { _ = s.Close() })
	}
	return s, err
}

// mustOpenKV is openKVCfg failing the test on an error.
func mustOpenKV(t *testing.T, srv *natstest.Server, cfg KVConfig, log *slog.Logger) *KVStore {
	t.Helper()
	s, err := openKVCfg(t, srv, cfg, log)
	if err != nil {
		t.Fatalf("OpenKVStore %s: %v", cfg.Key, err)
	}
	return s
}

// freeze stops s's lease refresher without releasing the key, as kill -9
// (or a process stopped in a debugger, or cut off from NATS) would: the
// key's revision stops changing.
func freeze(s *KVStore) {
	s.stopRefresh()
	<-s.refreshDone
}

// stored reads key's value and revision behind the stores' backs.
func stored(t *testing.T, srv *natstest.Server, key string) (kvRecord, uint64) {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	kv, err := srv.JetStream(t).KeyValue(ctx, DefaultKVBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	var rec kvRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatalf("value of %s: %v", key, err)
	}
	return rec, e.Revision()
}

func TestKVStoreLease(t *testing.T) {
	srv := natstest.NewServer(t)
	ctx := testCtx(t, 60*time.Second)

	t.Run("second bridge on a live key fails", func(t *testing.T) {
		key := testKey + ".live"
		first := mustOpenKV(t, srv, KVConfig{Key: key}, nil)
		if err := first.Commit(ctx, cp(10)); err != nil {
			t.Fatal(err)
		}
		var logs logBuffer
		began := time.Now()
		second, err := openKVCfg(t, srv, KVConfig{Key: key}, logs.logger())
		if !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("second OpenKVStore = %v, %v; want ErrKeyHeld", second, err)
		}
		if d := time.Since(began); d > 10*testTTL {
			t.Errorf("second store failed after %v; want about one LeaseTTL (%v) at most", d, testTTL)
		}
		mustContain(t, err, "another bridge holds checkpoint key", key, `bucket "aviso_bridge"`, first.Owner(), "CHECKPOINT_KEY")
		if !strings.Contains(logs.String(), `"checkpoint.nats_kv.waiting"`) || !strings.Contains(logs.String(), first.Owner()) {
			t.Errorf("no checkpoint.nats_kv.waiting naming %s:\n%s", first.Owner(), logs.String())
		}
		// The first keeps the key and keeps committing.
		for _, seq := range []uint64{20, 30} {
			if err := first.Commit(ctx, cp(seq)); err != nil {
				t.Fatalf("first bridge's commit %d after the second gave up: %v", seq, err)
			}
		}
		if first.Healthy() != nil {
			t.Errorf("first Healthy = %v", first.Healthy())
		}
		if rec, _ := stored(t, srv, key); rec.Owner != first.Owner() || *rec.Sequence != 30 {
			t.Errorf("stored %+v, want sequence 30 of %s", rec, first.Owner())
		}
	})

	t.Run("holder refreshes without commits", func(t *testing.T) {
		key := testKey + ".refresh"
		s := mustOpenKV(t, srv, KVConfig{Key: key}, nil)
		rec, rev := stored(t, srv, key)
		if rec.Owner != s.Owner() || rec.Sequence != nil {
			t.Fatalf("value after open %+v, want owner %s and no checkpoint", rec, s.Owner())
		}
		if _, found := load(t, s); found {
			t.Error("Load found a checkpoint in a key holding only the owner")
		}
		waitFor(t, 20*testTTL, "a refresh", func() bool { _, r := stored(t, srv, key); return r > rev+1 })
	})

	t.Run("holder killed is taken over after LeaseTTL", func(t *testing.T) {
		key := testKey + ".killed"
		first := mustOpenKV(t, srv, KVConfig{Key: key}, nil)
		if err := first.Commit(ctx, cp(10)); err != nil {
			t.Fatal(err)
		}
		freeze(first)
		var logs logBuffer
		began := time.Now()
		second := mustOpenKV(t, srv, KVConfig{Key: key}, logs.logger())
		if d := time.Since(began); d < testTTL {
			t.Errorf("taken over after %v, before LeaseTTL %v", d, testTTL)
		}
		if seq, found := load(t, second); !found || seq != 10 {
			t.Fatalf("second bridge loads %d, %v; want 10", seq, found)
		}
		if !strings.Contains(logs.String(), `"checkpoint.nats_kv.taken_over"`) || !strings.Contains(logs.String(), `"previous_owner":"`+first.Owner()+`"`) {
			t.Errorf("no checkpoint.nats_kv.taken_over naming %s:\n%s", first.Owner(), logs.String())
		}
		if err := second.Commit(ctx, cp(20)); err != nil {
			t.Fatalf("second bridge's commit: %v", err)
		}
		// Had the first only been frozen, it finds out at its next commit.
		err := first.Commit(ctx, cp(30))
		if !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("frozen bridge's commit after the take-over = %v, want ErrKeyHeld", err)
		}
		mustContain(t, err, key, second.Owner())
		if err := first.Commit(ctx, cp(40)); !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("ErrKeyHeld is not sticky: %v", err)
		}
		if first.Healthy() == nil {
			t.Error("Healthy of a fenced store is nil")
		}
		if err := first.Close(); err != nil {
			t.Errorf("Close of a fenced store: %v", err)
		}
		if rec, _ := stored(t, srv, key); rec.Owner != second.Owner() || *rec.Sequence != 20 {
			t.Errorf("stored %+v, want sequence 20 of %s (the fenced store must not release)", rec, second.Owner())
		}
	})

	t.Run("gracefully closed holder is taken over at once", func(t *testing.T) {
		key := testKey + ".closed"
		first := mustOpenKV(t, srv, KVConfig{Key: key}, nil)
		if err := first.Commit(ctx, cp(10)); err != nil {
			t.Fatal(err)
		}
		if err := first.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if rec, _ := stored(t, srv, key); rec.Owner != "" || rec.Sequence == nil || *rec.Sequence != 10 {
			t.Fatalf("value after Close %+v, want sequence 10 and no owner", rec)
		}
		var logs logBuffer
		began := time.Now()
		second := mustOpenKV(t, srv, KVConfig{Key: key, LeaseRefresh: 10 * time.Second, LeaseTTL: time.Minute}, logs.logger())
		if d := time.Since(began); d >= time.Minute {
			t.Errorf("took %v: waited for a released key", d)
		}
		if strings.Contains(logs.String(), "waiting") {
			t.Errorf("waited for a released key:\n%s", logs.String())
		}
		if seq, found := load(t, second); !found || seq != 10 {
			t.Fatalf("second bridge loads %d, %v; want 10", seq, found)
		}
		if rec, _ := stored(t, srv, key); rec.Owner != second.Owner() {
			t.Errorf("owner %q, want %q", rec.Owner, second.Owner())
		}
	})

	t.Run("released while waiting is taken at once", func(t *testing.T) {
		key := testKey + ".release-wait"
		first := mustOpenKV(t, srv, KVConfig{Key: key}, nil)
		if err := first.Commit(ctx, cp(10)); err != nil {
			t.Fatal(err)
		}
		var logs logBuffer
		type result struct {
			s   *KVStore
			err error
		}
		res := make(chan result, 1)
		go func() {
			s, err := OpenKVStore(ctx, KVConfig{ConnConfig: ConnConfig{URL: srv.URL}, Key: key,
				LeaseRefresh: testRefresh, LeaseTTL: time.Minute}, Options{Logger: logs.logger()})
			res <- result{s, err}
		}()
		waitFor(t, 10*time.Second, "the second store to wait", func() bool { return strings.Contains(logs.String(), "checkpoint.nats_kv.waiting") })
		if err := first.Close(); err != nil {
			t.Fatal(err)
		}
		r := <-res
		if r.err != nil {
			t.Fatalf("OpenKVStore after the holder's release: %v", r.err)
		}
		t.Cleanup(func() { _ = r.s.Close() })
		if seq, found := load(t, r.s); !found || seq != 10 {
			t.Fatalf("loads %d, %v; want 10", seq, found)
		}
	})

	t.Run("own owner id is taken at once", func(t *testing.T) {
		key := testKey + ".own"
		first := mustOpenKV(t, srv, KVConfig{Key: key, Owner: "bridge-a"}, nil)
		if err := first.Commit(ctx, cp(10)); err != nil {
			t.Fatal(err)
		}
		freeze(first)
		var logs logBuffer
		second := mustOpenKV(t, srv, KVConfig{Key: key, Owner: "bridge-a", LeaseRefresh: 10 * time.Second, LeaseTTL: time.Minute}, logs.logger())
		if strings.Contains(logs.String(), "waiting") {
			t.Errorf("waited for its own key:\n%s", logs.String())
		}
		if seq, _ := load(t, second); seq != 10 {
			t.Fatalf("loads %d, want 10", seq)
		}
	})

	t.Run("context ends while waiting", func(t *testing.T) {
		key := testKey + ".cancel"
		freeze(mustOpenKV(t, srv, KVConfig{Key: key}, nil)) // no refresh ends the wait early
		wctx, cancel := context.WithTimeout(ctx, 2*testRefresh)
		defer cancel()
		s, err := OpenKVStore(wctx, KVConfig{ConnConfig: ConnConfig{URL: srv.URL}, Key: key,
			LeaseRefresh: testRefresh, LeaseTTL: time.Minute}, Options{})
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("OpenKVStore = %v, %v; want the context's error", s, err)
		}
	})

	t.Run("two bridges start on a missing key", func(t *testing.T) {
		key := testKey + ".race"
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				_, err := openKVCfg(t, srv, KVConfig{Key: key}, nil)
				errs <- err
			}()
		}
		var held, ok int
		for range 2 {
			switch err := <-errs; {
			case err == nil:
				ok++
			case errors.Is(err, bridge.ErrKeyHeld):
				held++
			default:
				t.Errorf("OpenKVStore: %v", err)
			}
		}
		if ok != 1 || held != 1 {
			t.Fatalf("%d opened, %d got ErrKeyHeld; want one each", ok, held)
		}
	})

	t.Run("key overwritten by another bridge", func(t *testing.T) {
		key := testKey + ".stolen"
		var logs logBuffer
		s := mustOpenKV(t, srv, KVConfig{Key: key}, logs.logger())
		kv, err := srv.JetStream(t).KeyValue(ctx, DefaultKVBucket)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := encodeRecord(cp(99), true, "intruder")
		if _, err := kv.Put(ctx, key, data); err != nil {
			t.Fatal(err)
		}
		// The refresher notices without a commit.
		waitFor(t, 20*testTTL, "the refresher to notice", func() bool { return errors.Is(s.Healthy(), bridge.ErrKeyHeld) })
		mustContain(t, s.Healthy(), "intruder", key)
		if !strings.Contains(logs.String(), `"checkpoint.nats_kv.lost"`) {
			t.Errorf("no checkpoint.nats_kv.lost:\n%s", logs.String())
		}
		if err := s.Commit(ctx, cp(100)); !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("Commit after losing the key = %v, want ErrKeyHeld", err)
		}
		_ = s.Close()
		if rec, _ := stored(t, srv, key); rec.Owner != "intruder" {
			t.Errorf("owner %q after Close, want intruder (no release of a lost key)", rec.Owner)
		}
	})

	t.Run("own write whose reply was lost", func(t *testing.T) {
		key := testKey + ".c"
		s := mustOpenKV(t, srv, KVConfig{Key: key}, nil)
		if err := s.Commit(ctx, cp(1)); err != nil {
			t.Fatal(err)
		}
		// Write as s would have, behind its back (a commit that timed out
		// on the client but was applied).
		kv, err := srv.JetStream(t).KeyValue(ctx, DefaultKVBucket)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := encodeRecord(cp(2), true, s.Owner())
		if _, err := kv.Put(ctx, key, data); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, cp(3)); err != nil {
			t.Fatalf("Commit after an applied-but-unanswered write: %v", err)
		}
		if seq, _ := load(t, s); seq != 3 {
			t.Fatalf("Load = %d, want 3", seq)
		}
		if s.Healthy() != nil {
			t.Errorf("Healthy = %v", s.Healthy())
		}
	})
}

func TestKVStoreUnreadable(t *testing.T) {
	srv := natstest.NewServer(t)
	ctx := testCtx(t, 10*time.Second)
	openKV(t, srv, "k") // creates the bucket
	kv, err := srv.JetStream(t).KeyValue(ctx, DefaultKVBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "bad", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	s := openKV(t, srv, "bad")
	_, found, err := s.Load(ctx)
	if err == nil || found {
		t.Fatalf("Load of an unreadable value = %v, %v; want an error", found, err)
	}
	mustContain(t, err, "bad", "aviso_bridge")
	if err := s.Commit(ctx, cp(1)); err == nil {
		t.Fatal("Commit over an unreadable value succeeded")
	}
	if e, _ := kv.Get(ctx, "bad"); string(e.Value()) != "not json" {
		t.Fatalf("unreadable value overwritten with %s", e.Value())
	}
}

func TestKVConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  KVConfig
		want string
	}{
		{KVConfig{Key: testKey}, ""},
		{KVConfig{Key: testKey, Bucket: "my.bucket"}, "NATS_KV_BUCKET"},
		{KVConfig{Key: "a b"}, "CHECKPOINT_KEY"},
		{KVConfig{Key: ".a"}, "CHECKPOINT_KEY"},
		{KVConfig{Key: ""}, "CHECKPOINT_KEY"},
		{KVConfig{Key: testKey, LeaseRefresh: time.Second, LeaseTTL: 3 * time.Second}, ""},
		{KVConfig{Key: testKey, LeaseRefresh: 10 * time.Second}, ""},
		{KVConfig{Key: testKey, LeaseTTL: 2 * time.Second}, "LeaseTTL"},
		{KVConfig{Key: testKey, LeaseRefresh: time.Second, LeaseTTL: time.Second}, "LeaseTTL"},
		{KVConfig{Key: testKey, LeaseRefresh: -time.Second}, "LeaseRefresh"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tt.cfg, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want one naming %s", tt.cfg, err, tt.want)
		}
	}
}
