package nats

import (
	"encoding/json"
	"errors"
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

func TestKVStoreFencing(t *testing.T) {
	srv := natstest.NewServer(t)
	ctx := testCtx(t, 30*time.Second)

	t.Run("newer bridge takes over", func(t *testing.T) {
		key := testKey + ".a"
		first := openKV(t, srv, key)
		if err := first.Commit(ctx, cp(10)); err != nil {
			t.Fatal(err)
		}
		second := openKV(t, srv, key)
		if seq, _ := load(t, second); seq != 10 {
			t.Fatalf("second bridge loads %d, want 10", seq)
		}
		err := first.Commit(ctx, cp(20))
		if !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("first bridge's commit after take-over = %v, want ErrKeyHeld", err)
		}
		mustContain(t, err, `bucket "aviso_bridge"`, key, second.Owner())
		if err := first.Commit(ctx, cp(30)); !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("ErrKeyHeld is not sticky: %v", err)
		}
		if first.Healthy() == nil {
			t.Error("Healthy of a fenced store is nil")
		}
		if err := second.Commit(ctx, cp(20)); err != nil {
			t.Fatalf("second bridge's commit: %v", err)
		}
	})
	t.Run("two bridges start on a missing key", func(t *testing.T) {
		key := testKey + ".b"
		first := openKV(t, srv, key)
		second := openKV(t, srv, key)
		if err := first.Commit(ctx, cp(1)); err != nil {
			t.Fatal(err)
		}
		err := second.Commit(ctx, cp(2))
		if !errors.Is(err, bridge.ErrKeyHeld) {
			t.Fatalf("second bridge's commit = %v, want ErrKeyHeld", err)
		}
		mustContain(t, err, key, first.Owner())
	})
	t.Run("own write whose reply was lost", func(t *testing.T) {
		key := testKey + ".c"
		s := openKV(t, srv, key)
		if err := s.Commit(ctx, cp(1)); err != nil {
			t.Fatal(err)
		}
		// Write as s would have, behind its back (a commit that timed out
		// on the client but was applied).
		kv, err := srv.JetStream(t).KeyValue(ctx, DefaultKVBucket)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(kvRecord{Checkpoint: cp(2), Owner: s.Owner()})
		if _, err := kv.Put(ctx, key, data); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, cp(3)); err != nil {
			t.Fatalf("Commit after an applied-but-unanswered write: %v", err)
		}
		if seq, _ := load(t, s); seq != 3 {
			t.Fatalf("Load = %d, want 3", seq)
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
