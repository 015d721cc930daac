// Package lease is the ownership of a checkpoint key in a store that
// several bridges can reach (NATS KV, a Kafka topic): one implementation
// of the settings, the owner id, the held error, wait-then-claim and the
// refresh loop, used by every remote store. A store supplies only its
// compare-and-set (Backend); docs/checkpoint.md describes the protocol.
//
// Data flow: cmd/aviso-bridge opens a store (checkpoint/natskv,
// checkpoint/kafkatopic), the store acquires its key here before the
// supervisor loads the checkpoint, and releases it on Close.
//
// The lease needs no clock shared between hosts: the holder rewrites its
// key every third of the TTL; an opening store that finds another owner
// in the key watches it for one TTL on its own clock. A write means the
// holder is alive (opening fails with a *HeldError); silence means it is
// gone (kill -9, lost host) and the key is taken over.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// DefaultTTL is the default of Config.TTL (CHECKPOINT_LEASE_TTL).
const DefaultTTL = 6 * time.Second

// Config is the lease of one checkpoint key.
type Config struct {
	// TTL is CHECKPOINT_LEASE_TTL (default DefaultTTL, 6s): how long an
	// opening store watches a key held by another owner, on its own
	// clock, before it takes the key over as abandoned. The holder
	// rewrites the key every TTL/3.
	TTL time.Duration
	// Owner identifies this process in the key (default: a new OwnerID
	// per lease). Give every attempt of one process the same id: a store
	// that finds its own owner id in the key takes it at once (a retried
	// open whose claim was written but not answered). Never a secret.
	// In a fleet it is BRIDGE_INSTANCE_ID, so that the holders a
	// coordinator reports are the members it lists.
	Owner string
	// Mode is what opening does with a key another owner holds (default
	// Probe).
	Mode Mode
}

// Mode is what opening a store does with a key that names another owner.
type Mode int

const (
	// Probe (the default, a single listener without BRIDGE_STANDBY):
	// watch the key for one TTL; a write by the holder fails with a
	// *HeldError, silence takes the key over.
	Probe Mode = iota
	// Try reads the key once: a key another owner holds fails at once
	// with a *HeldError naming the holder (LapsesBy: the latest its lease
	// lapses if it stops now). Free keys are taken as in Probe.
	Try
	// Standby (BRIDGE_STANDBY=true) waits, however long, until the key is
	// released (taken at once: the store watches it) or its holder stops
	// refreshing it for one TTL (taken over); a holder that writes
	// restarts the wait. Only ctx ends it.
	Standby
)

// Validate checks c; errors name the Go field.
func (c Config) Validate() error {
	if c.TTL < 0 {
		return fmt.Errorf("lease: TTL %v must not be negative", c.TTL)
	}
	if c.TTL > 0 && c.TTL < 3*time.Millisecond {
		return fmt.Errorf("lease: TTL %v is too short (at least 3ms: the holder refreshes every third of it)", c.TTL)
	}
	if c.Mode < Probe || c.Mode > Standby {
		return fmt.Errorf("lease: unknown Mode %d", c.Mode)
	}
	return nil
}

// WithDefaults returns c with zero fields set to their defaults (a new
// owner id when Owner is empty).
func (c Config) WithDefaults() Config {
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.Owner == "" {
		c.Owner = OwnerID()
	}
	return c
}

// refresh is how often the holder rewrites its key: a third of the TTL.
func (c Config) refresh() time.Duration { return c.WithDefaults().TTL / 3 }

// OwnerID is a new owner id: hostname/pid/random. It names a process for
// an operator; the random part keeps it unique where hostname and pid
// repeat (containers).
func OwnerID() string {
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b[:])
}

// HeldError is the error of a checkpoint key that another bridge holds.
// errors.Is(err, bridge.ErrKeyHeld) matches it.
type HeldError struct {
	// Where names the store's place, e.g. `nats-kv bucket "aviso_bridge"`.
	Where string
	// Key is the checkpoint key.
	Key string
	// Holder is the owner id of the other bridge ("unknown" when it could
	// not be read).
	Holder string
	// Detail says how the holder was found, when it took the key from
	// this store ("claimed at offset 12"); may be empty.
	Detail string
	// LapsesBy is, on this host's clock, the latest the holder's lease
	// lapses if the holder stops refreshing now (the last write seen plus
	// the TTL); zero when unknown.
	LapsesBy time.Time
}

func (e *HeldError) Error() string {
	holder := e.Holder
	if holder == "" {
		holder = "unknown"
	}
	detail := ""
	if e.Detail != "" {
		detail = ", " + e.Detail
	}
	return fmt.Sprintf("%s: another bridge holds checkpoint key %s (owner %s%s); stop it or use a different checkpoint key: %v",
		e.Where, e.Key, holder, detail, bridge.ErrKeyHeld)
}

// Is makes errors.Is(err, bridge.ErrKeyHeld) true.
func (e *HeldError) Is(target error) bool { return target == bridge.ErrKeyHeld }

// State is what a store reads of its key.
type State struct {
	// Holder is the owner holding the key; "" when the key is free (absent
	// or released).
	Holder string
	// Version changes with every write to the key by an owner other than
	// this one (a revision, an offset).
	Version uint64
	// Writer is the owner of the newest such write when it is not the
	// Holder (a competing claim); "" means the Holder.
	Writer string
}

// Backend is a store's half of the lease: its compare-and-set on the key.
// Lease serialises nothing: a Backend guards its own state.
type Backend interface {
	// Read returns the key's current state.
	Read(ctx context.Context) (State, error)
	// Claim writes the key for owner unless it changed since s was read (a
	// *HeldError naming the other owner when it did). attrs are logged
	// with the acquisition (revision, offset, sequence).
	Claim(ctx context.Context, s State, owner string) (attrs []any, err error)
	// Refresh restates the holder's claim; an error wrapping
	// bridge.ErrKeyHeld when another owner took the key.
	Refresh(ctx context.Context) error
	// Release frees the key, keeping its checkpoint; an error wrapping
	// bridge.ErrKeyHeld when another owner took the key meanwhile.
	Release(ctx context.Context) error
}

// Watcher is implemented by a Backend that can wait for a change of its
// key (a NATS KV watch, a Kafka long poll); a waiting lease polls a
// Backend without it every sixth of the TTL.
type Watcher interface {
	// AwaitChange returns when the key may have changed since the last
	// Read, when d has passed, or when ctx is done. An error makes the
	// lease fall back to polling.
	AwaitChange(ctx context.Context, d time.Duration) error
}

// Options are the parts of a lease that are not configuration.
type Options struct {
	Config
	// Key is the checkpoint key and Where the store's place, for errors
	// and logs (see HeldError).
	Key   string
	Where string
	// Events prefixes the log event names (e.g. "checkpoint.nats_kv":
	// checkpoint.nats_kv.waiting, .taken_over, .lost, .released).
	Events string
	// Acquired is the event suffix logged when the key is taken at once
	// (default "acquired").
	Acquired string
	// Attrs name the store's place in every log line ("bucket", name).
	Attrs []any
	// Logger receives the events; nil discards them.
	Logger *slog.Logger
}

// Lease is a held checkpoint key: Acquire returns it with its refresher
// running; Close stops the refresher and releases the key.
type Lease struct {
	o       Options
	b       Backend
	refresh time.Duration
	log     *slog.Logger

	mu        sync.Mutex
	lastWrite time.Time
	lost      error // sticky: another owner took the key

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Acquire takes the key through b: at once when it is free or names this
// owner; otherwise after watching it for one TTL without a write by its
// holder (taken over). A write meanwhile means the holder is alive:
// Acquire fails with a *HeldError. It then starts the refresher, which
// Close stops.
func Acquire(ctx context.Context, b Backend, o Options) (*Lease, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.Config = o.WithDefaults()
	if o.Acquired == "" {
		o.Acquired = "acquired"
	}
	l := &Lease{o: o, b: b, refresh: o.refresh(), log: o.Logger}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	rctx, stop := context.WithCancel(context.Background())
	l.stop, l.done = stop, make(chan struct{})
	go l.refreshLoop(rctx)
	return l, nil
}

// Wrote records a successful write of the key by this owner (a commit),
// which spares the next refresh.
func (l *Lease) Wrote() {
	l.mu.Lock()
	l.lastWrite = time.Now()
	l.mu.Unlock()
}

// Lost makes err (wrapping bridge.ErrKeyHeld) the sticky error of a key
// another owner took, logging <events>.lost the first time, and returns
// the sticky error.
func (l *Lease) Lost(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		l.lost = err
		l.log.Error(l.o.Events+".lost", l.attrs("owner", l.o.Owner, "error", err.Error(),
			"hint", "another bridge took the key over (this one could not refresh it for the lease TTL); commits fail from now on")...)
	}
	return l.lost
}

// Err returns the sticky error of a lost key, nil while the key is held.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

func (l *Lease) isLost() bool { return l.Err() != nil }

func (l *Lease) attrs(kv ...any) []any {
	return append(append(append([]any{}, l.o.Attrs...), "key", l.o.Key), kv...)
}

// wait is what an acquisition has seen of another owner's key.
type wait struct {
	watched State     // the other owner's state when the current wait began
	started time.Time // when it began (zero: not waiting)
	first   time.Time // when the first wait began
}

// acquire takes the key as l.o.Mode says (see Mode).
func (l *Lease) acquire(ctx context.Context) error {
	var w wait
	for {
		s, err := l.b.Read(ctx)
		if err != nil {
			return err
		}
		done, err := l.step(ctx, s, &w)
		if done {
			return err
		}
		if err := l.await(ctx, l.o.TTL-time.Since(w.started)); err != nil {
			return fmt.Errorf("%s key %s: waiting for owner %s to refresh or give up the key: %w", l.o.Where, l.o.Key, w.watched.Holder, err)
		}
	}
}

// step acts on one read of the key; done ends the acquisition with err.
func (l *Lease) step(ctx context.Context, s State, w *wait) (done bool, err error) {
	switch {
	case s.Holder == "" || s.Holder == l.o.Owner:
		return l.settle(l.claim(ctx, s, "", w))
	case l.o.Mode == Try:
		return true, l.held(s, time.Now())
	case w.started.IsZero():
		w.watched, w.started = s, time.Now()
		if w.first.IsZero() {
			w.first = w.started
			l.logWaiting(s.Holder)
		}
	case s.Version != w.watched.Version:
		// The holder refreshed or committed, or another bridge claimed
		// the key: it is alive. (A release frees the key: taken above.)
		if l.o.Mode != Standby {
			return true, l.held(s, time.Now())
		}
		w.watched, w.started = s, time.Now() // restart the wait
	case time.Since(w.started) >= l.o.TTL:
		return l.settle(l.claim(ctx, s, w.watched.Holder, w))
	}
	return false, nil
}

// settle ends the acquisition on a claim's result, except that a standby
// that lost a claim race keeps waiting (on the winner).
func (l *Lease) settle(err error) (done bool, _ error) {
	if err != nil && l.o.Mode == Standby && errors.Is(err, bridge.ErrKeyHeld) {
		return false, nil
	}
	return true, err
}

func (l *Lease) logWaiting(holder string) {
	if l.o.Mode == Standby {
		l.log.Info(l.o.Events+".standby", l.attrs("owner", holder, "ttl", l.o.TTL.String(),
			"hint", "standing by: the key names another bridge; taking it when that bridge releases it or stops refreshing it for the TTL")...)
		return
	}
	l.log.Info(l.o.Events+".waiting", l.attrs("owner", holder, "wait", l.o.TTL.String(),
		"hint", "the key names another bridge; taking it over only if that bridge does not refresh it within the wait")...)
}

// held is the error of a key s names another owner of, seen alive at
// seen.
func (l *Lease) held(s State, seen time.Time) error {
	writer := s.Writer
	if writer == "" {
		writer = s.Holder
	}
	return &HeldError{Where: l.o.Where, Key: l.o.Key, Holder: writer, LapsesBy: seen.Add(l.o.TTL)}
}

// await waits for the next read: until the key may have changed (a
// Watcher) or a sixth of the TTL, never beyond rest (the end of the
// current wait).
func (l *Lease) await(ctx context.Context, rest time.Duration) error {
	d := max(min(l.refresh/2, rest), time.Millisecond)
	if w, ok := l.b.(Watcher); ok {
		if l.o.Mode == Standby {
			d = max(rest, time.Millisecond) // a watch sees refreshes and releases at once
		}
		if err := w.AwaitChange(ctx, d); err == nil || ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return sleep(ctx, d)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// claim takes the key; prev is the owner taken over after waiting.
func (l *Lease) claim(ctx context.Context, s State, prev string, w *wait) error {
	attrs, err := l.b.Claim(ctx, s, l.o.Owner)
	var held *HeldError
	if errors.As(err, &held) && held.LapsesBy.IsZero() {
		held.LapsesBy = time.Now().Add(l.o.TTL)
	}
	if err != nil {
		w.started = time.Time{} // a standby waits on the winner from its next read
		return err
	}
	l.Wrote()
	attrs = l.attrs(append([]any{"owner", l.o.Owner}, attrs...)...)
	if !w.first.IsZero() {
		attrs = append(attrs, "waited", time.Since(w.first).String())
	}
	if prev == "" {
		l.log.Info(l.o.Events+"."+l.o.Acquired, attrs...)
		return nil
	}
	l.log.Info(l.o.Events+".taken_over", append(attrs, "previous_owner", prev,
		"hint", "the previous owner did not refresh the key for the lease TTL; it was stopped without a graceful shutdown")...)
	return nil
}

// refreshLoop restates the claim every TTL/3 (unless a commit wrote the
// key in the last half of that) until ctx is done or the key is lost.
func (l *Lease) refreshLoop(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.refresh)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		recent, lost := time.Since(l.lastWrite) < l.refresh/2, l.lost != nil
		l.mu.Unlock()
		if lost {
			return
		}
		if recent {
			continue
		}
		err := l.b.Refresh(ctx)
		switch {
		case err == nil:
			l.Wrote()
			if failing {
				l.log.Info(l.o.Events+".refresh_recovered", l.attrs()...)
			}
			failing = false
		case ctx.Err() != nil:
			return
		case errors.Is(err, bridge.ErrKeyHeld):
			_ = l.Lost(err)
			return
		default:
			failing = true
			l.log.Warn(l.o.Events+".refresh_failed", l.attrs("error", err.Error(),
				"hint", "a bridge starting on this key takes it over when no refresh succeeds for the lease TTL")...)
		}
	}
}

// Abandon stops the refresher without releasing the key, as kill -9 would
// (and a process cut off from its store): a bridge opening the key takes
// it over after the TTL. For tests of crashes.
func (l *Lease) Abandon() {
	l.stop()
	<-l.done
}

// Close stops the refresher and releases the key (so that a restart takes
// it at once) unless another owner took it. A failed release is logged
// (<events>.release_failed) and returned; the next bridge on the key then
// waits one TTL. Later calls return the first call's result.
func (l *Lease) Close(ctx context.Context) error {
	l.closeOnce.Do(func() { l.closeErr = l.close(ctx) })
	return l.closeErr
}

func (l *Lease) close(ctx context.Context) error {
	l.Abandon()
	if l.isLost() {
		return nil // another owner holds the key: nothing to release
	}
	switch err := l.b.Release(ctx); {
	case err == nil:
		l.log.Info(l.o.Events+".released", l.attrs("owner", l.o.Owner)...)
	case errors.Is(err, bridge.ErrKeyHeld):
		_ = l.Lost(err) // taken over meanwhile: nothing to release
	default:
		l.log.Warn(l.o.Events+".release_failed", l.attrs("error", err.Error(),
			"hint", "the next bridge on this key waits the lease TTL before taking it over")...)
		return fmt.Errorf("%s key %s: release: %w", l.o.Where, l.o.Key, err)
	}
	return nil
}
