package kafka

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Store keeps the checkpoint of one checkpoint key in a compacted topic
// (CHECKPOINT_STORE=kafka, KAFKA_CHECKPOINT_TOPIC): record key = checkpoint
// key, value = the JSON bridge.Checkpoint plus the owner of the writing
// bridge. It implements bridge.Store and bridge.HealthReporter.
//
// The topic is created when missing (1 partition, cleanup.policy=compact).
// Load reads the key's partition to its end; the newest value for the key
// wins. Commit writes synchronously with acks=all and is monotonic.
//
// Ownership: opening writes a claim record (the current checkpoint and this
// instance's owner id). Kafka has no compare-and-set, so, as with the NATS
// KV store, the newest bridge wins: before each write, Commit reads what
// was written for the key since it last looked, and a claim by another
// owner after its own makes every further Commit fail with an error
// wrapping bridge.ErrKeyHeld. A store cannot tell a live holder from a
// crashed one at open, so taking over keeps a restart after kill -9, or a
// rolling update, working.
type Store struct {
	key       string
	topic     string
	owner     string
	log       *slog.Logger
	client    *kafkago.Client
	transport *kafkago.Transport
	own       bool
	hash      *kafkago.Hash
	timeout   time.Duration

	mu          sync.Mutex
	partition   int
	last        uint64 // highest sequence stored for the key
	have        bool
	claimed     bool
	claimOffset int64 // offset of our claim record
	readOffset  int64 // next offset to look at for writes by others
	heldErr     error // sticky: another bridge claimed the key
	closed      bool
	healthErr   error
}

// storedCheckpoint is the record value.
type storedCheckpoint struct {
	Sequence  *uint64   `json:"last_committed_sequence,omitempty"`
	EventID   string    `json:"last_event_id,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Owner identifies the bridge instance that wrote the record
	// (host/pid/random).
	Owner string `json:"owner,omitempty"`
	// Claim marks the record a bridge writes when it opens the store.
	Claim bool `json:"claim,omitempty"`
}

// NewStore opens the store for checkpoint key key: it validates cfg,
// creates the topic when missing, reads the stored position and claims the
// key. Only Brokers, the security fields, CheckpointTopic,
// CheckpointReplicationFactor, WriteTimeout and ClientID of cfg matter
// (Validate still checks all of it).
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
		owner:     newOwnerID(),
		log:       opts.Logger,
		transport: opts.Transport,
		hash:      &kafkago.Hash{},
		timeout:   cfg.WriteTimeout,
	}
	if st.transport == nil {
		t, err := NewTransport(cfg)
		if err != nil {
			return nil, err
		}
		st.transport, st.own = t, true
	}
	st.client = &kafkago.Client{Addr: brokerAddr(cfg), Transport: st.transport, Timeout: cfg.WriteTimeout}
	if err := st.open(ctx, cfg.CheckpointReplicationFactor); err != nil {
		st.closeTransport()
		return nil, startError(err)
	}
	return st, nil
}

func (st *Store) open(ctx context.Context, replication int) error {
	if err := st.ensureTopic(ctx, replication); err != nil {
		return err
	}
	p, err := st.findPartition(ctx)
	if err != nil {
		return fmt.Errorf("KAFKA_CHECKPOINT_TOPIC %q: %w", st.topic, err)
	}
	st.partition = p
	cp, found, err := st.Load(ctx)
	if err != nil {
		return err
	}
	claim := storedCheckpoint{Owner: st.owner, Claim: true}
	if found {
		seq := cp.Sequence
		claim.Sequence, claim.EventID, claim.UpdatedAt = &seq, cp.EventID, cp.UpdatedAt
	}
	off, err := st.write(ctx, claim)
	if err != nil {
		return st.fail(fmt.Errorf("kafka checkpoint topic %q key %s: claim: %w", st.topic, st.key, err))
	}
	st.mu.Lock()
	st.claimed, st.claimOffset = true, off
	st.mu.Unlock()
	st.log.Info("checkpoint.kafka.claimed", "topic", st.topic, "key", st.key, "owner", st.owner,
		"partition", st.partition, "offset", off, "checkpoint_found", found, "sequence", cp.Sequence)
	return nil
}

// newOwnerID names this bridge instance: host/pid/random.
func newOwnerID() string {
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b[:])
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
	st.log.Info("checkpoint.kafka.topic_created", "topic", st.topic, "cleanup_policy", "compact", "partitions", 1)
	return nil
}

// findPartition is where the key's records live (kafka.Hash, as a Writer
// would pick).
func (st *Store) findPartition(ctx context.Context) (int, error) {
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

// Load implements bridge.Store: it reads the key's partition to its end;
// the newest value for the key wins.
func (st *Store) Load(ctx context.Context) (bridge.Checkpoint, bool, error) {
	var (
		cp     bridge.Checkpoint
		found  bool
		badErr error
	)
	first, last, err := offsets(ctx, st.client, st.topic, st.partition)
	if err == nil {
		_, _, err = readRange(ctx, st.client, st.topic, st.partition, first, last, func(r *kafkago.Record) error {
			v, ok, err := st.value(r)
			if err != nil || !ok {
				return err
			}
			if v == nil { // tombstone
				cp, found, badErr = bridge.Checkpoint{}, false, nil
				return nil
			}
			var sc storedCheckpoint
			if err := json.Unmarshal(v, &sc); err != nil {
				cp, found = bridge.Checkpoint{}, false
				badErr = fmt.Errorf("kafka checkpoint topic %q key %s offset %d: unreadable checkpoint: %w", st.topic, st.key, r.Offset, err)
				return nil
			}
			badErr = nil
			if sc.Sequence == nil { // a claim before any commit
				cp, found = bridge.Checkpoint{}, false
				return nil
			}
			cp, found = bridge.Checkpoint{Sequence: *sc.Sequence, EventID: sc.EventID, UpdatedAt: sc.UpdatedAt}, true
			return nil
		})
	}
	if err != nil {
		return bridge.Checkpoint{}, false, st.fail(fmt.Errorf("kafka checkpoint topic %q partition %d: read: %w", st.topic, st.partition, err))
	}
	st.mu.Lock()
	st.healthErr = nil
	if found && (!st.have || cp.Sequence > st.last) {
		st.last, st.have = cp.Sequence, true
	}
	if !st.claimed && st.readOffset < last {
		st.readOffset = last // before the claim: nothing earlier can fence us
	}
	st.mu.Unlock()
	if badErr != nil {
		return bridge.Checkpoint{}, false, badErr
	}
	return cp, found, nil
}

// value returns the value of r when its key is ours (ok), nil for a
// tombstone.
func (st *Store) value(r *kafkago.Record) (v []byte, ok bool, err error) {
	if r.Key == nil {
		return nil, false, nil
	}
	k, err := kafkago.ReadAll(r.Key)
	if err != nil || !bytes.Equal(k, []byte(st.key)) {
		return nil, false, err
	}
	if r.Value == nil {
		return nil, true, nil
	}
	v, err = kafkago.ReadAll(r.Value)
	return v, err == nil, err
}

// Commit implements bridge.Store: unless cp.Sequence is at or below the
// stored sequence, it checks that no other bridge claimed the key since
// this one did, then writes cp synchronously (acks=all).
func (st *Store) Commit(ctx context.Context, cp bridge.Checkpoint) error {
	st.mu.Lock()
	closed, held := st.closed, st.heldErr
	skip := st.have && cp.Sequence <= st.last
	st.mu.Unlock()
	switch {
	case closed:
		return errors.New("kafka checkpoint store: closed")
	case held != nil:
		return held
	case skip:
		return nil
	}
	if err := st.checkOwner(ctx); err != nil {
		return err
	}
	st.mu.Lock()
	skip = st.have && cp.Sequence <= st.last // another owner's commit may have passed it
	st.mu.Unlock()
	if skip {
		return nil
	}
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = time.Now().UTC()
	}
	seq := cp.Sequence
	if _, err := st.write(ctx, storedCheckpoint{Sequence: &seq, EventID: cp.EventID, UpdatedAt: cp.UpdatedAt, Owner: st.owner}); err != nil {
		return st.fail(fmt.Errorf("kafka checkpoint topic %q: commit sequence %d: %w", st.topic, cp.Sequence, err))
	}
	st.mu.Lock()
	if !st.have || cp.Sequence > st.last {
		st.last, st.have = cp.Sequence, true
	}
	st.healthErr = nil
	st.mu.Unlock()
	return nil
}

// checkOwner reads what was written for the key since the last look. A
// claim by another owner after ours fences this store for good; a commit by
// another owner (an older bridge not yet fenced) only raises the known
// sequence.
func (st *Store) checkOwner(ctx context.Context) error {
	st.mu.Lock()
	from, claimAt := st.readOffset, st.claimOffset
	st.mu.Unlock()
	_, last, err := offsets(ctx, st.client, st.topic, st.partition)
	if err != nil {
		return st.fail(fmt.Errorf("kafka checkpoint topic %q partition %d: %w", st.topic, st.partition, err))
	}
	var held error
	next, _, err := readRange(ctx, st.client, st.topic, st.partition, from, last, func(r *kafkago.Record) error {
		v, ok, err := st.value(r)
		if err != nil || !ok || v == nil {
			return err
		}
		var sc storedCheckpoint
		if json.Unmarshal(v, &sc) != nil || sc.Owner == st.owner || sc.Owner == "" {
			return nil
		}
		if sc.Claim && r.Offset > claimAt && held == nil {
			held = fmt.Errorf("kafka checkpoint topic %q key %s: claimed by %s at offset %d: %w",
				st.topic, st.key, sc.Owner, r.Offset, bridge.ErrKeyHeld)
			return nil
		}
		if sc.Sequence != nil {
			st.log.Warn("checkpoint.kafka.foreign_commit", "topic", st.topic, "key", st.key,
				"owner", sc.Owner, "sequence", *sc.Sequence, "offset", r.Offset)
			st.mu.Lock()
			if !st.have || *sc.Sequence > st.last {
				st.last, st.have = *sc.Sequence, true
			}
			st.mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return st.fail(fmt.Errorf("kafka checkpoint topic %q partition %d: read: %w", st.topic, st.partition, err))
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.readOffset = next
	if held != nil && st.heldErr == nil {
		st.heldErr = held
		st.log.Error("checkpoint.kafka.key_held", "topic", st.topic, "key", st.key, "owner", st.owner, "error", held.Error())
	}
	return st.heldErr
}

// write produces v under the key with acks=all and returns its offset.
func (st *Store) write(ctx context.Context, v storedCheckpoint) (int64, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	res, err := st.client.Produce(ctx, &kafkago.ProduceRequest{
		Topic:        st.topic,
		Partition:    st.partition,
		RequiredAcks: kafkago.RequireAll,
		Records:      kafkago.NewRecordReader(kafkago.Record{Time: time.Now(), Key: kafkago.NewBytes([]byte(st.key)), Value: kafkago.NewBytes(body)}),
	})
	if err != nil {
		return 0, err
	}
	if res.Error != nil {
		return 0, res.Error
	}
	return res.BaseOffset, nil
}

func (st *Store) fail(err error) error {
	st.mu.Lock()
	st.healthErr = err
	st.mu.Unlock()
	return err
}

// Healthy implements bridge.HealthReporter: the error of the last failed
// Load or Commit (or the fencing error), nil after a success.
func (st *Store) Healthy() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.heldErr != nil {
		return st.heldErr
	}
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
	st.closeTransport()
	return nil
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
