package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Lease defaults of the NATS KV checkpoint store (not environment
// variables).
const (
	DefaultKVLeaseRefresh = 2 * time.Second
	// The default LeaseTTL is DefaultKVLeaseTTLFactor x LeaseRefresh.
	DefaultKVLeaseTTLFactor = 3
)

// KVConfig is CHECKPOINT_STORE=nats-kv.
type KVConfig struct {
	ConnConfig
	// Bucket is NATS_KV_BUCKET (default DefaultKVBucket); created when
	// missing (file storage, history 1).
	Bucket string
	// Key is CHECKPOINT_KEY (or the derived key): the key of this bridge's
	// position in the bucket.
	Key string
	// Timeout bounds each KV request (not an environment variable;
	// default 5s).
	Timeout time.Duration
	// LeaseRefresh is how often the holder of the key rewrites it (a
	// compare-and-set on its revision, besides its commits) to show that
	// it is alive (not an environment variable; default
	// DefaultKVLeaseRefresh, 2s).
	LeaseRefresh time.Duration
	// LeaseTTL is how long an opening store waits, on its own clock, for a
	// key held by another owner to change before it takes the key over as
	// abandoned (not an environment variable; default 3 x LeaseRefresh).
	// It must exceed LeaseRefresh.
	LeaseTTL time.Duration
	// Owner identifies this instance in the stored value (default:
	// hostname/pid/random, new for each store). A store that finds its own
	// owner id in the key takes it at once. Never a secret.
	Owner string
}

func (c KVConfig) leaseRefresh() time.Duration {
	if c.LeaseRefresh <= 0 {
		return DefaultKVLeaseRefresh
	}
	return c.LeaseRefresh
}

func (c KVConfig) leaseTTL() time.Duration {
	if c.LeaseTTL <= 0 {
		return DefaultKVLeaseTTLFactor * c.leaseRefresh()
	}
	return c.LeaseTTL
}

// Validate checks c; errors name the environment variable.
func (c KVConfig) Validate() error {
	var errs []error
	if err := c.ConnConfig.Validate(); err != nil {
		errs = append(errs, err)
	}
	if b := c.bucket(); !validKVName(b, "_-") {
		errs = append(errs, fmt.Errorf("NATS_KV_BUCKET: %q is not a valid bucket name (letters, digits, '_' and '-')", b))
	}
	if k := c.Key; !validKVName(k, "-/_=.") || k[0] == '.' || k[len(k)-1] == '.' || strings.Contains(k, "..") {
		errs = append(errs, fmt.Errorf("CHECKPOINT_KEY: %q is not a valid NATS KV key (letters, digits, '-', '/', '_', '=', '.')", k))
	}
	if c.LeaseRefresh < 0 || c.LeaseTTL < 0 {
		errs = append(errs, fmt.Errorf("nats-kv lease: LeaseRefresh %v and LeaseTTL %v must not be negative", c.LeaseRefresh, c.LeaseTTL))
	} else if c.leaseTTL() <= c.leaseRefresh() {
		errs = append(errs, fmt.Errorf("nats-kv lease: LeaseTTL %v must exceed LeaseRefresh %v (a live holder would look abandoned)", c.leaseTTL(), c.leaseRefresh()))
	}
	return errors.Join(errs...)
}

// validKVName reports whether s is non-empty and made of ASCII letters,
// digits and the bytes in extra (nats.go's bucket and key rules).
func validKVName(s, extra string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && strings.IndexByte(extra, s[i]) < 0 {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (c KVConfig) bucket() string {
	if c.Bucket == "" {
		return DefaultKVBucket
	}
	return c.Bucket
}

// kvRecord is the stored value: the JSON of bridge.Checkpoint (absent
// before the first commit) plus the instance holding the key.
type kvRecord struct {
	Sequence  *uint64   `json:"last_committed_sequence,omitempty"`
	EventID   string    `json:"last_event_id,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Owner identifies the bridge instance holding the key
	// (host/pid/random); empty when the key was released by a graceful
	// stop.
	Owner string `json:"owner"`
}

func decodeRecord(data []byte) (rec kvRecord, cp bridge.Checkpoint, found bool, err error) {
	if err := json.Unmarshal(data, &rec); err != nil {
		return kvRecord{}, bridge.Checkpoint{}, false, err
	}
	if rec.Sequence != nil {
		cp = bridge.Checkpoint{Sequence: *rec.Sequence, EventID: rec.EventID, UpdatedAt: rec.UpdatedAt}
		found = true
	}
	return rec, cp, found, nil
}

func encodeRecord(cp bridge.Checkpoint, found bool, owner string) ([]byte, error) {
	rec := kvRecord{Owner: owner}
	if found {
		seq := cp.Sequence
		rec.Sequence, rec.EventID, rec.UpdatedAt = &seq, cp.EventID, cp.UpdatedAt
	}
	return json.Marshal(rec)
}

// KVStore is a bridge.Store in a NATS KV bucket: key = the checkpoint key,
// value = the JSON checkpoint plus the owner id of the bridge holding the
// key. Every write is a compare-and-set on the key's revision, so two
// bridges on one key detect each other.
//
// The key is a lease without clocks shared between hosts:
//   - the holder rewrites the value (compare-and-set on its revision)
//     every LeaseRefresh besides its commits, so its revision keeps
//     changing while it lives;
//   - Close (a graceful stop) releases the key: it writes the value with
//     an empty owner, keeping the checkpoint;
//   - opening takes the key at once when it is absent, released, or names
//     this store's own owner id. Otherwise another owner holds it: the
//     store logs checkpoint.nats_kv.waiting and polls the key for up to
//     LeaseTTL on its own clock. A revision change means the holder is
//     alive: opening fails with an error wrapping bridge.ErrKeyHeld that
//     names the bucket, the key and the owner (or takes the key at once
//     when the change was a release). No change for LeaseTTL means the
//     holder is gone (kill -9, lost host): the store takes the key over
//     with a compare-and-set on the revision it watched
//     (checkpoint.nats_kv.taken_over); losing that race to another
//     opening store is ErrKeyHeld too.
//
// So a second bridge started by mistake exits instead of evicting the
// running one, a restart after a graceful stop resumes at once, and a
// restart after kill -9 resumes after LeaseTTL. A holder whose refreshes
// failed for longer than LeaseTTL (cut off from NATS) may have been taken
// over meanwhile: its next refresh or commit finds another owner and fails
// with the sticky ErrKeyHeld (logged as checkpoint.nats_kv.lost, reported
// by Healthy, returned by every later Commit).
type KVStore struct {
	nc      *natsgo.Conn
	ownConn bool
	kv      jetstream.KeyValue
	bucket  string
	key     string
	owner   string
	timeout time.Duration
	refresh time.Duration
	ttl     time.Duration
	log     *slog.Logger

	mu        sync.Mutex
	rev       uint64 // revision of our last write or read; 0 when the key is absent
	held      bool   // we hold the key: rev is our last write
	lastWrite time.Time
	cp        bridge.Checkpoint
	found     bool
	loadErr   error // the stored value exists but cannot be read
	heldErr   error // sticky: another bridge wrote the key
	closed    bool

	stopRefresh context.CancelFunc // nil when no refresher runs
	refreshDone chan struct{}
	closeOnce   sync.Once
	closeErr    error
}

// OpenKVStore connects with cfg's connection settings, opens (or creates)
// the bucket and takes the key (see KVStore: this waits up to LeaseTTL when
// another owner's id is in the key).
func OpenKVStore(ctx context.Context, cfg KVConfig, o Options) (*KVStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	nc, err := Connect(ctx, cfg.ConnConfig, ConnectOptions{Logger: o.Logger, Events: "checkpoint.nats_kv"})
	if err != nil {
		return nil, err
	}
	s, err := NewKVStore(ctx, nc, cfg, o)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s.ownConn = true
	return s, nil
}

// NewKVStore is OpenKVStore on an existing connection, which Close leaves
// open. cfg's connection settings are ignored.
func NewKVStore(ctx context.Context, nc *natsgo.Conn, cfg KVConfig, o Options) (*KVStore, error) {
	cfg.ConnConfig = ConnConfig{}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	owner := cfg.Owner
	if owner == "" {
		owner = instanceID()
	}
	s := &KVStore{
		nc:      nc,
		bucket:  cfg.bucket(),
		key:     cfg.Key,
		owner:   owner,
		timeout: timeout,
		refresh: cfg.leaseRefresh(),
		ttl:     cfg.leaseTTL(),
		log:     o.logger(),
	}
	bctx, cancel := deadline(ctx, 2*timeout)
	s.kv, err = openBucket(bctx, js, s.bucket)
	cancel()
	if err != nil {
		return nil, err
	}
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	if s.held {
		rctx, stop := context.WithCancel(context.Background())
		s.stopRefresh, s.refreshDone = stop, make(chan struct{})
		go s.refreshLoop(rctx, s.refreshDone)
	}
	return s, nil
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
		return nil, fmt.Errorf("NATS_KV_BUCKET %q: %w", bucket, err)
	}
	return kv, nil
}

// instanceID is a new owner id: hostname/pid/random. It identifies a
// process for an operator; the random part keeps it unique where hostname
// and pid repeat (containers).
func instanceID() string {
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b[:])
}

func (s *KVStore) where() string {
	return fmt.Sprintf("nats-kv bucket %q key %q", s.bucket, s.key)
}

// heldError is the error of a key that owner holds.
func (s *KVStore) heldError(owner string) error {
	if owner == "" {
		owner = "unknown"
	}
	return fmt.Errorf("nats-kv: another bridge holds checkpoint key %q in bucket %q (owner %s); stop it or set a different CHECKPOINT_KEY: %w",
		s.key, s.bucket, owner, bridge.ErrKeyHeld)
}

func (s *KVStore) get(ctx context.Context) (jetstream.KeyValueEntry, error) {
	ctx, cancel := deadline(ctx, s.timeout)
	defer cancel()
	return s.kv.Get(ctx, s.key)
}

// open reads the key and takes it, waiting out another owner's lease (see
// KVStore). An unreadable value is left alone: Load reports it.
func (s *KVStore) open(ctx context.Context) error {
	var (
		other    string // the owner we wait on; "" before we saw one
		otherRev uint64
		expiry   time.Time // local clock
		started  time.Time
	)
	for {
		e, err := s.get(ctx)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return s.claim(ctx, kvRecord{}, 0, "", 0)
		}
		if err != nil {
			return fmt.Errorf("%s: read: %w", s.where(), err)
		}
		rec, cp, found, err := decodeRecord(e.Value())
		if err != nil {
			// Never overwrite what cannot be read.
			s.loadErr = fmt.Errorf("%s (revision %d): unreadable checkpoint: %w", s.where(), e.Revision(), err)
			s.rev = e.Revision()
			return nil
		}
		s.cp, s.found = cp, found
		switch {
		case rec.Owner == "" || rec.Owner == s.owner:
			return s.claim(ctx, rec, e.Revision(), "", 0)
		case other == "":
			other, otherRev = rec.Owner, e.Revision()
			started = time.Now()
			expiry = started.Add(s.ttl)
			s.log.Info("checkpoint.nats_kv.waiting", "bucket", s.bucket, "key", s.key, "owner", other,
				"revision", otherRev, "wait", s.ttl.String(),
				"hint", "the key names another bridge; taking it over only if that bridge does not refresh it within the wait")
		case e.Revision() != otherRev:
			// The holder refreshed or committed: it is alive. (A release
			// leaves the owner empty and was taken above.)
			return s.heldError(rec.Owner)
		case !time.Now().Before(expiry):
			return s.claim(ctx, rec, otherRev, other, time.Since(started))
		}
		t := time.NewTimer(min(s.refresh, time.Until(expiry)))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: waiting for owner %s to refresh or give up the key: %w", s.where(), other, ctx.Err())
		case <-t.C:
		}
	}
}

// claim writes rec with this store's owner id, a compare-and-set on rev
// (a create when rev is 0). prev is the owner taken over after waiting.
func (s *KVStore) claim(ctx context.Context, rec kvRecord, rev uint64, prev string, waited time.Duration) error {
	rec.Owner = s.owner
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	wctx, cancel := deadline(ctx, s.timeout)
	defer cancel()
	if rev == 0 {
		rev, err = s.kv.Create(wctx, s.key, data)
	} else {
		rev, err = s.kv.Update(wctx, s.key, data, rev)
	}
	if isCASConflict(err) {
		// Another bridge wrote first: one opening at the same time, or the
		// holder refreshing at the last moment.
		owner := "unknown"
		if e, gerr := s.get(ctx); gerr == nil {
			if r, _, _, derr := decodeRecord(e.Value()); derr == nil {
				owner = r.Owner
			}
		}
		return s.heldError(owner)
	}
	if err != nil {
		return fmt.Errorf("%s: take ownership: %w", s.where(), err)
	}
	s.rev, s.held, s.lastWrite = rev, true, time.Now()
	attrs := []any{"bucket", s.bucket, "key", s.key, "owner", s.owner, "revision", rev}
	if s.found {
		attrs = append(attrs, "sequence", s.cp.Sequence)
	}
	if prev != "" {
		s.log.Info("checkpoint.nats_kv.taken_over", append(attrs, "previous_owner", prev, "waited", waited.String(),
			"hint", "the previous owner did not refresh the key for LeaseTTL; it was stopped without a graceful shutdown")...)
	} else {
		s.log.Info("checkpoint.nats_kv.acquired", attrs...)
	}
	return nil
}

func isCASConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isWrongLastSeq(err)
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Load returns the checkpoint read at open (or committed since).
func (s *KVStore) Load(ctx context.Context) (bridge.Checkpoint, bool, error) {
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
func (s *KVStore) Commit(ctx context.Context, cp bridge.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.heldErr != nil {
		return s.heldErr
	}
	if s.loadErr != nil {
		return s.loadErr
	}
	if s.closed {
		return fmt.Errorf("%s: commit sequence %d: store closed", s.where(), cp.Sequence)
	}
	if s.found && cp.Sequence <= s.cp.Sequence {
		return nil
	}
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = time.Now().UTC()
	}
	data, err := encodeRecord(cp, true, s.owner)
	if err != nil {
		return err
	}
	ctx, cancel := deadline(ctx, s.timeout)
	defer cancel()
	if err := s.writeLocked(ctx, data); err != nil {
		if errors.Is(err, bridge.ErrKeyHeld) {
			return err
		}
		return fmt.Errorf("%s: commit sequence %d: %w", s.where(), cp.Sequence, err)
	}
	s.cp, s.found = cp, true
	return nil
}

// writeLocked writes data with a compare-and-set on the revision this
// store last wrote. After a conflict it re-reads the key: our own earlier
// write may have been applied after its request timed out, and then the
// key still names us. A conflict with another bridge sets the sticky
// heldErr and returns it.
func (s *KVStore) writeLocked(ctx context.Context, data []byte) error {
	rev, err := s.kv.Update(ctx, s.key, data, s.rev)
	if isCASConflict(err) {
		var mine bool
		mine, err = s.reconcile(ctx)
		if mine {
			rev, err = s.kv.Update(ctx, s.key, data, s.rev)
		}
		if isCASConflict(err) {
			err = fmt.Errorf("%s: written by another bridge: %w", s.where(), bridge.ErrKeyHeld)
		}
	}
	if err != nil {
		if errors.Is(err, bridge.ErrKeyHeld) {
			s.heldErr = err
		}
		return err
	}
	s.rev, s.lastWrite = rev, time.Now()
	return nil
}

// reconcile re-reads the key after a conflict. mine reports that the key
// still names this instance (adopting its revision); otherwise err wraps
// bridge.ErrKeyHeld and names the other owner.
func (s *KVStore) reconcile(ctx context.Context) (mine bool, err error) {
	e, err := s.kv.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, fmt.Errorf("%s: deleted by someone else: %w", s.where(), bridge.ErrKeyHeld)
	}
	if err != nil {
		return false, fmt.Errorf("%s: read after conflict: %w", s.where(), err)
	}
	rec, cp, found, err := decodeRecord(e.Value())
	if err != nil || rec.Owner != s.owner {
		return false, s.heldError(rec.Owner)
	}
	s.rev = e.Revision()
	if found && (!s.found || cp.Sequence > s.cp.Sequence) {
		s.cp, s.found = cp, true
	}
	return true, nil
}

// refreshLoop refreshes the lease every LeaseRefresh until ctx is done or
// another bridge is found holding the key.
func (s *KVStore) refreshLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(s.refresh)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.refreshOnce(ctx)
		switch {
		case err == nil:
			if failing {
				s.log.Info("checkpoint.nats_kv.refresh_recovered", "bucket", s.bucket, "key", s.key)
			}
			failing = false
		case ctx.Err() != nil:
			return
		case errors.Is(err, bridge.ErrKeyHeld):
			s.log.Error("checkpoint.nats_kv.lost", "bucket", s.bucket, "key", s.key, "owner", s.owner, "error", err.Error(),
				"hint", "another bridge took the key over (this one could not refresh it for LeaseTTL); the next commit fails")
			return
		default:
			failing = true
			s.log.Warn("checkpoint.nats_kv.refresh_failed", "bucket", s.bucket, "key", s.key, "error", err.Error(),
				"hint", "a bridge starting on this key takes it over when no refresh succeeds for LeaseTTL")
		}
	}
}

// refreshOnce rewrites the value unless a commit or refresh wrote it in
// the last half LeaseRefresh.
func (s *KVStore) refreshOnce(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.heldErr != nil {
		return s.heldErr
	}
	if s.closed || !s.held || time.Since(s.lastWrite) < s.refresh/2 {
		return nil
	}
	data, err := encodeRecord(s.cp, s.found, s.owner)
	if err != nil {
		return err
	}
	ctx, cancel := deadline(ctx, s.timeout)
	defer cancel()
	return s.writeLocked(ctx, data)
}

// Healthy reports an error while the connection is down or after another
// bridge took the key.
func (s *KVStore) Healthy() error {
	s.mu.Lock()
	held := s.heldErr
	s.mu.Unlock()
	if held != nil {
		return held
	}
	return connHealth(s.nc)
}

// Owner returns this instance's owner id as written to the key.
func (s *KVStore) Owner() string { return s.owner }

// Close stops the lease refresher, releases the key (writes the value with
// an empty owner, keeping the checkpoint, so that a restart takes the key
// at once) and closes the connection when the store opened it. A failed
// release is logged (checkpoint.nats_kv.release_failed) and returned; the
// next bridge on the key then waits LeaseTTL. Later calls return the
// first call's result.
func (s *KVStore) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *KVStore) close() error {
	if s.stopRefresh != nil {
		s.stopRefresh()
		<-s.refreshDone
	}
	s.mu.Lock()
	s.closed = true
	var err error
	if s.held && s.heldErr == nil && s.loadErr == nil {
		err = s.releaseLocked()
	}
	s.held = false
	s.mu.Unlock()
	if s.ownConn {
		s.nc.Close()
	}
	return err
}

func (s *KVStore) releaseLocked() error {
	data, err := encodeRecord(s.cp, s.found, "")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if err := s.writeLocked(ctx, data); err != nil {
		s.log.Warn("checkpoint.nats_kv.release_failed", "bucket", s.bucket, "key", s.key, "error", err.Error(),
			"hint", "the next bridge on this key waits LeaseTTL before taking it over")
		return fmt.Errorf("%s: release: %w", s.where(), err)
	}
	s.log.Info("checkpoint.nats_kv.released", "bucket", s.bucket, "key", s.key, "owner", s.owner, "revision", s.rev)
	return nil
}
