package kafka_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
)

func openStore(t *testing.T, cl *kafkatest.Cluster, key string) *kafka.Store {
	t.Helper()
	st, err := kafka.NewStore(testContext(t, 20*time.Second), kafka.Config{Brokers: []string{cl.Addr}}, key, kafka.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
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
	if err := st.Close(); err != nil {
		t.Fatal(err)
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
	// no-op. Each of the four openings wrote a claim.
	nClaims, nCommits := 0, 0
	for _, r := range readTopic(t, cl, kafka.DefaultCheckpointTopic) {
		if strings.Contains(string(r.Value), `"claim":true`) {
			nClaims++
		} else {
			nCommits++
		}
	}
	if nClaims != 4 || nCommits != 3 {
		t.Errorf("%d claims and %d commits, want 4 and 3 (no-op commits write nothing)", nClaims, nCommits)
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

// TestStoreNewestOwnerWins: a second bridge opening the same key takes it
// over; the first one's next commit fails with ErrKeyHeld, and nothing it
// tries afterwards is written.
func TestStoreNewestOwnerWins(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	ctx := testContext(t, 30*time.Second)
	first := openStore(t, cl, "shared")
	if err := first.Commit(ctx, bridge.Checkpoint{Sequence: 10}); err != nil {
		t.Fatal(err)
	}
	second := openStore(t, cl, "shared")
	if cp, found, err := second.Load(ctx); err != nil || !found || cp.Sequence != 10 {
		t.Fatalf("second Load = %+v, %v, %v", cp, found, err)
	}
	err := first.Commit(ctx, bridge.Checkpoint{Sequence: 20})
	if !errors.Is(err, bridge.ErrKeyHeld) || !strings.Contains(err.Error(), "claimed by") {
		t.Fatalf("first Commit after the takeover = %v, want ErrKeyHeld", err)
	}
	if err := first.Commit(ctx, bridge.Checkpoint{Sequence: 30}); !errors.Is(err, bridge.ErrKeyHeld) {
		t.Fatalf("ErrKeyHeld is not sticky: %v", err)
	}
	if !errors.Is(first.Healthy(), bridge.ErrKeyHeld) {
		t.Errorf("first Healthy = %v", first.Healthy())
	}
	if err := second.Commit(ctx, bridge.Checkpoint{Sequence: 15}); err != nil {
		t.Fatalf("second Commit: %v", err)
	}
	third := openStore(t, cl, "shared")
	if cp, _, err := third.Load(ctx); err != nil || cp.Sequence != 15 {
		t.Fatalf("Load = %+v, %v; want 15 (the fenced store wrote nothing)", cp, err)
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
