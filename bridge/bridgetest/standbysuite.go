package bridgetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

// handoverBound is how soon a standby must take a released key: the
// release is seen by a watch (or a fast poll), not by the TTL, which the
// handover check sets to an hour.
const handoverBound = time.Second

// standbySuite checks lease.Try and lease.Standby (StoreSuiteConfig.Standby;
// Abandon required; with TTL zero, a store without a lease, time bounds
// use a second and the dead holder's fencing is not checked):
// a try fails at once naming the holder; a standby takes a released key at
// once with its checkpoint (graceful handover), never takes a key whose
// holder is alive, takes an abandoned key within the TTL plus a second,
// and ends when its context does.
func standbySuite(t *testing.T, s *storeSuite) {
	t.Run("TryHeld", s.tryHeld)
	t.Run("Handover", s.handover)
	t.Run("TakeOver", s.standbyTakeOver)
	t.Run("Cancel", s.standbyCancel)
}

// opened is the result of an Open run in the background.
type opened struct {
	st  bridge.Store
	err error
	at  time.Time
}

// openAsync opens key with lc in the background.
func (s *storeSuite) openAsync(ctx context.Context, t *testing.T, key string, lc lease.Config) <-chan opened {
	t.Helper()
	ch, done := make(chan opened, 1), make(chan opened, 1)
	go func() {
		st, err := s.cfg.Open(ctx, key, lc)
		o := opened{st, err, time.Now()}
		ch <- o
		done <- o
	}()
	t.Cleanup(func() {
		if o := <-done; o.err == nil {
			_ = o.st.Close()
		}
	})
	return ch
}

// stillWaiting fails the test when the standby returns within d.
func stillWaiting(t *testing.T, ch <-chan opened, d time.Duration, why string) {
	t.Helper()
	select {
	case o := <-ch:
		t.Fatalf("standby Open returned (%v) while %s", o.err, why)
	case <-time.After(d): // elapsed time is what is tested: the standby must outwait it
	}
}

func (s *storeSuite) tryHeld(t *testing.T) {
	ctx := storeContext(t, 30*time.Second)
	key := s.key()
	holder := s.open(ctx, t, key, s.cfg.TTL)
	start := time.Now()
	_, err := s.openMode(ctx, t, key, lease.Config{TTL: time.Hour, Mode: lease.Try})
	if took := time.Since(start); took > handoverBound {
		t.Errorf("a try took %v, want at once", took)
	}
	s.checkHeld(t, err, holder)
	var held *lease.HeldError
	if errors.As(err, &held) && s.cfg.TTL > 0 && (held.LapsesBy.Before(start) || held.LapsesBy.After(time.Now().Add(time.Hour))) {
		t.Errorf("LapsesBy %v: want within the TTL from the try", held.LapsesBy)
	}
	// A free key is taken by a try.
	if err := holder.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.openMode(ctx, t, key, lease.Config{TTL: s.ttl(), Mode: lease.Try}); err != nil {
		t.Fatalf("try on a released key: %v", err)
	}
}

// handover: the holder commits 42 and closes; a standby waiting with an
// hour's TTL takes the key at once and loads 42.
func (s *storeSuite) handover(t *testing.T) {
	ctx := storeContext(t, 30*time.Second)
	key := s.key()
	holder := s.open(ctx, t, key, time.Hour)
	ch := s.openAsync(ctx, t, key, lease.Config{TTL: time.Hour, Mode: lease.Standby})
	stillWaiting(t, ch, 200*time.Millisecond, "the holder is open")
	if err := holder.Commit(ctx, bridge.Checkpoint{Sequence: 42}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := holder.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed := time.Now()
	var o opened
	select {
	case o = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the standby did not take the released key")
	}
	if o.err != nil {
		t.Fatalf("standby Open: %v", o.err)
	}
	if took := o.at.Sub(closed); took > handoverBound {
		t.Errorf("the standby took the released key after %v, want under %v", took, handoverBound)
	}
	if seq, found := mustLoad(ctx, t, o.st); !found || seq != 42 {
		t.Fatalf("standby Load = %d, %v; want 42", seq, found)
	}
	if err := o.st.Commit(ctx, bridge.Checkpoint{Sequence: 43}); err != nil {
		t.Fatalf("standby Commit: %v", err)
	}
}

// standbyTakeOver: a standby outwaits a live holder (several TTLs) and
// takes the key within the TTL plus a second once the holder is abandoned.
func (s *storeSuite) standbyTakeOver(t *testing.T) {
	ctx := storeContext(t, 30*time.Second)
	key := s.key()
	ttl := 2 * s.ttl() // a holder stalled for a short TTL on a loaded machine would lose its key
	holder := s.open(ctx, t, key, ttl)
	if err := holder.Commit(ctx, bridge.Checkpoint{Sequence: 7}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	ch := s.openAsync(ctx, t, key, lease.Config{TTL: ttl, Mode: lease.Standby})
	stillWaiting(t, ch, 3*ttl, "the holder refreshes its key")
	s.cfg.Abandon(holder)
	died := time.Now()
	var o opened
	select {
	case o = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the standby did not take the abandoned key")
	}
	if o.err != nil {
		t.Fatalf("standby Open: %v", o.err)
	}
	if took := o.at.Sub(died); took > ttl+time.Second {
		t.Errorf("taken over %v after the holder died, want at most TTL %v + 1s", took, ttl)
	}
	if seq, found := mustLoad(ctx, t, o.st); !found || seq != 7 {
		t.Fatalf("taken over: Load = %d, %v; want 7", seq, found)
	}
	if s.cfg.TTL == 0 {
		return // a store without a lease: a dead holder commits nothing
	}
	if err := holder.Commit(ctx, bridge.Checkpoint{Sequence: 20}); !errors.Is(err, bridge.ErrKeyHeld) {
		t.Fatalf("old holder's Commit after the take-over = %v, want bridge.ErrKeyHeld", err)
	}
}

// standbyCancel: a standby ends with its context.
func (s *storeSuite) standbyCancel(t *testing.T) {
	ctx := storeContext(t, 30*time.Second)
	key := s.key()
	s.open(ctx, t, key, s.ttl())
	wctx, cancel := context.WithCancel(ctx)
	ch := s.openAsync(wctx, t, key, lease.Config{TTL: s.ttl(), Mode: lease.Standby})
	stillWaiting(t, ch, s.ttl(), "the holder refreshes its key")
	cancel()
	canceled := time.Now()
	select {
	case o := <-ch:
		if o.err == nil {
			t.Fatal("a cancelled standby took the key")
		}
		if !errors.Is(o.err, context.Canceled) {
			t.Errorf("cancelled standby: %v, want context.Canceled", o.err)
		}
		if took := o.at.Sub(canceled); took > handoverBound {
			t.Errorf("the standby ended %v after its context, want at once", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled standby did not return")
	}
}
