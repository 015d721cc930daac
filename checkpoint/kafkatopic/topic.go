package kafkatopic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

// TopicConfig is the whole checkpoint topic, for the checkpoint admin and
// fleet membership. A zero field means its default.
type TopicConfig struct {
	// Topic is KAFKA_CHECKPOINT_TOPIC (default DefaultTopic); created
	// when missing, as Open does.
	Topic             string
	ReplicationFactor int
	// Timeout bounds each request (default DefaultTimeout).
	Timeout time.Duration
	// Lease: TTL is CHECKPOINT_LEASE_TTL, by which liveness is judged;
	// Owner names the admin when it takes a key to change it (default a
	// new OwnerID). Mode is not used.
	Lease lease.Config
}

// Topic is the kafka store as a whole: checkpoint.Admin over every
// checkpoint key and checkpoint.Coordinator of a fleet. It reads every
// partition of the topic from where it last stopped. A member record is
// the lease of key member.<instance id> (MemberPrefix), held under a new
// owner id and removed by a tombstone on a graceful release.
type Topic struct {
	client  *kafkago.Client
	cfg     TopicConfig
	log     *slog.Logger
	tracker *lease.Tracker

	mu      sync.Mutex // guards what follows
	readers []*partReader
	keys    map[string]*keyView
}

// keyView is what the records read tell of one key.
type keyView struct {
	own    ownership
	rec    record    // the newest record that counts (not a lost claim)
	at     time.Time // its record time
	offset int64     // the offset of the key's newest record (any)
	err    error     // the newest value cannot be read
}

var (
	_ checkpoint.Admin       = (*Topic)(nil)
	_ checkpoint.Coordinator = (*Topic)(nil)
)

// OpenTopic creates the topic when missing and lists its partitions; the
// client stays open. A failure that waiting can fix is a
// *bridge.RetryableError.
func OpenTopic(ctx context.Context, client *kafkago.Client, cfg TopicConfig, log *slog.Logger) (*Topic, error) {
	if err := (Config{Key: "k", ReplicationFactor: cfg.ReplicationFactor, Timeout: cfg.Timeout, Lease: cfg.Lease}).Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	cfg.Lease = cfg.Lease.WithDefaults()
	t := &Topic{client: client, cfg: cfg, log: log, tracker: lease.NewTracker(cfg.Lease.TTL), keys: map[string]*keyView{}}
	st := &Store{client: client, topic: cfg.Topic, timeout: cfg.Timeout, log: log}
	if err := st.ensureTopic(ctx, cfg.ReplicationFactor); err != nil {
		return nil, startError(err)
	}
	parts, err := partitions(ctx, client, cfg.Topic, cfg.Timeout)
	if err != nil {
		return nil, startError(fmt.Errorf("%s: %w", t.where(), err))
	}
	for _, p := range parts {
		t.readers = append(t.readers, &partReader{client: client, topic: cfg.Topic, partition: p, timeout: cfg.Timeout})
	}
	return t, nil
}

func (t *Topic) where() string { return fmt.Sprintf("kafka checkpoint topic %q", t.cfg.Topic) }

// catchUp reads every partition to its end. Called with mu held.
func (t *Topic) catchUp(ctx context.Context) error {
	for _, r := range t.readers {
		if err := r.readNew(ctx, t.apply); err != nil {
			return fmt.Errorf("%s %w", t.where(), err)
		}
	}
	return nil
}

// apply folds one record into the key's view (as Store.apply does).
func (t *Topic) apply(off int64, key, value []byte, at time.Time) error {
	k := string(key)
	if value == nil {
		delete(t.keys, k) // tombstone
		return nil
	}
	v := t.keys[k]
	if v == nil {
		v = &keyView{}
		t.keys[k] = v
	}
	v.offset = off
	var rec record
	if err := json.Unmarshal(value, &rec); err != nil {
		v.err = fmt.Errorf("%s key %s offset %d: unreadable checkpoint: %w", t.where(), k, off, err)
		return nil
	}
	if v.own.apply(off, rec) {
		v.rec, v.at, v.err = rec, at, nil
	}
	return nil
}

// holding judges the holder of k (mu held).
func (t *Topic) holding(k string, now time.Time) checkpoint.Holding {
	v := t.keys[k]
	if v == nil || v.own.holder == "" {
		t.tracker.Forget(k)
		return checkpoint.Holding{}
	}
	alive, by := t.tracker.Observe(k, uint64(v.offset), now)
	if !alive {
		return checkpoint.Holding{}
	}
	return checkpoint.Holding{Holder: v.own.holder, LapsesBy: by}
}

// Announce implements checkpoint.Coordinator: it takes the lease of
// member.<id> under a new owner id (lease.Probe: a record of a process
// with the same id that died, a restart's, is outwaited for one TTL; a
// live one fails), which refreshes it; release writes a tombstone.
func (t *Topic) Announce(ctx context.Context, id string) (func(context.Context) error, error) {
	st, err := t.open(ctx, checkpoint.MemberPrefix+id, lease.Config{TTL: t.cfg.Lease.TTL, Owner: lease.OwnerID()})
	if err != nil {
		return nil, fmt.Errorf("announce member %s: %w", id, err)
	}
	return func(ctx context.Context) error {
		err := st.replace(ctx, nil)
		return errors.Join(err, st.Close())
	}, nil
}

func (t *Topic) open(ctx context.Context, key string, lc lease.Config) (*Store, error) {
	return Open(ctx, t.client, Config{Topic: t.cfg.Topic, Key: key, Timeout: t.cfg.Timeout, Lease: lc}, t.log)
}

// Members implements checkpoint.Coordinator.
func (t *Topic) Members(ctx context.Context) ([]checkpoint.Member, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.catchUp(ctx); err != nil {
		return nil, err
	}
	var members []checkpoint.Member
	now := time.Now()
	for k := range t.keys {
		if !strings.HasPrefix(k, checkpoint.MemberPrefix) {
			continue
		}
		if h := t.holding(k, now); h.Holder != "" {
			members = append(members, checkpoint.Member{ID: strings.TrimPrefix(k, checkpoint.MemberPrefix), LapsesBy: h.LapsesBy})
		}
	}
	slices.SortFunc(members, func(a, b checkpoint.Member) int { return strings.Compare(a.ID, b.ID) })
	return members, nil
}

// Holders implements checkpoint.Coordinator.
func (t *Topic) Holders(ctx context.Context, keys []string) (map[string]checkpoint.Holding, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.catchUp(ctx); err != nil {
		return nil, err
	}
	out := make(map[string]checkpoint.Holding, len(keys))
	now := time.Now()
	for _, k := range keys {
		out[k] = t.holding(k, now)
	}
	return out, nil
}

// entry is the admin's view of k (mu held); found is false when nothing
// is stored.
func (t *Topic) entry(k string) (checkpoint.Entry, bool, error) {
	v := t.keys[k]
	if v == nil {
		return checkpoint.Entry{}, false, nil
	}
	if v.err != nil {
		return checkpoint.Entry{}, false, v.err
	}
	e := checkpoint.Entry{Key: k, Holder: v.own.holder, Written: v.at}
	if v.rec.Sequence != nil {
		e.Found = true
		e.Checkpoint = bridge.Checkpoint{Sequence: *v.rec.Sequence, EventID: v.rec.EventID, UpdatedAt: v.rec.UpdatedAt}
	}
	if e.Holder != "" && !e.Written.IsZero() {
		e.LeaseExpires = e.Written.Add(t.cfg.Lease.TTL)
	}
	return e, true, nil
}

// List implements checkpoint.Admin.
func (t *Topic) List(ctx context.Context) ([]checkpoint.Entry, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.catchUp(ctx); err != nil {
		return nil, err
	}
	var out []checkpoint.Entry
	for k := range t.keys {
		if strings.HasPrefix(k, checkpoint.MemberPrefix) {
			continue
		}
		e, found, err := t.entry(k)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b checkpoint.Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Get implements checkpoint.Admin.
func (t *Topic) Get(ctx context.Context, key string) (checkpoint.Entry, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.catchUp(ctx); err != nil {
		return checkpoint.Entry{}, false, err
	}
	return t.entry(key)
}

// Set implements checkpoint.Admin.
func (t *Topic) Set(ctx context.Context, key string, cp bridge.Checkpoint, force bool) error {
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = time.Now().UTC()
	}
	return t.change(ctx, key, &cp, force)
}

// Delete implements checkpoint.Admin: a tombstone.
func (t *Topic) Delete(ctx context.Context, key string, force bool) error {
	return t.change(ctx, key, nil, force)
}

// change writes cp released (nil: a tombstone). Unless force, it first
// takes the key's lease as the admin (lease.Probe: a live holder fails it
// with a *lease.HeldError, a dead one is outwaited).
func (t *Topic) change(ctx context.Context, key string, cp *bridge.Checkpoint, force bool) error {
	if key == "" {
		return errors.New("empty checkpoint key")
	}
	if force {
		return t.forceChange(ctx, key, cp)
	}
	open := func(lc lease.Config) (*Store, error) { return t.open(ctx, key, lc) }
	return checkpoint.ChangeLeased(open, t.cfg.Lease, func(st *Store) error { return st.replace(ctx, cp) })
}

// forceChange writes without looking at the holder: a record with no
// owner frees the key.
func (t *Topic) forceChange(ctx context.Context, key string, cp *bridge.Checkpoint) error {
	body, err := releasedBody(cp, "")
	if err != nil {
		return err
	}
	parts := make([]int, len(t.readers))
	for i, r := range t.readers {
		parts[i] = r.partition
	}
	r := partReader{client: t.client, topic: t.cfg.Topic, partition: partitionOf(key, parts), timeout: t.cfg.Timeout}
	if _, err := r.produce(ctx, key, body); err != nil {
		return fmt.Errorf("%s key %s: %w", t.where(), key, err)
	}
	return nil
}

// releasedBody is the value of a record that stores cp with no owner
// (released by releasedBy), nil (a tombstone) when cp is nil.
func releasedBody(cp *bridge.Checkpoint, releasedBy string) ([]byte, error) {
	if cp == nil {
		return nil, nil
	}
	seq := cp.Sequence
	return json.Marshal(record{Sequence: &seq, EventID: cp.EventID, UpdatedAt: cp.UpdatedAt, ReleasedBy: releasedBy})
}

// replace ends the store's lease without a release and writes cp with no
// owner (released by this store's owner, which holds the key), or a
// tombstone when cp is nil. The store is closed for commits afterwards.
func (st *Store) replace(ctx context.Context, cp *bridge.Checkpoint) error {
	st.lease.Abandon()
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	st.opMu.Lock()
	defer st.opMu.Unlock()
	st.claimed = false
	if err := st.catchUp(ctx); err != nil {
		return err
	}
	body, err := releasedBody(cp, st.owner)
	if err == nil {
		_, err = st.reader.produce(ctx, st.key, body)
	}
	if err != nil {
		return fmt.Errorf("%s key %s: %w", st.where(), st.key, err)
	}
	return nil
}
