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

// Lease defaults of the Kafka checkpoint store (not environment variables;
// the same as the NATS KV store's).
const (
	DefaultStoreLeaseRefresh = 2 * time.Second
	// The default LeaseTTL is DefaultStoreLeaseTTLFactor x LeaseRefresh.
	DefaultStoreLeaseTTLFactor = 3
)

// StoreConfig configures a Store (CHECKPOINT_STORE=kafka).
type StoreConfig struct {
	// Config holds the connection settings and the topic: only Brokers,
	// the security fields, CheckpointTopic, CheckpointReplicationFactor,
	// WriteTimeout and ClientID matter (Validate still checks all of it).
	Config
	// CheckpointKey is CHECKPOINT_KEY (or the derived key): the record key
	// of this bridge's position in the topic.
	CheckpointKey string
	// LeaseRefresh is how often the holder of the key writes a record
	// restating its claim (besides its commits) to show that it is alive
	// (not an environment variable; default DefaultStoreLeaseRefresh, 2s).
	LeaseRefresh time.Duration
	// LeaseTTL is how long an opening store waits, on its own clock, for a
	// record from a key's holder before it takes the key over as abandoned
	// (not an environment variable; default 3 x LeaseRefresh). It must
	// exceed LeaseRefresh.
	LeaseTTL time.Duration
	// Owner identifies this instance in the records it writes (default:
	// hostname/pid/random, new for each store). Give every store of one
	// process the same id: a store that finds its own owner id holding the
	// key takes it at once (a retried open). Never a secret.
	Owner string

	beforeClaim func() // tests: runs just before the claim record is written
}

func (c StoreConfig) leaseRefresh() time.Duration {
	if c.LeaseRefresh <= 0 {
		return DefaultStoreLeaseRefresh
	}
	return c.LeaseRefresh
}

func (c StoreConfig) leaseTTL() time.Duration {
	if c.LeaseTTL <= 0 {
		return DefaultStoreLeaseTTLFactor * c.leaseRefresh()
	}
	return c.LeaseTTL
}

// Validate checks c; errors name the environment variable (or the field,
// for the lease settings).
func (c StoreConfig) Validate() error {
	var errs []error
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.CheckpointKey == "" {
		errs = append(errs, errors.New("CHECKPOINT_KEY: empty checkpoint key"))
	}
	if c.LeaseRefresh < 0 || c.LeaseTTL < 0 {
		errs = append(errs, fmt.Errorf("kafka checkpoint lease: LeaseRefresh %v and LeaseTTL %v must not be negative", c.LeaseRefresh, c.LeaseTTL))
	} else if c.leaseTTL() <= c.leaseRefresh() {
		errs = append(errs, fmt.Errorf("kafka checkpoint lease: LeaseTTL %v must exceed LeaseRefresh %v (a live holder would look abandoned)", c.leaseTTL(), c.leaseRefresh()))
	}
	return errors.Join(errs...)
}

// Store keeps the checkpoint of one checkpoint key in a compacted topic
// (CHECKPOINT_STORE=kafka, KAFKA_CHECKPOINT_TOPIC): record key = checkpoint
// key, value = the JSON bridge.Checkpoint plus the owner id of the writing
// bridge. It implements bridge.Store and bridge.HealthReporter.
//
// The topic is created when missing (1 partition, cleanup.policy=compact).
// The store reads the key's partition once to its end at open and from
// then on only what was written since it last looked. Load returns the
// newest value for the key; Commit writes synchronously with acks=all and
// is monotonic.
//
// The key is a lease, as in the NATS KV store, without clocks shared
// between hosts; Kafka has no compare-and-set, so the partition's total
// order is the arbiter:
//   - the holder writes a record restating its claim (the same checkpoint
//     and its owner id) every LeaseRefresh besides its commits;
//   - Close (a graceful stop) releases the key: it writes the checkpoint
//     with an empty owner;
//   - opening takes the key at once when it has no record, was released,
//     or is held by this store's own owner id. Otherwise another owner
//     holds it: the store logs checkpoint.kafka.waiting and reads new
//     records for up to LeaseTTL on its own clock. A record from another
//     owner means the holder is alive: opening fails with an error
//     wrapping bridge.ErrKeyHeld that names the topic, the key and the
//     owner (a release instead is taken at once). No record for LeaseTTL
//     means the holder is gone (kill -9, lost host): the store takes the
//     key over (checkpoint.kafka.taken_over).
//
// Taking the key writes a claim record that states the offset up to which
// the claimer had read, then reads back to the end. A claim wins only when
// no other owner wrote the key between that offset and the claim, so of
// two bridges claiming at the same time the first claim in the partition
// wins and the other fails with ErrKeyHeld; every reader of the partition
// comes to the same verdict. A holder whose refreshes failed for longer
// than LeaseTTL (cut off from Kafka, stopped) may have been taken over
// meanwhile: its next refresh or commit reads the winning claim and fails
// with the sticky ErrKeyHeld (logged as checkpoint.kafka.lost, reported by
// Healthy, returned by every later Commit). A commit by another owner that
// is not a claim (an older bridge's last write) only raises the stored
// position; a claim that lost and a release by a bridge that does not hold
// the key (released_by) change nothing.
//
// Records written by the store before the key was a lease name an owner
// and are never released: the first start after an upgrade waits one
// LeaseTTL before it takes the key over.
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
	refresh   time.Duration
	ttl       time.Duration
	partition int

	// opMu serialises reading and writing the partition; it guards the
	// fields up to mu.
	opMu       sync.Mutex
	readOffset int64        // next offset to read
	newest     newestRecord // the newest record for the key: what Load returns
	holder     string       // the owner holding the key as the records read tell; "" when free
	recent     [2]ownerMark // the newest records with an owner, of the two most recent distinct owners
	foreign    string       // owner of the newest record by another owner since the last reset
	cp         bridge.Checkpoint
	have       bool   // cp is set: the position claims, refreshes and the release restate
	claimed    bool   // our claim won; cleared by Close
	lostTo     string // owner of a winning claim after ours
	lostAt     int64
	lastWrite  time.Time

	mu        sync.Mutex
	heldErr   error // sticky: another bridge took the key
	healthErr error
	closed    bool

	beforeClaim func()

	stopRefresh context.CancelFunc // nil when no refresher runs
	refreshDone chan struct{}
	closeOnce   sync.Once
	closeErr    error
}

// newestRecord is the newest value read for the key.
type newestRecord struct {
	cp    bridge.Checkpoint
	found bool
	err   error // unreadable value
}

// ownerMark is the offset of an owner's newest record.
type ownerMark struct {
	owner  string
	offset int64
}

// storedCheckpoint is the record value.
type storedCheckpoint struct {
	Sequence  *uint64   `json:"last_committed_sequence,omitempty"`
	EventID   string    `json:"last_event_id,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Owner identifies the bridge instance holding the key
	// (host/pid/random); empty in a release.
	Owner string `json:"owner"`
	// Claim marks the record a bridge writes when it takes the key.
	Claim bool `json:"claim,omitempty"`
	// Basis, in a claim, is the offset up to which the claimer had read
	// the partition: the claim loses when another owner wrote the key at
	// or after Basis and before the claim.
	Basis *int64 `json:"basis_offset,omitempty"`
	// ReleasedBy, in a release, is the owner that released the key.
	ReleasedBy string `json:"released_by,omitempty"`
}

// NewStore opens the store for checkpoint key key with the default lease
// settings and a new owner id: OpenStore with StoreConfig{Config: cfg,
// CheckpointKey: key}.
func NewStore(ctx context.Context, cfg Config, key string, opts Options) (*Store, error) {
	return OpenStore(ctx, StoreConfig{Config: cfg, CheckpointKey: key}, opts)
}

// OpenStore validates cfg, creates the topic when missing, reads the
// stored position and takes the key (see Store: this waits up to LeaseTTL
// when another owner holds the key). It starts the lease refresher, which
// Close stops.
func OpenStore(ctx context.Context, cfg StoreConfig, opts Options) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	kc := cfg.Config.withDefaults()
	opts = opts.withDefaults()
	owner := cfg.Owner
	if owner == "" {
		owner = newOwnerID()
	}
	st := &Store{
		key:       cfg.CheckpointKey,
		topic:     kc.CheckpointTopic,
		owner:     owner,
		log:       opts.Logger,
		transport: opts.Transport,
		hash:      &kafkago.Hash{},
		timeout:   kc.WriteTimeout,
		refresh:   cfg.leaseRefresh(),
		ttl:       cfg.leaseTTL(),

		beforeClaim: cfg.beforeClaim,
	}
	if st.transport == nil {
		t, err := NewTransport(kc)
		if err != nil {
			return nil, err
		}
		st.transport, st.own = t, true
	}
	st.client = &kafkago.Client{Addr: brokerAddr(kc), Transport: st.transport, Timeout: kc.WriteTimeout}
	if err := st.open(ctx, kc.CheckpointReplicationFactor); err != nil {
		st.closeTransport()
		return nil, startError(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	st.stopRefresh, st.refreshDone = stop, make(chan struct{})
	go st.refreshLoop(rctx, st.refreshDone)
	return st, nil
}

// Owner returns this instance's owner id as written to the key.
func (st *Store) Owner() string { return st.owner }

// newOwnerID names this bridge instance: host/pid/random.
func newOwnerID() string {
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b[:])
}

// heldError is the error of a key that owner holds.
func (st *Store) heldError(owner string) error {
	if owner == "" {
		owner = "unknown"
	}
	return fmt.Errorf("kafka checkpoint store: another bridge holds checkpoint key %s in topic %q (owner %s); stop it or set a different CHECKPOINT_KEY: %w",
		st.key, st.topic, owner, bridge.ErrKeyHeld)
}

// bounded limits one request-and-answer step to the store's timeout.
func (st *Store) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, st.timeout)
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
	st.opMu.Lock()
	defer st.opMu.Unlock()
	if err := st.catchUp(ctx); err != nil {
		return err
	}
	var (
		other   string    // the owner we wait on; "" before we saw one
		expiry  time.Time // local clock
		started time.Time
	)
	for {
		if st.newest.err != nil {
			return st.newest.err // never overwrite what cannot be read
		}
		switch {
		case st.holder == "" || st.holder == st.owner:
			return st.claim(ctx, "", 0)
		case other == "":
			other, st.foreign = st.holder, ""
			started = time.Now()
			expiry = started.Add(st.ttl)
			st.log.Info("checkpoint.kafka.waiting", "topic", st.topic, "key", st.key, "owner", other,
				"wait", st.ttl.String(),
				"hint", "the key names another bridge; taking it over only if that bridge writes no record within the wait")
		case st.foreign != "":
			// The holder refreshed or committed, or another bridge
			// claimed the key: it is alive. (A release leaves the key
			// free and was taken above.)
			return st.heldError(st.foreign)
		case !time.Now().Before(expiry):
			return st.claim(ctx, other, time.Since(started))
		}
		t := time.NewTimer(min(st.refresh/2, time.Until(expiry)))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("kafka checkpoint topic %q key %s: waiting for owner %s to refresh or give up the key: %w",
				st.topic, st.key, other, ctx.Err())
		case <-t.C:
		}
		if err := st.catchUp(ctx); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("kafka checkpoint topic %q key %s: waiting for owner %s to refresh or give up the key: %w",
					st.topic, st.key, other, ctx.Err())
			}
			return err
		}
	}
}

// claim writes a claim record with the newest checkpoint, reads back to
// the end and checks that the claim won (see Store). prev is the owner
// taken over after waiting.
func (st *Store) claim(ctx context.Context, prev string, waited time.Duration) error {
	st.cp, st.have = st.newest.cp, st.newest.found
	basis := st.readOffset
	rec := st.record(st.owner)
	rec.Claim, rec.Basis = true, &basis
	if st.beforeClaim != nil {
		st.beforeClaim()
	}
	off, err := st.write(ctx, rec)
	if err != nil {
		return st.fail(fmt.Errorf("kafka checkpoint topic %q key %s: claim: %w", st.topic, st.key, err))
	}
	st.lastWrite = time.Now()
	if err := st.catchUp(ctx); err != nil {
		return err
	}
	if st.holder != st.owner {
		// Another bridge wrote first: one claiming at the same time, or
		// the holder refreshing at the last moment.
		owner := st.holder
		if owner == "" {
			owner, _ = st.lastOther(st.owner)
		}
		return st.heldError(owner)
	}
	st.claimed = true
	attrs := []any{"topic", st.topic, "key", st.key, "owner", st.owner, "partition", st.partition, "offset", off,
		"checkpoint_found", st.have}
	if st.have {
		attrs = append(attrs, "sequence", st.cp.Sequence)
	}
	if prev != "" {
		st.log.Info("checkpoint.kafka.taken_over", append(attrs, "previous_owner", prev, "waited", waited.String(),
			"hint", "the previous owner wrote no record for LeaseTTL; it was stopped without a graceful shutdown")...)
	} else {
		st.log.Info("checkpoint.kafka.claimed", attrs...)
	}
	return nil
}

// record is a value restating the known checkpoint under owner.
func (st *Store) record(owner string) storedCheckpoint {
	rec := storedCheckpoint{Owner: owner}
	if st.have {
		seq := st.cp.Sequence
		rec.Sequence, rec.EventID, rec.UpdatedAt = &seq, st.cp.EventID, st.cp.UpdatedAt
	}
	return rec
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

// catchUp reads what was written to the partition since the last look,
// within the store's timeout, and applies the key's records. Once the key
// is ours, a winning claim by another owner sets the sticky ErrKeyHeld,
// which catchUp returns. A failed read makes the store unhealthy unless
// ctx itself ended (Close stopping the refresher, a caller giving up).
// Called with opMu held.
func (st *Store) catchUp(ctx context.Context) error {
	rctx, cancel := st.bounded(ctx)
	defer cancel()
	err := st.readNew(rctx)
	if err != nil && ctx.Err() == nil {
		st.fail(err)
	}
	if err != nil {
		return err
	}
	if st.lostTo != "" {
		return st.setHeld(fmt.Errorf("kafka checkpoint topic %q: checkpoint key %s claimed by %s at offset %d (another bridge took it over; stop one of them or give each its own CHECKPOINT_KEY): %w",
			st.topic, st.key, st.lostTo, st.lostAt, bridge.ErrKeyHeld))
	}
	st.mu.Lock()
	st.healthErr = nil
	st.mu.Unlock()
	return nil
}

// readNew reads the partition from readOffset to its end.
func (st *Store) readNew(ctx context.Context) error {
	first, last, err := offsets(ctx, st.client, st.topic, st.partition)
	if err != nil {
		return fmt.Errorf("kafka checkpoint topic %q partition %d: %w", st.topic, st.partition, err)
	}
	from := max(st.readOffset, first)
	if from >= last {
		return nil
	}
	next, _, err := readRange(ctx, st.client, st.topic, st.partition, from, last, func(r *kafkago.Record) error {
		v, ok, err := st.value(r)
		if err != nil || !ok {
			return err
		}
		st.apply(r.Offset, v)
		return nil
	})
	st.readOffset = next
	if err != nil {
		return fmt.Errorf("kafka checkpoint topic %q partition %d: read: %w", st.topic, st.partition, err)
	}
	return nil
}

// apply folds the key's record at offset off (value v, nil for a
// tombstone) into the store's view. Called with opMu held.
func (st *Store) apply(off int64, v []byte) {
	if v == nil { // tombstone: the key was deleted
		st.newest, st.holder = newestRecord{}, ""
		return
	}
	var sc storedCheckpoint
	if err := json.Unmarshal(v, &sc); err != nil {
		st.newest = newestRecord{err: fmt.Errorf("kafka checkpoint topic %q key %s offset %d: unreadable checkpoint: %w", st.topic, st.key, off, err)}
		return
	}
	if sc.Owner != "" && sc.Owner != st.owner {
		st.foreign = sc.Owner
	}
	switch {
	case sc.Owner == "":
		// A release (or a value written by hand): the key is free unless
		// it names someone else than the holder as the releaser, a bridge
		// that lost the key without noticing yet.
		if sc.ReleasedBy == "" || sc.ReleasedBy == st.holder {
			st.holder = ""
		}
	case sc.Claim:
		other, at := st.lastOther(sc.Owner)
		won := sc.Basis == nil || other == "" || at < *sc.Basis
		st.mark(sc.Owner, off)
		if !won {
			return // a lost claim changes nothing, not even the checkpoint
		}
		if st.claimed && sc.Owner != st.owner && st.lostTo == "" {
			st.lostTo, st.lostAt = sc.Owner, off
		}
		st.holder = sc.Owner
	default: // a refresh or a commit
		st.mark(sc.Owner, off)
		if st.holder == "" {
			st.holder = sc.Owner
		}
	}
	st.newest = newestRecord{}
	if sc.Sequence != nil {
		st.newest.cp, st.newest.found = bridge.Checkpoint{Sequence: *sc.Sequence, EventID: sc.EventID, UpdatedAt: sc.UpdatedAt}, true
		if st.claimed && (!st.have || *sc.Sequence > st.cp.Sequence) {
			if sc.Owner != st.owner {
				st.log.Warn("checkpoint.kafka.foreign_commit", "topic", st.topic, "key", st.key,
					"owner", sc.Owner, "sequence", *sc.Sequence, "offset", off)
			}
			st.cp, st.have = st.newest.cp, true
		}
	}
}

// mark notes that owner wrote the key at offset off.
func (st *Store) mark(owner string, off int64) {
	if st.recent[0].owner != owner {
		st.recent[1] = st.recent[0]
	}
	st.recent[0] = ownerMark{owner: owner, offset: off}
}

// lastOther is the owner and offset of the newest record with an owner
// other than owner ("" when there is none).
func (st *Store) lastOther(owner string) (string, int64) {
	for _, m := range st.recent {
		if m.owner != "" && m.owner != owner {
			return m.owner, m.offset
		}
	}
	return "", 0
}

// Load implements bridge.Store: it reads what was written since the last
// look and returns the newest value for the key (an error when that value
// cannot be read).
func (st *Store) Load(ctx context.Context) (bridge.Checkpoint, bool, error) {
	st.opMu.Lock()
	defer st.opMu.Unlock()
	if err := st.catchUp(ctx); err != nil && !errors.Is(err, bridge.ErrKeyHeld) {
		return bridge.Checkpoint{}, false, err
	}
	if st.newest.err != nil {
		return bridge.Checkpoint{}, false, st.newest.err
	}
	return st.newest.cp, st.newest.found, nil
}

// Commit implements bridge.Store: unless cp.Sequence is at or below the
// known position, it reads what was written since the last look (a
// winning claim by another owner fails with the sticky error wrapping
// bridge.ErrKeyHeld), then writes cp synchronously (acks=all).
func (st *Store) Commit(ctx context.Context, cp bridge.Checkpoint) error {
	st.opMu.Lock()
	defer st.opMu.Unlock()
	st.mu.Lock()
	closed, held := st.closed, st.heldErr
	st.mu.Unlock()
	switch {
	case held != nil:
		return held
	case closed:
		return fmt.Errorf("kafka checkpoint topic %q: commit sequence %d: store closed", st.topic, cp.Sequence)
	case st.have && cp.Sequence <= st.cp.Sequence:
		return nil
	}
	if err := st.catchUp(ctx); err != nil {
		return err
	}
	if st.have && cp.Sequence <= st.cp.Sequence { // another owner's commit may have passed it
		return nil
	}
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = time.Now().UTC()
	}
	seq := cp.Sequence
	if _, err := st.write(ctx, storedCheckpoint{Sequence: &seq, EventID: cp.EventID, UpdatedAt: cp.UpdatedAt, Owner: st.owner}); err != nil {
		return st.fail(fmt.Errorf("kafka checkpoint topic %q: commit sequence %d: %w", st.topic, cp.Sequence, err))
	}
	st.cp, st.have, st.lastWrite = cp, true, time.Now()
	st.mu.Lock()
	st.healthErr = nil
	st.mu.Unlock()
	return nil
}

// refreshLoop refreshes the lease every LeaseRefresh until ctx is done or
// another bridge is found holding the key.
func (st *Store) refreshLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(st.refresh)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := st.refreshOnce(ctx)
		switch {
		case err == nil:
			if failing {
				st.log.Info("checkpoint.kafka.refresh_recovered", "topic", st.topic, "key", st.key)
			}
			failing = false
		case ctx.Err() != nil:
			return
		case errors.Is(err, bridge.ErrKeyHeld):
			return // logged as checkpoint.kafka.lost
		default:
			failing = true
			st.log.Warn("checkpoint.kafka.refresh_failed", "topic", st.topic, "key", st.key, "error", err.Error(),
				"hint", "a bridge starting on this key takes it over when no refresh succeeds for LeaseTTL")
		}
	}
}

// refreshOnce reads what was written since the last look and, unless a
// commit or refresh was written in the last half LeaseRefresh, restates
// the claim.
func (st *Store) refreshOnce(ctx context.Context) error {
	st.opMu.Lock()
	defer st.opMu.Unlock()
	st.mu.Lock()
	closed, held := st.closed, st.heldErr
	st.mu.Unlock()
	if held != nil {
		return held
	}
	if closed || !st.claimed {
		return nil
	}
	if err := st.catchUp(ctx); err != nil {
		return err
	}
	if time.Since(st.lastWrite) < st.refresh/2 {
		return nil
	}
	// Close does not cancel a refresh write in flight: it could still land
	// after the release.
	if _, err := st.write(context.WithoutCancel(ctx), st.record(st.owner)); err != nil {
		return st.fail(fmt.Errorf("kafka checkpoint topic %q key %s: refresh: %w", st.topic, st.key, err))
	}
	st.lastWrite = time.Now()
	return nil
}

// write produces v under the key with acks=all and returns its offset.
func (st *Store) write(ctx context.Context, v storedCheckpoint) (int64, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	ctx, cancel := st.bounded(ctx)
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

// setHeld makes err the sticky fencing error (logging
// checkpoint.kafka.lost the first time) and returns the sticky error.
func (st *Store) setHeld(err error) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.heldErr == nil {
		st.heldErr = err
		st.log.Error("checkpoint.kafka.lost", "topic", st.topic, "key", st.key, "owner", st.owner, "error", err.Error(),
			"hint", "another bridge took the key over (this one wrote no record for LeaseTTL); commits fail from now on")
	}
	return st.heldErr
}

// Healthy implements bridge.HealthReporter: the fencing error once another
// bridge took the key, else the error of the last failed read or write
// (nil after a success).
func (st *Store) Healthy() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.heldErr != nil {
		return st.heldErr
	}
	return st.healthErr
}

// Close implements bridge.Store: it stops the lease refresher and
// releases the key (writes the checkpoint with an empty owner, so that a
// restart takes the key at once). A failed release is logged
// (checkpoint.kafka.release_failed) and returned; the next bridge on the
// key then waits LeaseTTL. A store that lost the key releases nothing.
// Later calls return the first call's result.
func (st *Store) Close() error {
	st.closeOnce.Do(func() { st.closeErr = st.close() })
	return st.closeErr
}

func (st *Store) close() error {
	st.stopRefresher()
	st.opMu.Lock()
	defer st.opMu.Unlock()
	st.mu.Lock()
	st.closed = true
	held := st.heldErr
	st.mu.Unlock()
	var err error
	if st.claimed && held == nil {
		err = st.release()
	}
	st.claimed = false
	st.closeTransport()
	return err
}

// release writes the release record unless a last look finds the key
// taken over. Called with opMu held.
func (st *Store) release() error {
	err := st.catchUp(context.Background())
	if errors.Is(err, bridge.ErrKeyHeld) {
		return nil
	}
	if err == nil {
		rec := st.record("")
		rec.ReleasedBy = st.owner
		_, err = st.write(context.Background(), rec)
	}
	if err != nil {
		st.log.Warn("checkpoint.kafka.release_failed", "topic", st.topic, "key", st.key, "error", err.Error(),
			"hint", "the next bridge on this key waits LeaseTTL before taking it over")
		return fmt.Errorf("kafka checkpoint topic %q key %s: release: %w", st.topic, st.key, err)
	}
	st.log.Info("checkpoint.kafka.released", "topic", st.topic, "key", st.key, "owner", st.owner)
	return nil
}

// stopRefresher stops the lease refresher and waits for it.
func (st *Store) stopRefresher() {
	if st.stopRefresh != nil {
		st.stopRefresh()
		<-st.refreshDone
	}
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
