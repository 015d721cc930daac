// Package kafkatopic is the checkpoint store in a compacted Kafka topic
// (CHECKPOINT_STORE=kafka, KAFKA_CHECKPOINT_TOPIC): record key = the
// checkpoint key, value = the JSON bridge.Checkpoint plus the owner id of
// the writing bridge.
//
// Data flow: the pipeline commits the acknowledged watermark here
// (bridge.Store); cmd/aviso-bridge hands the store its kafka-go client,
// built on the transport the Kafka sink uses too.
//
// The key is a lease (package checkpoint/lease). Kafka has no
// compare-and-set, so the partition's total order is the arbiter; see
// Store and docs/checkpoint.md.
package kafkatopic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

// Defaults of the Config fields.
const (
	DefaultTopic   = "aviso-bridge-checkpoints"
	DefaultTimeout = 10 * time.Second
)

// Config is CHECKPOINT_STORE=kafka. A zero field means its default.
type Config struct {
	// Topic is KAFKA_CHECKPOINT_TOPIC (default DefaultTopic); created when
	// missing (1 partition, cleanup.policy=compact).
	Topic string
	// ReplicationFactor is used when the store creates its topic; 0 or -1
	// means the broker's default.
	ReplicationFactor int
	// Key is CHECKPOINT_KEY (or the derived key): the record key of this
	// bridge's position.
	Key string
	// Timeout bounds each request (default DefaultTimeout; main passes
	// KAFKA_WRITE_TIMEOUT).
	Timeout time.Duration
	// Lease is the key's lease (CHECKPOINT_LEASE_TTL and the owner id).
	Lease lease.Config

	beforeClaim func() // tests: runs just before the claim record is written
}

// Validate checks c. Each problem is a *bridge.FieldError naming the
// field to fix; several are joined.
func (c Config) Validate() error {
	var errs []error
	if c.Key == "" {
		errs = append(errs, bridge.FieldErrorf("Key", "empty checkpoint key"))
	}
	if c.ReplicationFactor < -1 {
		errs = append(errs, bridge.FieldErrorf("ReplicationFactor", "%d: want -1 (broker default) or a positive count", c.ReplicationFactor))
	}
	if c.Timeout < 0 {
		errs = append(errs, bridge.FieldErrorf("Timeout", "%v must not be negative", c.Timeout))
	}
	errs = append(errs, c.Lease.Validate())
	return errors.Join(errs...)
}

// Store keeps the checkpoint of one key in a compacted topic. It
// implements bridge.Store and bridge.HealthReporter.
//
// The store reads the key's partition once to its end at open and from
// then on only what was written since it last looked. Load returns the
// newest value for the key; Commit writes synchronously with acks=all and
// is monotonic.
//
// The lease: the holder writes a record restating its claim every third
// of the TTL besides its commits; Close writes a release (empty owner).
// Opening takes the key at once when it has no record, was released, or
// is held by this store's owner id; otherwise it reads new records for
// one TTL (checkpoint.kafka.waiting): a record from another owner means
// the holder is alive and Open fails with a *lease.HeldError; none means
// it is gone and the key is taken over (checkpoint.kafka.taken_over).
//
// Taking the key writes a claim record that states the offset up to which
// the claimer had read, then reads back to the end. A claim wins only when
// no other owner wrote the key between that offset and the claim, so of
// two bridges claiming at the same time the first claim in the partition
// wins; every reader comes to the same verdict. A holder taken over while
// cut off finds the winning claim at its next refresh or commit and fails
// with the sticky held error (checkpoint.kafka.lost). A commit by another
// owner that is not a claim only raises the stored position; a lost claim
// and a release by a bridge that does not hold the key change nothing.
type Store struct {
	key       string
	topic     string
	client    *kafkago.Client
	timeout   time.Duration
	partition int
	log       *slog.Logger
	lease     *lease.Lease

	// opMu serialises reading and writing the partition and guards the
	// fields up to mu.
	opMu    sync.Mutex
	owner   string
	reader  partReader   // the key's partition; reader.next is the next offset to read
	newest  newestRecord // the newest record for the key: what Load returns
	own     ownership    // who holds the key as the records read tell
	foreign ownerMark    // the newest record by another owner
	cp      bridge.Checkpoint
	have    bool // cp is set: the position claims, refreshes and the release restate
	claimed bool // our claim won
	lostTo  ownerMark

	mu        sync.Mutex
	healthErr error
	closed    bool

	beforeClaim func()
}

// backend is the store's half of its lease: its compare-and-set.
type backend Store

var (
	_ lease.Backend         = (*backend)(nil)
	_ lease.Watcher         = (*backend)(nil)
	_ bridge.Store          = (*Store)(nil)
	_ bridge.HealthReporter = (*Store)(nil)
)

// newestRecord is the newest value read for the key.
type newestRecord struct {
	cp    bridge.Checkpoint
	found bool
	err   error // unreadable value
}

// ownerMark is the offset of an owner's record.
type ownerMark struct {
	owner  string
	offset int64
}

// record is the record value.
type record struct {
	Sequence  *uint64   `json:"last_committed_sequence,omitempty"`
	EventID   string    `json:"last_event_id,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Owner identifies the bridge instance holding the key; empty in a
	// release.
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

// Open creates the topic when missing, reads the stored position and
// takes the key through client (see Store: this waits up to the lease TTL
// when another owner holds it). The client and its transport stay open on
// Close. A failure that waiting can fix (broker down, no leader, timeout)
// is a *bridge.RetryableError.
func Open(ctx context.Context, client *kafkago.Client, cfg Config, log *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Lease = cfg.Lease.WithDefaults()
	st := &Store{key: cfg.Key, topic: cfg.Topic, client: client, timeout: cfg.Timeout, log: log,
		owner: cfg.Lease.Owner, beforeClaim: cfg.beforeClaim}
	if st.topic == "" {
		st.topic = DefaultTopic
	}
	if st.timeout == 0 {
		st.timeout = DefaultTimeout
	}
	if err := st.open(ctx, cfg.ReplicationFactor); err != nil {
		return nil, startError(err)
	}
	var err error
	st.lease, err = lease.Acquire(ctx, (*backend)(st), lease.Options{
		Config: cfg.Lease, Key: st.key, Where: st.where(), Events: "checkpoint.kafka", Acquired: "claimed",
		Attrs: []any{"topic", st.topic}, Logger: log,
	})
	if err != nil {
		return nil, startError(err)
	}
	return st, nil
}

// startError marks what waiting can fix as a bridge.RetryableError.
func startError(err error) error {
	var kerr kafkago.Error
	var netErr net.Error
	if errors.As(err, &kerr) && kerr.Temporary() || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) {
		return bridge.Retryable(err)
	}
	return err
}

func (st *Store) where() string { return fmt.Sprintf("kafka checkpoint topic %q", st.topic) }

// open ensures the topic, finds the key's partition and reads it.
func (st *Store) open(ctx context.Context, replication int) error {
	if err := st.ensureTopic(ctx, replication); err != nil {
		return err
	}
	p, err := st.findPartition(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", st.where(), err)
	}
	st.partition = p
	st.reader = partReader{client: st.client, topic: st.topic, partition: p, timeout: st.timeout}
	return nil
}

// Read implements lease.Backend: it reads what was written since the last
// look; the version is the offset of the newest record by another owner.
func (b *backend) Read(ctx context.Context) (lease.State, error) {
	st := (*Store)(b)
	st.opMu.Lock()
	defer st.opMu.Unlock()
	if err := st.catchUp(ctx); err != nil {
		return lease.State{}, err
	}
	if st.newest.err != nil {
		return lease.State{}, st.newest.err // never overwrite what cannot be read
	}
	return lease.State{Holder: st.own.holder, Version: uint64(st.foreign.offset + 1), Writer: st.foreign.owner}, nil
}

// Claim implements lease.Backend: it writes a claim record with the newest
// checkpoint, reads back to the end and checks that the claim won.
func (b *backend) Claim(ctx context.Context, _ lease.State, owner string) ([]any, error) {
	st := (*Store)(b)
	st.opMu.Lock()
	defer st.opMu.Unlock()
	st.cp, st.have = st.newest.cp, st.newest.found
	basis := st.reader.next
	rec := st.record(owner)
	rec.Claim, rec.Basis = true, &basis
	if st.beforeClaim != nil {
		st.beforeClaim()
	}
	off, err := st.write(ctx, rec)
	if err != nil {
		return nil, st.fail(fmt.Errorf("%s key %s: claim: %w", st.where(), st.key, err))
	}
	if err := st.catchUp(ctx); err != nil {
		return nil, err
	}
	if st.own.holder != owner {
		// Another bridge wrote first: one claiming at the same time, or
		// the holder refreshing at the last moment.
		holder := st.own.holder
		if holder == "" {
			holder = st.own.lastOther(owner).owner
		}
		return nil, &lease.HeldError{Where: st.where(), Key: st.key, Holder: holder}
	}
	st.claimed = true
	attrs := []any{"partition", st.partition, "offset", off, "checkpoint_found", st.have}
	if st.have {
		attrs = append(attrs, "sequence", st.cp.Sequence)
	}
	return attrs, nil
}

// record is a value restating the known checkpoint under owner.
func (st *Store) record(owner string) record {
	rec := record{Owner: owner}
	if st.have {
		seq := st.cp.Sequence
		rec.Sequence, rec.EventID, rec.UpdatedAt = &seq, st.cp.EventID, st.cp.UpdatedAt
	}
	return rec
}

// Refresh implements lease.Backend: it reads what was written since the
// last look (finding a winning claim by another owner) and restates the
// claim.
func (b *backend) Refresh(ctx context.Context) error {
	st := (*Store)(b)
	st.opMu.Lock()
	defer st.opMu.Unlock()
	if !st.claimed {
		return nil
	}
	if err := st.catchUp(ctx); err != nil {
		return err
	}
	// Close does not cancel a refresh write in flight: it could still land
	// after the release.
	if _, err := st.write(context.WithoutCancel(ctx), st.record(st.owner)); err != nil {
		return st.fail(fmt.Errorf("%s key %s: refresh: %w", st.where(), st.key, err))
	}
	return nil
}

// Release implements lease.Backend: unless a last look finds the key
// taken over, it writes the checkpoint with an empty owner.
func (b *backend) Release(ctx context.Context) error {
	st := (*Store)(b)
	st.opMu.Lock()
	defer st.opMu.Unlock()
	if !st.claimed {
		return nil
	}
	st.claimed = false
	if err := st.catchUp(ctx); err != nil {
		return err
	}
	rec := st.record("")
	rec.ReleasedBy = st.owner
	_, err := st.write(ctx, rec)
	return err
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
	closed := st.closed
	st.mu.Unlock()
	switch {
	case st.lease.Err() != nil:
		return st.lease.Err()
	case closed:
		return fmt.Errorf("%s: commit sequence %d: store closed", st.where(), cp.Sequence)
	case st.have && cp.Sequence <= st.cp.Sequence:
		return nil
	}
	if err := st.catchUp(ctx); err != nil {
		if errors.Is(err, bridge.ErrKeyHeld) {
			return st.lease.Lost(err)
		}
		return err
	}
	if st.have && cp.Sequence <= st.cp.Sequence { // another owner's commit may have passed it
		return nil
	}
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = time.Now().UTC()
	}
	seq := cp.Sequence
	if _, err := st.write(ctx, record{Sequence: &seq, EventID: cp.EventID, UpdatedAt: cp.UpdatedAt, Owner: st.owner}); err != nil {
		return st.fail(fmt.Errorf("%s: commit sequence %d: %w", st.where(), cp.Sequence, err))
	}
	st.lease.Wrote()
	st.cp, st.have = cp, true
	st.setHealth(nil)
	return nil
}

// Healthy implements bridge.HealthReporter: the held error once another
// bridge took the key, else the error of the last failed read or write
// (nil after a success).
func (st *Store) Healthy() error {
	if err := st.lease.Err(); err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.healthErr
}

// Owner returns this instance's owner id as written to the key.
func (st *Store) Owner() string { return st.owner }

// Close implements bridge.Store: it stops the lease refresher and releases
// the key (see Store). A failed release is logged
// (checkpoint.kafka.release_failed) and returned; the next bridge on the
// key then waits one TTL. Later calls return the first call's result.
func (st *Store) Close() error {
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*st.timeout)
	defer cancel()
	return st.lease.Close(ctx)
}

func (st *Store) fail(err error) error {
	st.setHealth(err)
	return err
}

func (st *Store) setHealth(err error) {
	st.mu.Lock()
	st.healthErr = err
	st.mu.Unlock()
}
