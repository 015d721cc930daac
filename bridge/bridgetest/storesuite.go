package bridgetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

// StoreSuiteConfig is what StoreSuite needs of a bridge.Store
// implementation.
type StoreSuiteConfig struct {
	// Open opens a store of key (a 64-character hex string, new for each
	// check). A leased store uses lc (TTL and Mode; Owner empty: a new
	// owner per store); others ignore it. StoreSuite closes what Open
	// returned.
	Open func(ctx context.Context, key string, lc lease.Config) (bridge.Store, error)
	// TTL is the short lease of the lease checks; zero for a store
	// without a lease (file, memory), which skips them.
	TTL time.Duration
	// Standby: the store honours lease.Try and lease.Standby, which the
	// standby checks (StandbySuite) exercise.
	Standby bool
	// Abandon stops s's lease refresher without releasing its key, as
	// kill -9 would. Required with TTL.
	Abandon func(s bridge.Store)
}

// StoreSuite checks a bridge.Store against its contract (bridge.Store):
// Load of a key never committed finds nothing; commits round-trip through
// a reopen and never go backwards; Close releases the key, so that the
// next Open takes it at once; a second Open of a held key fails with an
// error wrapping bridge.ErrKeyHeld. With cfg.TTL set it checks the lease
// (package checkpoint/lease): the held error is a *lease.HeldError naming
// the holder's owner id, a live holder keeps its key past the TTL, and an
// abandoned key is taken over after the TTL, after which the old holder's
// commits fail with bridge.ErrKeyHeld.
func StoreSuite(t *testing.T, cfg StoreSuiteConfig) {
	t.Helper()
	s := storeSuite{cfg: cfg}
	t.Run("LoadMissing", s.loadMissing)
	t.Run("RoundTrip", s.roundTrip)
	t.Run("CloseReleases", s.closeReleases)
	t.Run("KeyHeld", s.keyHeld)
	if cfg.TTL > 0 {
		t.Run("RefreshKeepsKey", s.refreshKeeps)
		t.Run("AbandonedTakenOver", s.abandoned)
	}
	if cfg.Standby {
		t.Run("Standby", func(t *testing.T) { standbySuite(t, &s) })
	}
}

type storeSuite struct {
	cfg  StoreSuiteConfig
	keys int
}

// key returns a new key for one check.
func (s *storeSuite) key() string {
	s.keys++
	return fmt.Sprintf("%064x", time.Now().UnixNano()+int64(s.keys))
}

func storeContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// open opens key with ttl, failing the test on an error.
func (s *storeSuite) open(ctx context.Context, t *testing.T, key string, ttl time.Duration) bridge.Store {
	t.Helper()
	st, err := s.tryOpen(ctx, t, key, ttl)
	if err != nil {
		t.Fatalf("Open %s: %v", key, err)
	}
	return st
}

func (s *storeSuite) tryOpen(ctx context.Context, t *testing.T, key string, ttl time.Duration) (bridge.Store, error) {
	t.Helper()
	return s.openMode(ctx, t, key, lease.Config{TTL: ttl})
}

// openMode opens key with lc, closing the store at the test's end.
func (s *storeSuite) openMode(ctx context.Context, t *testing.T, key string, lc lease.Config) (bridge.Store, error) {
	t.Helper()
	st, err := s.cfg.Open(ctx, key, lc)
	if err == nil {
		t.Cleanup(func() { _ = st.Close() })
	}
	return st, err
}

func (s *storeSuite) ttl() time.Duration {
	if s.cfg.TTL > 0 {
		return s.cfg.TTL
	}
	return time.Second
}

func mustLoad(ctx context.Context, t *testing.T, st bridge.Store) (uint64, bool) {
	t.Helper()
	cp, found, err := st.Load(ctx)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cp.Sequence, found
}

func (s *storeSuite) loadMissing(t *testing.T) {
	ctx := storeContext(t, 30*time.Second)
	st := s.open(ctx, t, s.key(), s.ttl())
	if seq, found := mustLoad(ctx, t, st); found {
		t.Fatalf("Load of a new key found sequence %d", seq)
	}
}

func (s *storeSuite) roundTrip(t *testing.T) {
	ctx := storeContext(t, 30*time.Second)
	key := s.key()
	st := s.open(ctx, t, key, s.ttl())
	for _, seq := range []uint64{5, 10, 7} { // 7: behind, a no-op
		if err := st.Commit(ctx, bridge.Checkpoint{Sequence: seq, EventID: bridge.EventID("mars", seq)}); err != nil {
			t.Fatalf("Commit %d: %v", seq, err)
		}
	}
	if seq, found := mustLoad(ctx, t, st); !found || seq != 10 {
		t.Fatalf("Load = %d, %v; want 10 (commits never go backwards)", seq, found)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	again := s.open(ctx, t, key, s.ttl())
	if seq, found := mustLoad(ctx, t, again); !found || seq != 10 {
		t.Fatalf("after reopen Load = %d, %v; want 10", seq, found)
	}
	if err := again.Commit(ctx, bridge.Checkpoint{Sequence: 3}); err != nil {
		t.Fatalf("Commit behind: %v", err)
	}
	if seq, _ := mustLoad(ctx, t, again); seq != 10 {
		t.Fatalf("Load after a commit behind = %d, want 10", seq)
	}
}

// closeReleases: with a lease far longer than the test's deadline, the
// next Open succeeds only if Close released the key.
func (s *storeSuite) closeReleases(t *testing.T) {
	key := s.key()
	first := s.open(storeContext(t, 30*time.Second), t, key, time.Hour)
	if err := first.Commit(storeContext(t, 30*time.Second), bridge.Checkpoint{Sequence: 4}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := storeContext(t, 20*time.Second)
	next := s.open(ctx, t, key, time.Hour)
	if seq, found := mustLoad(ctx, t, next); !found || seq != 4 {
		t.Fatalf("Load after a release = %d, %v; want 4", seq, found)
	}
}

// keyHeld: a second Open of a live key fails naming the holder.
func (s *storeSuite) keyHeld(t *testing.T) {
	ctx := storeContext(t, 30*time.Second)
	key := s.key()
	first := s.open(ctx, t, key, s.ttl())
	_, err := s.tryOpen(ctx, t, key, s.ttl())
	s.checkHeld(t, err, first)
}

func (s *storeSuite) checkHeld(t *testing.T, err error, holder bridge.Store) {
	t.Helper()
	if !errors.Is(err, bridge.ErrKeyHeld) {
		t.Fatalf("second Open of a held key = %v, want an error wrapping bridge.ErrKeyHeld", err)
	}
	if s.cfg.TTL == 0 {
		return
	}
	var held *lease.HeldError
	if !errors.As(err, &held) {
		t.Fatalf("second Open = %v, want a *lease.HeldError", err)
	}
	if o, ok := holder.(interface{ Owner() string }); ok && held.Holder != o.Owner() {
		t.Fatalf("held error names %q, want the holder %q: %v", held.Holder, o.Owner(), err)
	}
}

// refreshKeeps: a live holder still holds its key after several TTLs.
func (s *storeSuite) refreshKeeps(t *testing.T) {
	ctx := storeContext(t, 30*time.Second)
	key := s.key()
	first := s.open(ctx, t, key, s.cfg.TTL)
	// Elapsed time is what is tested here: the refresher must outlast it.
	select {
	case <-time.After(3 * s.cfg.TTL):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	_, err := s.tryOpen(ctx, t, key, s.cfg.TTL)
	s.checkHeld(t, err, first)
	if err := first.Commit(ctx, bridge.Checkpoint{Sequence: 2}); err != nil {
		t.Fatalf("holder's Commit after the second Open failed: %v", err)
	}
}

// abandoned: a key whose holder stopped refreshing is taken over after
// the TTL with its checkpoint, and the old holder is fenced.
func (s *storeSuite) abandoned(t *testing.T) {
	if s.cfg.Abandon == nil {
		t.Fatal("StoreSuiteConfig.Abandon is required with TTL")
	}
	ctx := storeContext(t, 30*time.Second)
	key := s.key()
	first := s.open(ctx, t, key, s.cfg.TTL)
	if err := first.Commit(ctx, bridge.Checkpoint{Sequence: 8}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	s.cfg.Abandon(first)
	next := s.open(ctx, t, key, s.cfg.TTL)
	if seq, found := mustLoad(ctx, t, next); !found || seq != 8 {
		t.Fatalf("taken over: Load = %d, %v; want 8", seq, found)
	}
	if err := next.Commit(ctx, bridge.Checkpoint{Sequence: 9}); err != nil {
		t.Fatalf("new holder's Commit: %v", err)
	}
	if err := first.Commit(ctx, bridge.Checkpoint{Sequence: 20}); !errors.Is(err, bridge.ErrKeyHeld) {
		t.Fatalf("old holder's Commit after the take-over = %v, want bridge.ErrKeyHeld", err)
	}
	if seq, _ := mustLoad(ctx, t, next); seq != 9 {
		t.Fatalf("Load after the old holder's commit = %d, want 9", seq)
	}
}
