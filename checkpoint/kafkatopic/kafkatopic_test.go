package kafkatopic

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
)

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func client(cl *kafkatest.Cluster) *kafkago.Client {
	return &kafkago.Client{Addr: kafkago.TCP(cl.Addr), Transport: &kafkago.Transport{}, Timeout: 5 * time.Second}
}

func TestStoreSuite(t *testing.T) {
	c := client(kafkatest.NewCluster(t, kfake.DefaultNumPartitions(1)))
	bridgetest.StoreSuite(t, bridgetest.StoreSuiteConfig{
		Open: func(ctx context.Context, key string, lc lease.Config) (bridge.Store, error) {
			return Open(ctx, c, Config{Key: key, Timeout: 5 * time.Second, Lease: lc}, nil)
		},
		TTL:     300 * time.Millisecond,
		Abandon: func(s bridge.Store) { s.(*Store).lease.Abandon() },
		Standby: true,
	})
}

// Two bridges claiming a free key at the same time: the first claim in the
// partition wins, the other fails naming the winner.
func TestClaimRace(t *testing.T) {
	c := client(kafkatest.NewCluster(t, kfake.DefaultNumPartitions(1)))
	ctx := testContext(t, 30*time.Second)
	key := strings.Repeat("cd", 32)
	var winner *Store
	cfg := Config{Key: key, Lease: lease.Config{TTL: 300 * time.Millisecond}}
	cfg.beforeClaim = func() {
		var err error
		winner, err = Open(ctx, c, Config{Key: key, Lease: lease.Config{TTL: 300 * time.Millisecond}}, nil)
		if err != nil {
			t.Errorf("the other bridge's Open: %v", err)
		}
	}
	_, err := Open(ctx, c, cfg, nil)
	if winner == nil {
		t.Fatal("no winner")
	}
	t.Cleanup(func() { _ = winner.Close() })
	var held *lease.HeldError
	if !errors.As(err, &held) || held.Holder != winner.Owner() {
		t.Fatalf("losing Open = %v, want a held error naming %s", err, winner.Owner())
	}
	if err := winner.Commit(ctx, bridge.Checkpoint{Sequence: 1}); err != nil {
		t.Fatalf("winner's Commit: %v", err)
	}
}

// An unreadable newest value fails Open and is not overwritten.
func TestUnreadableValue(t *testing.T) {
	cl := kafkatest.NewCluster(t, kfake.DefaultNumPartitions(1))
	c := client(cl)
	ctx := testContext(t, 30*time.Second)
	s, err := Open(ctx, c, Config{Key: "k"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	w := &kafkago.Writer{Addr: kafkago.TCP(cl.Addr), Topic: DefaultTopic, Transport: c.Transport}
	if err := w.WriteMessages(ctx, kafkago.Message{Key: []byte("bad"), Value: []byte("not json")}); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	_, err = Open(ctx, c, Config{Key: "bad"}, nil)
	if err == nil || !strings.Contains(err.Error(), "unreadable checkpoint") || bridge.IsRetryable(err) {
		t.Fatalf("Open on an unreadable value = %v, want a non-retryable error naming it", err)
	}
}

// No broker: Open fails with a retryable error.
func TestOpenRetryable(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	c := client(cl)
	cl.Kfake().Close()
	_, err := Open(testContext(t, 10*time.Second), c, Config{Key: "k", Timeout: time.Second}, nil)
	if !bridge.IsRetryable(err) {
		t.Fatalf("Open without a broker = %v, want a *bridge.RetryableError", err)
	}
}

func TestFleetSuite(t *testing.T) {
	c := client(kafkatest.NewCluster(t, kfake.DefaultNumPartitions(3)))
	bridgetest.FleetSuite(t, bridgetest.FleetSuiteConfig{
		StoreSuiteConfig: bridgetest.StoreSuiteConfig{
			Open: func(ctx context.Context, key string, lc lease.Config) (bridge.Store, error) {
				return Open(ctx, c, Config{Key: key, Timeout: 5 * time.Second, Lease: lc}, nil)
			},
			TTL:     2 * time.Second, // membership liveness: a refresh every TTL/3 must survive a loaded CI machine
			Abandon: func(s bridge.Store) { s.(*Store).lease.Abandon() },
		},
		OpenFleet: func(ctx context.Context, ttl time.Duration) (bridgetest.FleetStore, error) {
			return OpenTopic(ctx, c, TopicConfig{Timeout: 5 * time.Second, Lease: lease.Config{TTL: ttl}}, nil)
		},
		AnnounceDead: func(ctx context.Context, id string) error {
			tp, err := OpenTopic(ctx, c, TopicConfig{Timeout: 5 * time.Second}, nil)
			if err != nil {
				return err
			}
			key := checkpoint.MemberPrefix + id
			parts := make([]int, len(tp.readers))
			for i, r := range tp.readers {
				parts[i] = r.partition
			}
			r := partReader{client: c, topic: DefaultTopic, partition: partitionOf(key, parts), timeout: 5 * time.Second}
			_, err = r.produce(ctx, key, []byte(`{"owner":"`+id+`"}`))
			return err
		},
	})
}
