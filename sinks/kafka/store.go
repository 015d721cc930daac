package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Store keeps the checkpoint of one checkpoint key in a compacted topic
// (CHECKPOINT_STORE=kafka, KAFKA_CHECKPOINT_TOPIC): record key = checkpoint
// key, value = the JSON bridge.Checkpoint. It implements bridge.Store and
// bridge.HealthReporter.
//
// The topic is created when missing (1 partition, cleanup.policy=compact).
// Load reads the key's partition to its end; the newest value for the key
// wins. Commit writes synchronously with acks=all and is monotonic.
type Store struct {
	key       string
	topic     string
	log       *slog.Logger
	client    *kafkago.Client
	w         *kafkago.Writer
	transport *kafkago.Transport
	own       bool
	hash      *kafkago.Hash

	mu     sync.Mutex
	last   uint64
	have   bool
	closed bool

	healthErr error
}

// NewStore opens the store for checkpoint key key: it validates cfg,
// creates the topic when missing and reads the stored position. Only
// Brokers, the security fields, CheckpointTopic and
// CheckpointReplicationFactor of cfg matter (Validate still checks all).
func NewStore(ctx context.Context, cfg Config, key string, opts Options) (*Store, error) {
	if key == "" {
		return nil, errors.New("CHECKPOINT_KEY: empty checkpoint key")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts = opts.withDefaults()
	st := &Store{
		key:       key,
		topic:     cfg.CheckpointTopic,
		log:       opts.Logger,
		transport: opts.Transport,
		hash:      &kafkago.Hash{},
	}
	if st.transport == nil {
		t, err := NewTransport(cfg)
		if err != nil {
			return nil, err
		}
		st.transport, st.own = t, true
	}
	addr := brokerAddr(cfg)
	st.client = &kafkago.Client{Addr: addr, Transport: st.transport, Timeout: cfg.WriteTimeout}
	st.w = &kafkago.Writer{
		Addr:            addr,
		Topic:           st.topic,
		Balancer:        &kafkago.Hash{},
		MaxAttempts:     cfg.MaxAttempts,
		WriteBackoffMin: cfg.RetryBackoffMin,
		WriteBackoffMax: cfg.RetryBackoffMax,
		BatchSize:       1,
		BatchTimeout:    time.Millisecond,
		ReadTimeout:     cfg.WriteTimeout,
		WriteTimeout:    cfg.WriteTimeout,
		RequiredAcks:    kafkago.RequireAll,
		Transport:       st.transport,
	}
	if err := st.ensureTopic(ctx, cfg.CheckpointReplicationFactor); err != nil {
		st.closeTransport()
		return nil, err
	}
	if _, _, err := st.Load(ctx); err != nil {
		st.closeTransport()
		return nil, err
	}
	return st, nil
}

// ensureTopic creates the compacted topic when it does not exist.
func (st *Store) ensureTopic(ctx context.Context, replication int) error {
	md, err := st.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{st.topic}})
	if err != nil {
		return fmt.Errorf("KAFKA_CHECKPOINT_TOPIC %q: metadata: %w", st.topic, err)
	}
	for _, t := range md.Topics {
		if t.Name == st.topic && t.Error == nil && len(t.Partitions) > 0 {
			return nil
		}
	}
	res, err := st.client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{
		Topic:             st.topic,
		NumPartitions:     1,
		ReplicationFactor: replication,
		ConfigEntries: []kafkago.ConfigEntry{
			{ConfigName: "cleanup.policy", ConfigValue: "compact"},
			// Roll segments hourly so compaction can reach old commits
			// (the active segment is never compacted; the broker default
			// is 7 days) and Load reads little.
			{ConfigName: "segment.ms", ConfigValue: "3600000"},
		},
	}}})
	if err != nil {
		return fmt.Errorf("KAFKA_CHECKPOINT_TOPIC %q: create: %w", st.topic, err)
	}
	if err := res.Errors[st.topic]; err != nil && !errors.Is(err, kafkago.TopicAlreadyExists) {
		return fmt.Errorf("KAFKA_CHECKPOINT_TOPIC %q: create: %w", st.topic, err)
	}
	st.log.Info("kafka.checkpoint.topic_created", "topic", st.topic, "cleanup_policy", "compact", "partitions", 1)
	return nil
}

// partition is where the key's records live (kafka.Hash, as the Writer).
func (st *Store) partition(ctx context.Context) (int, error) {
	md, err := st.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{st.topic}})
	if err != nil {
		return 0, err
	}
	for _, t := range md.Topics {
		if t.Name == st.topic {
			if t.Error != nil {
				return 0, t.Error
			}
			if len(t.Partitions) == 0 {
				break
			}
			return hashPartition(st.hash, []byte(st.key), len(t.Partitions)), nil
		}
	}
	return 0, kafkago.UnknownTopicOrPartition
}

// Load implements bridge.Store: it reads the key's partition to its end.
func (st *Store) Load(ctx context.Context) (bridge.Checkpoint, bool, error) {
	p, err := st.partition(ctx)
	if err != nil {
		return bridge.Checkpoint{}, false, st.fail(fmt.Errorf("kafka checkpoint topic %q: %w", st.topic, err))
	}
	var (
		cp     bridge.Checkpoint
		found  bool
		badErr error
	)
	key := []byte(st.key)
	_, err = readNewest(ctx, st.client, st.topic, p, 0, func(r *kafkago.Record) error {
		if r.Key == nil {
			return nil
		}
		k, err := kafkago.ReadAll(r.Key)
		if err != nil || !bytes.Equal(k, key) {
			return err
		}
		if r.Value == nil {
			cp, found, badErr = bridge.Checkpoint{}, false, nil // tombstone
			return nil
		}
		v, err := kafkago.ReadAll(r.Value)
		if err != nil {
			return err
		}
		var c bridge.Checkpoint
		if err := json.Unmarshal(v, &c); err != nil {
			cp, found = bridge.Checkpoint{}, false
			badErr = fmt.Errorf("kafka checkpoint topic %q key %s offset %d: unreadable checkpoint: %w", st.topic, st.key, r.Offset, err)
			return nil
		}
		cp, found, badErr = c, true, nil
		return nil
	})
	if err != nil {
		return bridge.Checkpoint{}, false, st.fail(fmt.Errorf("kafka checkpoint topic %q partition %d: read: %w", st.topic, p, err))
	}
	st.mu.Lock()
	st.healthErr = nil
	st.mu.Unlock()
	if badErr != nil {
		return bridge.Checkpoint{}, false, badErr
	}
	if found {
		st.mu.Lock()
		if !st.have || cp.Sequence > st.last {
			st.last, st.have = cp.Sequence, true
		}
		st.mu.Unlock()
	}
	return cp, found, nil
}

// Commit implements bridge.Store: it writes cp synchronously (acks=all)
// unless cp.Sequence is at or below the stored sequence.
func (st *Store) Commit(ctx context.Context, cp bridge.Checkpoint) error {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return errors.New("kafka checkpoint store: closed")
	}
	if st.have && cp.Sequence <= st.last {
		st.mu.Unlock()
		return nil
	}
	st.mu.Unlock()
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = time.Now().UTC()
	}
	v, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if err := st.w.WriteMessages(ctx, kafkago.Message{Key: []byte(st.key), Value: v}); err != nil {
		err = fmt.Errorf("kafka checkpoint topic %q: commit sequence %d: %w", st.topic, cp.Sequence, err)
		return st.fail(err)
	}
	st.mu.Lock()
	if !st.have || cp.Sequence > st.last {
		st.last, st.have = cp.Sequence, true
	}
	st.healthErr = nil
	st.mu.Unlock()
	return nil
}

func (st *Store) fail(err error) error {
	st.mu.Lock()
	st.healthErr = err
	st.mu.Unlock()
	return err
}

// Healthy implements bridge.HealthReporter: the error of the last failed
// Load or Commit, nil after a success.
func (st *Store) Healthy() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.healthErr
}

// Close implements bridge.Store.
func (st *Store) Close() error {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	st.closed = true
	st.mu.Unlock()
	err := st.w.Close()
	st.closeTransport()
	return err
}

func (st *Store) closeTransport() {
	if st.own {
		st.transport.CloseIdleConnections()
	}
}

var (
	_ bridge.Store          = (*Store)(nil)
	_ bridge.HealthReporter = (*Store)(nil)
)
