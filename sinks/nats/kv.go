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

// kvRecord is the stored value: the JSON of bridge.Checkpoint plus the
// instance that last wrote it.
type kvRecord struct {
	bridge.Checkpoint
	// Owner identifies the bridge instance holding the key
	// (host/pid/random); it fences a second bridge on the same key.
	Owner string `json:"owner,omitempty"`
}

// KVStore is a bridge.Store in a NATS KV bucket: key = the checkpoint key,
// value = the JSON checkpoint. Every write is a compare-and-set on the
// key's revision, so two bridges on one key detect each other.
//
// Opening takes ownership of an existing key (a compare-and-set that writes
// this instance's owner id): the newest bridge wins, and the one it replaced
// fails its next commit with an error wrapping bridge.ErrKeyHeld. NATS KV
// has no leases, so a store cannot tell a live holder from a crashed one at
// open; taking over keeps a restart after kill -9, or a rolling update,
// working. Two bridges that open the same missing key at once race on
// create, and the loser's first commit fails the same way.
type KVStore struct {
	nc      *natsgo.Conn
	ownConn bool
	kv      jetstream.KeyValue
	bucket  string
	key     string
	owner   string
	timeout time.Duration
	log     *slog.Logger

	mu      sync.Mutex
	rev     uint64 // revision of our last write or read; 0 when the key is absent
	cp      bridge.Checkpoint
	found   bool
	loadErr error // the stored value exists but cannot be read
	heldErr error // sticky: another bridge wrote the key
}

// OpenKVStore connects with cfg's connection settings, opens (or creates)
// the bucket, reads the key and takes ownership of it.
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
	s := &KVStore{
		nc:      nc,
		bucket:  cfg.bucket(),
		key:     cfg.Key,
		owner:   instanceID(),
		timeout: timeout,
		log:     o.logger(),
	}
	ctx, cancel := deadline(ctx, 2*timeout)
	defer cancel()
	if s.kv, err = openBucket(ctx, js, s.bucket); err != nil {
		return nil, err
	}
	if err := s.open(ctx); err != nil {
		return nil, err
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

func instanceID() string {
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b[:])
}

func (s *KVStore) where() string {
	return fmt.Sprintf("nats-kv bucket %q key %q", s.bucket, s.key)
}

// open reads the key and, when it holds a readable checkpoint, takes
// ownership with a compare-and-set.
func (s *KVStore) open(ctx context.Context) error {
	e, err := s.kv.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: read: %w", s.where(), err)
	}
	var rec kvRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		// Load reports it; never overwrite what cannot be read.
		s.loadErr = fmt.Errorf("%s (revision %d): unreadable checkpoint: %w", s.where(), e.Revision(), err)
		s.rev = e.Revision()
		return nil
	}
	s.cp, s.found, s.rev = rec.Checkpoint, true, e.Revision()
	prev := rec.Owner
	rec.Owner = s.owner
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	rev, err := s.kv.Update(ctx, s.key, data, s.rev)
	if isCASConflict(err) {
		return fmt.Errorf("%s: written by another bridge while opening: %w", s.where(), bridge.ErrKeyHeld)
	}
	if err != nil {
		return fmt.Errorf("%s: take ownership: %w", s.where(), err)
	}
	s.rev = rev
	if prev != "" && prev != s.owner {
		s.log.Info("checkpoint.nats_kv.taken_over", "bucket", s.bucket, "key", s.key,
			"previous_owner", prev, "owner", s.owner, "sequence", s.cp.Sequence)
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
	if s.found && cp.Sequence <= s.cp.Sequence {
		return nil
	}
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = time.Now().UTC()
	}
	data, err := json.Marshal(kvRecord{Checkpoint: cp, Owner: s.owner})
	if err != nil {
		return err
	}
	ctx, cancel := deadline(ctx, s.timeout)
	defer cancel()
	rev, err := s.write(ctx, data)
	if isCASConflict(err) {
		// Our own earlier write may have succeeded after its request
		// timed out; then the key still names us.
		var mine bool
		mine, err = s.reconcile(ctx)
		if mine {
			rev, err = s.write(ctx, data)
		}
		if isCASConflict(err) {
			s.heldErr = fmt.Errorf("%s: written by another bridge: %w", s.where(), bridge.ErrKeyHeld)
			return s.heldErr
		}
	}
	if err != nil {
		if errors.Is(err, bridge.ErrKeyHeld) {
			s.heldErr = err
			return err
		}
		return fmt.Errorf("%s: commit sequence %d: %w", s.where(), cp.Sequence, err)
	}
	s.rev, s.cp, s.found = rev, cp, true
	return nil
}

func (s *KVStore) write(ctx context.Context, data []byte) (uint64, error) {
	if s.rev == 0 {
		return s.kv.Create(ctx, s.key, data)
	}
	return s.kv.Update(ctx, s.key, data, s.rev)
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
	var rec kvRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.Owner != s.owner {
		owner := rec.Owner
		if owner == "" {
			owner = "unknown"
		}
		return false, fmt.Errorf("%s: now held by %s (revision %d): %w", s.where(), owner, e.Revision(), bridge.ErrKeyHeld)
	}
	s.rev = e.Revision()
	if rec.Sequence > s.cp.Sequence {
		s.cp = rec.Checkpoint
	}
	return true, nil
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

// Close releases the connection when the store opened it.
func (s *KVStore) Close() error {
	if s.ownConn {
		s.nc.Close()
	}
	return nil
}
