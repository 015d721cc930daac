package natskv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

// BucketConfig is the whole bucket, for the checkpoint admin and fleet
// membership. A zero field means its default.
type BucketConfig struct {
	// Bucket is NATS_KV_BUCKET (default DefaultBucket).
	Bucket string
	// Timeout bounds each KV request (default DefaultTimeout).
	Timeout time.Duration
	// Lease: TTL is CHECKPOINT_LEASE_TTL, by which liveness is judged;
	// Owner names the admin when it takes a key to change it (default a
	// new OwnerID). Mode is not used.
	Lease lease.Config
}

// Bucket is the nats-kv store as a whole: checkpoint.Admin over every
// checkpoint key and checkpoint.Coordinator of a fleet. A member record
// is the lease of key member.<instance id> (MemberPrefix), held by the
// instance id and deleted by a graceful release.
type Bucket struct {
	nc      *natsgo.Conn
	kv      jetstream.KeyValue
	stream  jetstream.Stream // the bucket's stream, KV_<bucket>
	cfg     BucketConfig
	log     *slog.Logger
	tracker *lease.Tracker
}

var (
	_ checkpoint.Admin       = (*Bucket)(nil)
	_ checkpoint.Coordinator = (*Bucket)(nil)
)

// OpenBucket opens (or creates) the bucket on nc, which stays open. A
// failure that waiting can fix is a *bridge.RetryableError.
func OpenBucket(ctx context.Context, nc *natsgo.Conn, cfg BucketConfig, log *slog.Logger) (*Bucket, error) {
	if err := (Config{Bucket: cfg.Bucket, Key: "k", Timeout: cfg.Timeout, Lease: cfg.Lease}).Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	cfg.Bucket = Config{Bucket: cfg.Bucket}.bucket()
	cfg.Lease = cfg.Lease.WithDefaults()
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(cfg.Timeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	bctx, cancel := bounded(ctx, 2*cfg.Timeout)
	defer cancel()
	kv, err := openBucket(bctx, js, cfg.Bucket)
	if err != nil {
		return nil, startError(err)
	}
	stream, err := js.Stream(bctx, "KV_"+cfg.Bucket)
	if err != nil {
		return nil, startError(fmt.Errorf("the bucket's stream: %w", err))
	}
	return &Bucket{nc: nc, kv: kv, stream: stream, cfg: cfg, log: log, tracker: lease.NewTracker(cfg.Lease.TTL)}, nil
}

func (b *Bucket) where() string { return fmt.Sprintf("nats-kv bucket %q", b.cfg.Bucket) }

// open opens the store of key with lc.
func (b *Bucket) open(ctx context.Context, key string, lc lease.Config) (*Store, error) {
	return Open(ctx, b.nc, Config{Bucket: b.cfg.Bucket, Key: key, Timeout: b.cfg.Timeout, Lease: lc}, b.log)
}

// snapshot returns the current entries of the keys matching filter.
//
// A KV watcher alone can miss a key: its initial values are the last
// message per key when the consumer is created, and a key rewritten before
// its old message is delivered (a lease refresh, every TTL/3) is skipped
// there and comes only later as a live update, after the watcher's
// "initial values done" marker. So once the marker has come, the newest
// message matching filter is looked up, and updates are read on until it
// (or a later one) has been seen.
func (b *Bucket) snapshot(ctx context.Context, filter string) ([]jetstream.KeyValueEntry, error) {
	ctx, cancel := bounded(ctx, b.cfg.Timeout)
	defer cancel()
	w, err := b.kv.WatchFiltered(ctx, []string{filter})
	if err != nil {
		return nil, fmt.Errorf("%s: list %s: %w", b.where(), filter, err)
	}
	defer func() { _ = w.Stop() }()
	current := map[string]jetstream.KeyValueEntry{}
	var seen uint64
	next := func() (bool, error) {
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("%s: list %s: %w", b.where(), filter, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return false, nil
			}
			seen = max(seen, e.Revision())
			if e.Operation() == jetstream.KeyValuePut {
				current[e.Key()] = e
			} else {
				delete(current, e.Key())
			}
			return true, nil
		}
	}
	for more := true; more; {
		if more, err = next(); err != nil {
			return nil, err
		}
	}
	newest, err := b.newest(ctx, filter)
	if err != nil {
		return nil, err
	}
	for seen < newest {
		more, err := next()
		if err != nil {
			return nil, err
		}
		if !more { // the watch ended (the connection closed): nothing more will come
			return nil, fmt.Errorf("%s: list %s: the watch ended before message %d", b.where(), filter, newest)
		}
	}
	entries := make([]jetstream.KeyValueEntry, 0, len(current))
	for _, e := range current {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(x, y jetstream.KeyValueEntry) int { return strings.Compare(x.Key(), y.Key()) })
	return entries, nil
}

// newest returns the stream sequence of the newest message of the keys
// matching filter (0: none).
func (b *Bucket) newest(ctx context.Context, filter string) (uint64, error) {
	m, err := b.stream.GetLastMsgForSubject(ctx, "$KV."+b.cfg.Bucket+"."+filter)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("%s: list %s: newest message: %w", b.where(), filter, err)
	}
	return m.Sequence, nil
}

// Announce implements checkpoint.Coordinator: it takes the lease of
// member.<id> under a new owner id (lease.Probe: a record of a process
// with the same id that died, a restart's, is outwaited for one TTL; a
// live one fails), which refreshes it; release deletes it.
func (b *Bucket) Announce(ctx context.Context, id string) (func(context.Context) error, error) {
	st, err := b.open(ctx, checkpoint.MemberPrefix+id, lease.Config{TTL: b.cfg.Lease.TTL, Owner: lease.OwnerID()})
	if err != nil {
		return nil, fmt.Errorf("announce member %s: %w", id, err)
	}
	return func(ctx context.Context) error {
		err := st.replace(ctx, nil)
		return errors.Join(err, st.Close())
	}, nil
}

// Members implements checkpoint.Coordinator.
func (b *Bucket) Members(ctx context.Context) ([]checkpoint.Member, error) {
	entries, err := b.snapshot(ctx, checkpoint.MemberPrefix+">")
	if err != nil {
		return nil, err
	}
	var members []checkpoint.Member
	now := time.Now()
	for _, e := range entries {
		if h := b.holding(e, now); h.Holder != "" {
			members = append(members, checkpoint.Member{ID: strings.TrimPrefix(e.Key(), checkpoint.MemberPrefix), LapsesBy: h.LapsesBy})
		}
	}
	slices.SortFunc(members, func(a, b checkpoint.Member) int { return strings.Compare(a.ID, b.ID) })
	return members, nil
}

// holding judges the owner named in e.
func (b *Bucket) holding(e jetstream.KeyValueEntry, now time.Time) checkpoint.Holding {
	rec, _, _, err := decodeRecord(e.Value())
	if err != nil || rec.Owner == "" {
		b.tracker.Forget(e.Key())
		return checkpoint.Holding{}
	}
	alive, by := b.tracker.Observe(e.Key(), e.Revision(), now)
	if !alive {
		return checkpoint.Holding{}
	}
	return checkpoint.Holding{Holder: rec.Owner, LapsesBy: by}
}

// Holders implements checkpoint.Coordinator.
func (b *Bucket) Holders(ctx context.Context, keys []string) (map[string]checkpoint.Holding, error) {
	entries, err := b.snapshot(ctx, ">")
	if err != nil {
		return nil, err
	}
	out := make(map[string]checkpoint.Holding, len(keys))
	for _, k := range keys {
		out[k] = checkpoint.Holding{}
	}
	now := time.Now()
	for _, e := range entries {
		if _, ok := out[e.Key()]; ok {
			out[e.Key()] = b.holding(e, now)
		}
	}
	return out, nil
}

// entry is the admin's view of e.
func (b *Bucket) entry(e jetstream.KeyValueEntry) (checkpoint.Entry, error) {
	rec, cp, found, err := decodeRecord(e.Value())
	if err != nil {
		return checkpoint.Entry{}, fmt.Errorf("%s key %q (revision %d): unreadable checkpoint: %w", b.where(), e.Key(), e.Revision(), err)
	}
	out := checkpoint.Entry{Key: e.Key(), Checkpoint: cp, Found: found, Holder: rec.Owner, Written: e.Created()}
	if rec.Owner != "" {
		out.LeaseExpires = out.Written.Add(b.cfg.Lease.TTL)
	}
	return out, nil
}

// List implements checkpoint.Admin.
func (b *Bucket) List(ctx context.Context) ([]checkpoint.Entry, error) {
	entries, err := b.snapshot(ctx, ">")
	if err != nil {
		return nil, err
	}
	var out []checkpoint.Entry
	for _, e := range entries {
		if strings.HasPrefix(e.Key(), checkpoint.MemberPrefix) {
			continue
		}
		ent, err := b.entry(e)
		if err != nil {
			return nil, err
		}
		out = append(out, ent)
	}
	slices.SortFunc(out, func(a, b checkpoint.Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Get implements checkpoint.Admin.
func (b *Bucket) Get(ctx context.Context, key string) (checkpoint.Entry, bool, error) {
	ctx, cancel := bounded(ctx, b.cfg.Timeout)
	defer cancel()
	e, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return checkpoint.Entry{}, false, nil
	}
	if err != nil {
		return checkpoint.Entry{}, false, fmt.Errorf("%s key %q: read: %w", b.where(), key, err)
	}
	ent, err := b.entry(e)
	return ent, err == nil, err
}

// Set implements checkpoint.Admin.
func (b *Bucket) Set(ctx context.Context, key string, cp bridge.Checkpoint, force bool) error {
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = time.Now().UTC()
	}
	return b.change(ctx, key, &cp, force)
}

// Delete implements checkpoint.Admin.
func (b *Bucket) Delete(ctx context.Context, key string, force bool) error {
	return b.change(ctx, key, nil, force)
}

// change writes cp released (nil: deletes the key). Unless force, it
// first takes the key's lease as the admin (lease.Probe: a live holder
// fails it with a *lease.HeldError, a dead one is outwaited), so the
// write is a compare-and-set on what the lease saw.
func (b *Bucket) change(ctx context.Context, key string, cp *bridge.Checkpoint, force bool) error {
	if err := (Config{Bucket: b.cfg.Bucket, Key: key}).Validate(); err != nil {
		return err
	}
	if force {
		return b.forceChange(ctx, key, cp)
	}
	open := func(lc lease.Config) (*Store, error) { return b.open(ctx, key, lc) }
	return checkpoint.ChangeLeased(open, b.cfg.Lease, func(st *Store) error { return st.replace(ctx, cp) })
}

// forceChange writes without looking at the holder.
func (b *Bucket) forceChange(ctx context.Context, key string, cp *bridge.Checkpoint) error {
	ctx, cancel := bounded(ctx, b.cfg.Timeout)
	defer cancel()
	if cp == nil {
		if err := b.kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("%s key %q: delete: %w", b.where(), key, err)
		}
		return nil
	}
	data, err := encodeRecord(*cp, true, "")
	if err == nil {
		_, err = b.kv.Put(ctx, key, data)
	}
	if err != nil {
		return fmt.Errorf("%s key %q: set sequence %d: %w", b.where(), key, cp.Sequence, err)
	}
	return nil
}

// replace ends the store's lease without a release and writes cp with no
// owner (released), or deletes the key when cp is nil, as a
// compare-and-set on the revision the store last saw. The store is closed
// for commits afterwards.
func (s *Store) replace(ctx context.Context, cp *bridge.Checkpoint) error {
	if s.lease != nil {
		s.lease.Abandon()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed, s.held = true, false
	ctx, cancel := bounded(ctx, s.timeout)
	defer cancel()
	var err error
	switch {
	case cp == nil && s.rev == 0:
		return nil // nothing stored
	case cp == nil:
		err = s.kv.Delete(ctx, s.key, jetstream.LastRevision(s.rev))
	default:
		var data []byte
		if data, err = encodeRecord(*cp, true, ""); err != nil {
			return err
		}
		if s.rev == 0 {
			_, err = s.kv.Create(ctx, s.key, data)
		} else {
			_, err = s.kv.Update(ctx, s.key, data, s.rev)
		}
	}
	if isConflict(err) {
		return s.heldBy(ctx, "written meanwhile")
	}
	if err != nil {
		return fmt.Errorf("%s key %q: %w", s.where(), s.key, err)
	}
	return nil
}
