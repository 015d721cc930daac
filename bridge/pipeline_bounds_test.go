package bridge_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// sized is note(seq) with a CloudEvent of size bytes (NotificationSize:
// twice that, for the sink's copy).
func sized(seq uint64, size int) bridge.Notification {
	n := note(seq)
	n.CloudEvent = []byte(`{"id":"` + n.ID + `","data":"` + strings.Repeat("x", size) + `"}`)
	n.CloudEvent = n.CloudEvent[len(n.CloudEvent)-size:]
	return n
}

// submitUntilBlocked submits notifications of size bytes from seq on until
// Submit blocks (for 100 ms) and returns the last sequence taken.
func submitUntilBlocked(t *testing.T, p *bridge.Pipeline, seq uint64, size int) uint64 {
	t.Helper()
	taken := seq - 1
	for ; ; seq++ {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		n := sized(seq, size)
		err := p.Submit(ctx, &n)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return taken
		}
		if err != nil {
			t.Fatalf("Submit(%d): %v", seq, err)
		}
		taken = seq
		if seq > 1000 {
			t.Fatal("Submit never blocked")
		}
	}
}

// The byte bound covers the window and the input buffer in front of it:
// with room for 256 notifications by count, 10 of 50 bytes (100 with the
// sink's copy) fill 1000.
func TestPipelineByteBound(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{MaxInFlight: 256, MaxInFlightBytes: 1000})
	if taken := submitUntilBlocked(t, f.p, 1, 50); taken != 10 {
		t.Fatalf("took %d notifications of 50 bytes (100 counted) under a 1000-byte bound, want 10", taken)
	}
	f.sink.expect(t, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	if st := f.p.Status(); st.InFlightBytes != 1000 || st.InFlight != 10 {
		t.Fatalf("status %+v, want 10 notifications and 1000 bytes in flight", st)
	}
	// Acknowledging 3 makes room for exactly 3 more.
	for s := uint64(1); s <= 3; s++ {
		f.sink.ack(s, nil)
	}
	waitFor(t, "700 bytes in flight", func() bool { return f.p.Status().InFlightBytes == 700 })
	if taken := submitUntilBlocked(t, f.p, 11, 50); taken != 13 {
		t.Fatalf("took up to %d after 3 acknowledgements, want 13", taken)
	}
	f.sink.expect(t, 11, 12, 13)
	for s := uint64(4); s <= 13; s++ {
		f.sink.ack(s, nil)
	}
	// Larger than the bound: passes once nothing else is in flight, alone.
	waitFor(t, "nothing in flight", func() bool { return f.p.Status().InFlightBytes == 0 })
	big := sized(14, 2500)
	if err := f.p.Submit(context.Background(), &big); err != nil {
		t.Fatalf("Submit of a notification larger than the bound: %v", err)
	}
	f.sink.expect(t, 14)
	if taken := submitUntilBlocked(t, f.p, 15, 1); taken != 14 {
		t.Fatalf("took up to %d beside a notification larger than the bound, want none", taken)
	}
	f.sink.ack(14, nil)
	f.submit(t, 15)
	f.sink.expect(t, 15)
	f.sink.ack(15, nil)
	f.p.CloseInput()
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if f.committed() != 15 || f.p.Status().InFlightBytes != 0 {
		t.Fatalf("committed %d, status %+v", f.committed(), f.p.Status())
	}
}

// A Submit blocked on the byte bound returns ErrStopped when the pipeline
// stops.
func TestPipelineByteBoundStops(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{MaxInFlightBytes: 100, ShutdownTimeout: 50 * time.Millisecond})
	n := sized(1, 100)
	if err := f.p.Submit(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	f.sink.expect(t, 1)
	errc := make(chan error, 1)
	go func() {
		n := sized(2, 10)
		errc <- f.p.Submit(context.Background(), &n)
	}()
	f.stop()
	select {
	case err := <-errc:
		if !errors.Is(err, bridge.ErrStopped) {
			t.Fatalf("blocked Submit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocked Submit did not return when the pipeline stopped")
	}
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
}

func TestNotificationSize(t *testing.T) {
	for _, tc := range []struct {
		n    bridge.Notification
		want int64
	}{
		{bridge.Notification{CloudEvent: make([]byte, 900), Data: make([]byte, 500), Identifier: make([]byte, 50)}, 1800},
		{bridge.Notification{Data: make([]byte, 500), Identifier: make([]byte, 50)}, 1100},
		{bridge.Notification{}, 0},
	} {
		if got := bridge.NotificationSize(&tc.n); got != tc.want {
			t.Errorf("NotificationSize = %d, want %d", got, tc.want)
		}
	}
}

// blockingStore makes every Commit after the first block until its
// context is done.
type blockingStore struct {
	bridge.Store
	mu    sync.Mutex
	calls int
}

func (s *blockingStore) Commit(ctx context.Context, cp bridge.Checkpoint) error {
	s.mu.Lock()
	s.calls++
	first := s.calls == 1
	s.mu.Unlock()
	if first {
		return s.Store.Commit(ctx, cp)
	}
	<-ctx.Done()
	return ctx.Err()
}

// One deadline bounds the drain and the final commit: with a sink that
// never acknowledges, Run returns once the deadline of the stop passes
// (never after ShutdownTimeout or CommitTimeout, both an hour here), having
// committed exactly the acknowledged prefix. The deadline comes from Drain,
// or from ShutdownTimeout once Run's context is cancelled.
func TestPipelineStopDeadline(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hangStore bool // commits after the first block until their context is done
		viaCancel bool // cancel Run's context (ShutdownTimeout) instead of Drain
	}{
		{"drain deadline, stalled sink", false, false},
		{"drain deadline, stalled sink and store", true, false},
		{"shutdown timeout, stalled sink", false, true},
		{"shutdown timeout, stalled sink and store", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := bridge.PipelineConfig{ShutdownTimeout: time.Hour, CommitTimeout: time.Hour, CheckpointInterval: time.Millisecond}
			if tc.viaCancel {
				cfg.ShutdownTimeout = 300 * time.Millisecond
			}
			var wrap func(bridge.Store) bridge.Store
			if tc.hangStore {
				wrap = func(s bridge.Store) bridge.Store { return &blockingStore{Store: s} }
			}
			f := newFixtureStore(t, cfg, wrap)
			f.submit(t, 1)
			f.sink.expect(t, 1)
			f.sink.ack(1, nil)
			waitFor(t, "commit of 1", func() bool { return f.committed() == 1 })
			f.submit(t, 2, 3)
			f.sink.expect(t, 2, 3)
			f.sink.ack(2, nil) // 3 is never acknowledged
			waitFor(t, "2 acknowledged", func() bool { return f.p.Status().Acknowledged.Sequence == 2 })
			if tc.viaCancel {
				f.stop()
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				t.Cleanup(cancel)
				f.p.Drain(ctx)
			}
			err := f.wait() // fails the test when Run does not return within 20 s
			st := f.p.Status()
			if tc.hangStore {
				if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "mars@2") {
					t.Fatalf("Run with a store that never returns: %v", err)
				}
				if !st.Uncommitted() || st.CommitFailure() == nil || f.committed() != 1 || st.InFlight != 1 {
					t.Fatalf("status %+v (committed %d): want 2 acknowledged, 1 committed, commits failing, 3 in flight", st, f.committed())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.committed() != 2 || st.Uncommitted() || st.InFlight != 1 || !st.Stopped {
				t.Fatalf("committed %d, status %+v: want the acknowledged prefix 2 committed, 3 in flight", f.committed(), st)
			}
		})
	}
}

// A second Drain with a cancelled context (a second signal) ends a drain
// without a deadline at once; the final commit still runs.
func TestPipelineDrainCancelled(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{ShutdownTimeout: time.Hour, CommitTimeout: time.Hour})
	f.submit(t, 1, 2)
	f.sink.expect(t, 1, 2)
	f.sink.ack(1, nil)
	waitFor(t, "1 acknowledged", func() bool { return f.p.Status().Acknowledged.Sequence == 1 })
	f.p.Drain(context.Background())
	waitFor(t, "the drain", func() bool { return f.p.Status().Stopped })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.p.Drain(ctx)
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if f.committed() != 1 {
		t.Fatalf("committed %d, want 1", f.committed())
	}
}

// Status reports failing commits (for /readyz) until a commit succeeds.
func TestPipelineStatusCommitFailing(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	f := newFixture(t, bridge.PipelineConfig{Now: clock, CheckpointInterval: time.Millisecond})
	failing := make(chan struct{})
	var once sync.Once
	f.store.setFail(func(bridge.Checkpoint) error {
		once.Do(func() { close(failing) })
		return errors.New("write checkpoint.json: no space left on device")
	})
	if err := f.p.Status().CommitFailure(); err != nil {
		t.Fatalf("CommitFailure before any commit: %v", err)
	}
	f.submit(t, 1)
	f.sink.expect(t, 1)
	f.sink.ack(1, nil)
	<-failing
	waitFor(t, "a failing commit in the status", func() bool { return f.p.Status().CommitErr != nil })
	mu.Lock()
	now = now.Add(30 * time.Second) // failures go on
	mu.Unlock()
	waitFor(t, "more failures", func() bool { return f.m.cpErrors.get() >= 3 })
	st := f.p.Status()
	err := st.CommitFailure()
	if err == nil || !st.CommitFailingSince.Equal(time.Unix(1000, 0)) || !strings.Contains(err.Error(), "no space left on device") ||
		!strings.Contains(err.Error(), "1970-01-01T00:16:40Z") || !strings.Contains(err.Error(), "30s") {
		t.Fatalf("status %+v, CommitFailure %v: want failing since the first failure", st, err)
	}
	if !st.Uncommitted() {
		t.Fatalf("status %+v: 1 acknowledged, nothing committed, want Uncommitted", st)
	}
	f.store.setFail(nil)
	waitFor(t, "a successful commit", func() bool { return f.committed() == 1 })
	waitFor(t, "the failure cleared", func() bool { return f.p.Status().CommitFailure() == nil })
	if st := f.p.Status(); st.Uncommitted() || !st.CommitFailingSince.IsZero() {
		t.Fatalf("status after a successful commit %+v", st)
	}
	f.p.CloseInput()
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
}
