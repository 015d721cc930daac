// Package natskv is the checkpoint store in a NATS KV bucket
// (CHECKPOINT_STORE=nats-kv): key = the checkpoint key, value = the JSON
// bridge.Checkpoint plus the owner id of the bridge holding the key.
//
// Data flow: the pipeline commits the acknowledged watermark here
// (bridge.Store); cmd/aviso-bridge hands the store its NATS connection,
// the one the NATS sink uses too.
//
// Every write is a compare-and-set on the key's revision, so two bridges
// on one key detect each other; the key is a lease (package
// checkpoint/lease): the revision is the version the lease watches, a
// counter the server assigns, so no clock is compared across hosts.
package natskv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

// Defaults of the Config fields.
const (
	DefaultBucket  = "aviso_bridge"
	DefaultTimeout = 5 * time.Second
)

// Config is CHECKPOINT_STORE=nats-kv. A zero field means its default.
type Config struct {
	// Bucket is NATS_KV_BUCKET (default DefaultBucket); created when
	// missing (file storage, history 1).
	Bucket string
	// Key is CHECKPOINT_KEY (or the derived key): the key of this
	// bridge's position in the bucket.
	Key string
	// Timeout bounds each KV request (default DefaultTimeout).
	Timeout time.Duration
	// Lease is the key's lease (CHECKPOINT_LEASE_TTL and the owner id).
	Lease lease.Config
}

// Validate checks c. Each problem is a *bridge.FieldError naming the
// field to fix; several are joined.
func (c Config) Validate() error {
	var errs []error
	if b := c.bucket(); !validName(b, "_-") {
		errs = append(errs, bridge.FieldErrorf("Bucket", "%q is not a valid NATS KV bucket name (letters, digits, '_' and '-')", b))
	}
	if k := c.Key; !validName(k, "-/_=.") || k[0] == '.' || k[len(k)-1] == '.' || strings.Contains(k, "..") {
		errs = append(errs, bridge.FieldErrorf("Key", "%q is not a valid NATS KV key (letters, digits, '-', '/', '_', '=', '.')", k))
	}
	if c.Timeout < 0 {
		errs = append(errs, bridge.FieldErrorf("Timeout", "%v must not be negative", c.Timeout))
	}
	errs = append(errs, c.Lease.Validate())
	return errors.Join(errs...)
}

// validName reports whether s is non-empty and made of ASCII letters,
// digits and the bytes in extra (nats.go's bucket and key rules).
func validName(s, extra string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && strings.IndexByte(extra, c) < 0 {
			return false
		}
	}
	return true
}

func (c Config) bucket() string {
	if c.Bucket == "" {
		return DefaultBucket
	}
	return c.Bucket
}

// record is the stored value: the JSON of bridge.Checkpoint (absent
// before the first commit) plus the instance holding the key.
type record struct {
	Sequence  *uint64   `json:"last_committed_sequence,omitempty"`
	EventID   string    `json:"last_event_id,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Owner identifies the bridge instance holding the key; empty when
	// the key was released by a graceful stop.
	Owner string `json:"owner"`
}

func decodeRecord(data []byte) (rec record, cp bridge.Checkpoint, found bool, err error) {
	if err := json.Unmarshal(data, &rec); err != nil {
		return record{}, bridge.Checkpoint{}, false, err
	}
	if rec.Sequence != nil {
		cp = bridge.Checkpoint{Sequence: *rec.Sequence, EventID: rec.EventID, UpdatedAt: rec.UpdatedAt}
		found = true
	}
	return rec, cp, found, nil
}

func encodeRecord(cp bridge.Checkpoint, found bool, owner string) ([]byte, error) {
	rec := record{Owner: owner}
	if found {
		seq := cp.Sequence
		rec.Sequence, rec.EventID, rec.UpdatedAt = &seq, cp.EventID, cp.UpdatedAt
	}
	return json.Marshal(rec)
}

// Store is a bridge.Store and bridge.HealthReporter in a NATS KV bucket.
//
// The key is a lease (package checkpoint/lease): the holder rewrites the
// value (compare-and-set on its revision) every third of the TTL; Close
// releases it (empty owner, checkpoint kept). Opening takes the key at once
// when it is absent, released, or names this store's own owner id;
// otherwise it watches the revision for one TTL (logging
// checkpoint.nats_kv.waiting): a change means the holder is alive and Open
// fails with a *lease.HeldError (errors.Is bridge.ErrKeyHeld) naming the
// bucket, the key and the owner; no change means the holder is gone and
// the key is taken over (checkpoint.nats_kv.taken_over). A holder whose
// refreshes failed for longer than the TTL may have been taken over
// meanwhile: its next refresh or commit fails with the sticky held error
// (checkpoint.nats_kv.lost, reported by Healthy and every later Commit).
//
// A value that cannot be decoded is never overwritten: Open succeeds
// without taking the key, and Load and Commit report the value.
type Store struct {
	nc      *natsgo.Conn
	kv      jetstream.KeyValue
	bucket  string
	key     string
	timeout time.Duration
	lease   *lease.Lease // nil when the value is unreadable

	mu      sync.Mutex
	owner   string // the owner id written to the key
	rev     uint64 // revision of our last write or read; 0 when the key is absent
	held    bool   // we hold the key: rev is our last write
	cp      bridge.Checkpoint
	found   bool
	loadErr error // the stored value exists but cannot be read
	closed  bool

	// watch is the key's watcher while Open waits for the key (see
	// AwaitChange); used by the acquisition only.
	watch     jetstream.KeyWatcher
	stopWatch context.CancelFunc
}

// backend is the store's half of its lease: its compare-and-set.
type backend Store

var (
	_ lease.Backend         = (*backend)(nil)
	_ lease.Watcher         = (*backend)(nil)
	_ bridge.Store          = (*Store)(nil)
	_ bridge.HealthReporter = (*Store)(nil)
)

// Open opens (or creates) the bucket on nc, which Close leaves open, and
// takes the key (waiting up to the lease TTL when another owner's id is in
// it). A failure that waiting can fix (no JetStream answer yet, a
// timeout) is a *bridge.RetryableError.
func Open(ctx context.Context, nc *natsgo.Conn, cfg Config, log *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Lease = cfg.Lease.WithDefaults()
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s := &Store{nc: nc, bucket: cfg.bucket(), key: cfg.Key, timeout: timeout, owner: cfg.Lease.Owner, stopWatch: func() {}}
	bctx, cancel := bounded(ctx, 2*timeout)
	s.kv, err = openBucket(bctx, js, s.bucket)
	cancel()
	if err != nil {
		return nil, startError(err)
	}
	s.lease, err = lease.Acquire(ctx, (*backend)(s), lease.Options{
		Config: cfg.Lease, Key: s.key, Where: s.where(), Events: "checkpoint.nats_kv",
		Attrs: []any{"bucket", s.bucket}, Logger: log,
	})
	s.stopWatch()
	if errors.Is(err, errUnreadable) {
		return s, nil // Load reports it; nothing is written
	}
	if err != nil {
		return nil, startError(err)
	}
	return s, nil
}

// startError marks what waiting can fix as a bridge.RetryableError.
func startError(err error) error {
	for _, target := range []error{natsgo.ErrTimeout, natsgo.ErrNoResponders, natsgo.ErrDisconnected,
		natsgo.ErrConnectionReconnecting, jetstream.ErrNoStreamResponse, context.DeadlineExceeded} {
		if errors.Is(err, target) {
			return bridge.Retryable(err)
		}
	}
	return err
}

func openBucket(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: "aviso-bridge checkpoints",
			History:     1,
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			kv, err = js.KeyValue(ctx, bucket) // created by another bridge meanwhile
		}
	}
	if err != nil {
		return nil, fmt.Errorf("nats-kv bucket %q: %w", bucket, err)
	}
	return kv, nil
}

// bounded returns ctx bounded by d when ctx has no earlier deadline.
func bounded(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

func (s *Store) where() string { return fmt.Sprintf("nats-kv bucket %q", s.bucket) }

// errUnreadable ends Acquire on a value that cannot be decoded.
var errUnreadable = errors.New("unreadable checkpoint")

// Read implements lease.Backend: the owner in the value and its revision.
func (b *backend) Read(ctx context.Context) (lease.State, error) {
	s := (*Store)(b)
	ctx, cancel := bounded(ctx, s.timeout)
	defer cancel()
	e, err := s.kv.Get(ctx, s.key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		s.rev = 0
		return lease.State{}, nil
	}
	if err != nil {
		return lease.State{}, fmt.Errorf("%s key %q: read: %w", s.where(), s.key, err)
	}
	s.rev = e.Revision()
	rec, cp, found, err := decodeRecord(e.Value())
	if err != nil {
		s.loadErr = fmt.Errorf("%s key %q (revision %d): unreadable checkpoint: %w", s.where(), s.key, e.Revision(), err)
		return lease.State{}, errUnreadable
	}
	s.cp, s.found = cp, found
	return lease.State{Holder: rec.Owner, Version: e.Revision()}, nil
}

// AwaitChange implements lease.Watcher with a watch on the key, started
// on the first call (whose first update, the current value, returns at
// once) and stopped when Open returns.
func (b *backend) AwaitChange(ctx context.Context, d time.Duration) error {
	s := (*Store)(b)
	if s.watch == nil {
		wctx, cancel := context.WithCancel(context.Background())
		w, err := s.kv.Watch(wctx, s.key)
		if err != nil {
			cancel()
			return fmt.Errorf("%s key %q: watch: %w", s.where(), s.key, err)
		}
		s.watch, s.stopWatch = w, func() { _ = w.Stop(); cancel() }
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		case e, ok := <-s.watch.Updates():
			if !ok {
				s.watch = nil
				return fmt.Errorf("%s key %q: watch ended", s.where(), s.key)
			}
			if e != nil { // nil marks the end of the initial values
				return nil
			}
		}
	}
}

// Claim implements lease.Backend: a compare-and-set on the revision read
// (a create when the key is absent).
func (b *backend) Claim(ctx context.Context, _ lease.State, owner string) ([]any, error) {
	s := (*Store)(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := encodeRecord(s.cp, s.found, owner)
	if err != nil {
		return nil, err
	}
	wctx, cancel := bounded(ctx, s.timeout)
	defer cancel()
	var rev uint64
	if s.rev == 0 {
		rev, err = s.kv.Create(wctx, s.key, data)
	} else {
		rev, err = s.kv.Update(wctx, s.key, data, s.rev)
	}
	if isConflict(err) {
		// Another bridge wrote first: one opening at the same time, or the
		// holder refreshing at the last moment.
		return nil, s.heldBy(ctx, "")
	}
	if err != nil {
		return nil, fmt.Errorf("%s key %q: take ownership: %w", s.where(), s.key, err)
	}
	s.rev, s.held = rev, true
	attrs := []any{"revision", rev}
	if s.found {
		attrs = append(attrs, "sequence", s.cp.Sequence)
	}
	return attrs, nil
}

// heldBy reads the key's owner for the held error.
func (s *Store) heldBy(ctx context.Context, detail string) error {
	owner := "unknown"
	ctx, cancel := bounded(ctx, s.timeout)
	defer cancel()
	if e, err := s.kv.Get(ctx, s.key); err == nil {
		if r, _, _, err := decodeRecord(e.Value()); err == nil {
			owner = r.Owner
		}
	} else if errors.Is(err, jetstream.ErrKeyNotFound) {
		detail = "the key was deleted"
	}
	return &lease.HeldError{Where: s.where(), Key: s.key, Holder: owner, Detail: detail}
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Refresh implements lease.Backend: it rewrites the value unchanged.
func (b *backend) Refresh(ctx context.Context) error {
	s := (*Store)(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.held {
		return nil
	}
	return s.writeLocked(ctx, s.cp, s.found, s.owner)
}

// Release implements lease.Backend: it writes the value with an empty
// owner, keeping the checkpoint.
func (b *backend) Release(ctx context.Context) error {
	s := (*Store)(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.held {
		return nil
	}
	s.held = false
	return s.writeLocked(ctx, s.cp, s.found, "")
}

// writeLocked writes the value with a compare-and-set on the revision this
// store last wrote. After a conflict it re-reads the key: our own earlier
// write may have been applied after its request timed out, and then the
// key still names us. A conflict with another bridge is a
// *lease.HeldError.
func (s *Store) writeLocked(ctx context.Context, cp bridge.Checkpoint, found bool, owner string) error {
	data, err := encodeRecord(cp, found, owner)
	if err != nil {
		return err
	}
	ctx, cancel := bounded(ctx, s.timeout)
	defer cancel()
	rev, err := s.kv.Update(ctx, s.key, data, s.rev)
	if isConflict(err) {
		var mine bool
		if mine, err = s.reconcile(ctx); mine {
			rev, err = s.kv.Update(ctx, s.key, data, s.rev)
		}
		if isConflict(err) {
			err = s.heldBy(ctx, "written meanwhile")
		}
	}
	if err != nil {
		return err
	}
	s.rev = rev
	return nil
}

// reconcile re-reads the key after a conflict. mine reports that the key
// still names this instance (adopting its revision); otherwise err is a
// *lease.HeldError naming the other owner.
func (s *Store) reconcile(ctx context.Context) (mine bool, err error) {
	e, err := s.kv.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, &lease.HeldError{Where: s.where(), Key: s.key, Holder: "unknown", Detail: "the key was deleted"}
	}
	if err != nil {
		return false, fmt.Errorf("%s key %q: read after conflict: %w", s.where(), s.key, err)
	}
	rec, cp, found, err := decodeRecord(e.Value())
	if err != nil || rec.Owner != s.owner {
		return false, &lease.HeldError{Where: s.where(), Key: s.key, Holder: rec.Owner}
	}
	s.rev = e.Revision()
	if found && (!s.found || cp.Sequence > s.cp.Sequence) {
		s.cp, s.found = cp, true
	}
	return true, nil
}

// Load returns the checkpoint read at open (or committed since).
func (s *Store) Load(context.Context) (bridge.Checkpoint, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loadErr != nil {
		return bridge.Checkpoint{}, false, s.loadErr
	}
	return s.cp, s.found, nil
}

// Commit stores cp when it is ahead of the stored checkpoint, with a
// compare-and-set on the revision this store last wrote. A conflict caused
// by another bridge returns an error wrapping bridge.ErrKeyHeld (and every
// later Commit returns it too).
func (s *Store) Commit(ctx context.Context, cp bridge.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.loadErr != nil:
		return s.loadErr
	case s.lease.Err() != nil:
		return s.lease.Err()
	case s.closed:
		return fmt.Errorf("%s key %q: commit sequence %d: store closed", s.where(), s.key, cp.Sequence)
	case s.found && cp.Sequence <= s.cp.Sequence:
		return nil
	}
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = time.Now().UTC()
	}
	if err := s.writeLocked(ctx, cp, true, s.owner); err != nil {
		if errors.Is(err, bridge.ErrKeyHeld) {
			return s.lease.Lost(err)
		}
		return fmt.Errorf("%s key %q: commit sequence %d: %w", s.where(), s.key, cp.Sequence, err)
	}
	s.lease.Wrote()
	s.cp, s.found = cp, true
	return nil
}

// Healthy reports an error while the connection is down or after another
// bridge took the key.
func (s *Store) Healthy() error {
	if s.lease != nil {
		if err := s.lease.Err(); err != nil {
			return err
		}
	}
	switch st := s.nc.Status(); st {
	case natsgo.CONNECTED:
		return nil
	case natsgo.RECONNECTING:
		return errors.New("NATS: disconnected, reconnecting")
	default:
		return fmt.Errorf("NATS: connection %s", strings.ToLower(st.String()))
	}
}

// Owner returns this instance's owner id as written to the key.
func (s *Store) Owner() string { return s.owner }

// Close stops the lease refresher and releases the key (see Store). The
// connection stays open. A failed release is logged
// (checkpoint.nats_kv.release_failed) and returned; the next bridge on the
// key then waits one TTL. Later calls return the first call's result.
func (s *Store) Close() error {
	var err error
	if s.lease != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		err = s.lease.Close(ctx)
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return err
}
