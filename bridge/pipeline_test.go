package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

type fixture struct {
	sink  *manualSink
	store *faultStore
	mem   interface {
		Checkpoint(string) (bridge.Checkpoint, bool)
	}
	m    *testMetrics
	p    *bridge.Pipeline
	ctx  context.Context
	stop context.CancelFunc
	wait func() error
}

func newFixture(t *testing.T, cfg bridge.PipelineConfig) *fixture {
	t.Helper()
	return newFixtureStore(t, cfg, nil)
}

// newFixtureStore is newFixture with the pipeline's store wrapped by wrap
// (nil: not wrapped); f.store and f.mem stay the store underneath.
func newFixtureStore(t *testing.T, cfg bridge.PipelineConfig, wrap func(bridge.Store) bridge.Store) *fixture {
	t.Helper()
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 16
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = time.Hour // commits on shutdown only, unless a test wants them
	}
	if cfg.Backoff == nil {
		cfg.Backoff = fastBackoff
	}
	f := &fixture{sink: newManualSink(cfg.MaxInFlight), m: newTestMetrics()}
	store, mem := memStore(t)
	f.store, f.mem = store, mem
	if cfg.Start != nil {
		if err := store.Store.Commit(context.Background(), *cfg.Start); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Metrics = f.m.Metrics
	var ps bridge.Store = f.store
	if wrap != nil {
		ps = wrap(f.store)
	}
	p, err := bridge.NewPipeline(f.sink, ps, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	f.ctx, f.stop = context.WithCancel(context.Background())
	t.Cleanup(f.stop)
	f.wait = started(f.ctx, t, p)
	return f
}

func (f *fixture) submit(t *testing.T, seqs ...uint64) {
	t.Helper()
	for _, s := range seqs {
		n := note(s)
		if s%2 == 1 {
			n.Time = time.Now().Add(-time.Minute) // event_age only for these
		}
		if err := f.p.Submit(context.Background(), &n); err != nil {
			t.Fatalf("Submit(%d): %v", s, err)
		}
	}
}

func (f *fixture) committed() uint64 {
	cp, _ := f.mem.Checkpoint("k")
	return cp.Sequence
}

func TestPipelineCommitsAcknowledgedPrefix(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{CheckpointInterval: time.Millisecond})
	f.submit(t, 3, 7, 8, 20) // gaps are normal
	f.sink.expect(t, 3, 7, 8, 20)
	f.sink.ack(3, nil)
	waitFor(t, "commit of 3", func() bool { return f.committed() == 3 })
	f.sink.ack(7, nil)
	waitFor(t, "commit of 7", func() bool { return f.committed() == 7 })
	f.sink.ack(8, nil)
	f.sink.ack(20, nil)
	waitFor(t, "commit of 20", func() bool { return f.committed() == 20 })
	if got := f.p.Status(); got.InFlight != 0 || got.Checkpoint.Sequence != 20 || !got.CheckpointFound || got.Checkpoint.EventID != "mars@20" {
		t.Fatalf("status %+v", got)
	}
	f.p.CloseInput()
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if f.m.published.get() != 4 || f.m.latency.get() != 4 || f.m.eventAge.get() != 2 || f.m.cpSeq.get() != 20 || f.m.commits.get() < 1 {
		t.Fatalf("metrics: published %v latency %v event_age %v cpSeq %v commits %v", f.m.published.get(), f.m.latency.get(), f.m.eventAge.get(), f.m.cpSeq.get(), f.m.commits.get())
	}
	// Every commit was monotonic.
	var last uint64
	for _, cp := range f.store.commits {
		if cp.Sequence <= last {
			t.Fatalf("commit %d after %d", cp.Sequence, last)
		}
		last = cp.Sequence
	}
}

func TestPipelineWindowBounded(t *testing.T) {
	const window = 3
	f := newFixture(t, bridge.PipelineConfig{MaxInFlight: window})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var taken uint64
	var err error
	for seq := uint64(1); ; seq++ {
		n := note(seq)
		if err = f.p.Submit(ctx, &n); err != nil {
			break
		}
		taken = seq
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit into a full window: %v", err)
	}
	f.sink.expect(t, 1, 2, 3)
	if len(f.sink.pubs) != 0 || f.p.Status().InFlight != window {
		t.Fatalf("more than %d in flight: %d more publishes, status %+v", window, len(f.sink.pubs), f.p.Status())
	}
	// One ack makes room for exactly one more.
	f.sink.ack(1, nil)
	f.sink.expect(t, 4)
	for s := uint64(2); s <= taken; s++ {
		f.sink.ack(s, nil)
		if s+3 <= taken {
			f.sink.expect(t, s+3)
		}
	}
	f.p.CloseInput()
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if f.committed() != taken {
		t.Fatalf("committed %d, want %d", f.committed(), taken)
	}
}

func TestPipelineSubmitOrder(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{Start: &bridge.Checkpoint{Sequence: 10, EventID: "mars@10"}})
	for _, seq := range []uint64{9, 10} {
		n := note(seq)
		if err := f.p.Submit(context.Background(), &n); !errors.Is(err, bridge.ErrOutOfOrder) || !strings.Contains(err.Error(), "mars@") {
			t.Fatalf("Submit(%d) at or below the start checkpoint: %v", seq, err)
		}
	}
	f.submit(t, 11, 15)
	for _, seq := range []uint64{15, 12} {
		n := note(seq)
		if err := f.p.Submit(context.Background(), &n); !errors.Is(err, bridge.ErrOutOfOrder) {
			t.Fatalf("Submit(%d) after 15: %v", seq, err)
		}
	}
	f.submit(t, 16)
	f.sink.expect(t, 11, 15, 16)
	for _, s := range []uint64{11, 15, 16} {
		f.sink.ack(s, nil)
	}
	f.p.CloseInput()
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	n := note(17)
	if err := f.p.Submit(context.Background(), &n); !errors.Is(err, bridge.ErrInputClosed) {
		t.Fatalf("Submit after CloseInput: %v", err)
	}
	if f.committed() != 16 {
		t.Fatalf("committed %d", f.committed())
	}
}

func TestPipelineNeverCommitsBelowStart(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{Start: &bridge.Checkpoint{Sequence: 50, EventID: "mars@50"}})
	if st := f.p.Status(); st.Checkpoint.Sequence != 50 || !st.CheckpointFound {
		t.Fatalf("status before any commit: %+v", st)
	}
	f.p.CloseInput() // nothing acknowledged: nothing to commit
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if len(f.store.commits) != 0 {
		t.Fatalf("commits %v with nothing acknowledged", f.store.commits)
	}
}

func TestPipelineSinkContract(t *testing.T) {
	tests := []struct {
		name          string
		act           func(f *fixture)
		want          string
		wantCommitted uint64
	}{
		{"wrong sequence", func(f *fixture) { f.sink.ack(2, nil) }, "acknowledgement for mars@2 (sequence 2), expected mars@1", 0},
		{"wrong id", func(f *fixture) { f.sink.acks <- bridge.Ack{Sequence: 1, ID: "diss@1"} }, "expected mars@1", 0},
		{"nothing outstanding", func(f *fixture) { f.sink.ack(1, nil); f.sink.ack(2, nil) }, "nothing outstanding", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, bridge.PipelineConfig{})
			f.submit(t, 0, 1) // 0 is a valid first sequence without a start checkpoint
			f.sink.expect(t, 0, 1)
			f.sink.ack(0, nil)
			tt.act(f)
			err := f.wait()
			if !errors.Is(err, bridge.ErrSinkContract) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run: %v, want ErrSinkContract with %q", err, tt.want)
			}
			if f.committed() != tt.wantCommitted {
				t.Fatalf("committed %d, want %d", f.committed(), tt.wantCommitted)
			}
			if _, found := f.mem.Checkpoint("k"); !found {
				t.Fatal("the acknowledged prefix (0) was not committed")
			}
			n := note(5)
			if err := f.p.Submit(context.Background(), &n); !errors.Is(err, bridge.ErrStopped) {
				t.Fatalf("Submit after a fatal error: %v", err)
			}
		})
	}
}

func TestPipelineRetryRepublishesSuffixInOrder(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{})
	f.submit(t, 1, 2, 3, 4, 5)
	f.sink.expect(t, 1, 2, 3, 4, 5)
	transient := errors.New("nats: timeout")
	f.sink.ack(1, nil)
	f.sink.ack(2, transient)
	f.sink.ack(3, nil)                                 // after the failure: ignored, re-published
	f.sink.ack(4, bridge.Permanent(errors.New("big"))) // ignored too: it is re-published, not rejected
	f.submit(t, 6)                                     // arrives during the failed round: waits
	f.sink.ack(5, nil)
	f.sink.expect(t, 2, 3, 4, 5, 6)
	for s := uint64(2); s <= 6; s++ {
		f.sink.ack(s, nil)
	}
	f.p.CloseInput()
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if f.committed() != 6 || f.m.retries.get() != 1 || f.m.sinkErrors.get() != 2 || f.m.rejected["fail"].get() != 0 {
		t.Fatalf("committed %d retries %v sinkErrors %v", f.committed(), f.m.retries.get(), f.m.sinkErrors.get())
	}
}

func TestPipelineRetryBacksOffAndRepeats(t *testing.T) {
	var attempts []int
	f := newFixture(t, bridge.PipelineConfig{Backoff: func(a int) time.Duration { attempts = append(attempts, a); return 0 }})
	f.submit(t, 1, 2)
	f.sink.expect(t, 1, 2)
	f.sink.ack(1, errors.New("down"))
	f.sink.ack(2, nil)
	f.sink.expect(t, 1, 2)
	f.sink.ack(1, errors.New("still down"))
	f.sink.ack(2, errors.New("still down"))
	f.sink.expect(t, 1, 2)
	f.sink.ack(1, nil)
	f.sink.ack(2, errors.New("flaky"))
	f.sink.expect(t, 2)
	f.sink.ack(2, nil)
	f.p.CloseInput()
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	// The attempt counter restarts after a success.
	if fmt.Sprint(attempts) != "[1 2 1]" || f.committed() != 2 || f.m.retries.get() != 3 {
		t.Fatalf("attempts %v committed %d retries %v", attempts, f.committed(), f.m.retries.get())
	}
}

func TestPipelineSynchronousPublishErrors(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{OnReject: bridge.RejectSkip})
	var failed3, rejected5 bool
	f.sink.pubErr = func(n *bridge.Notification) error {
		switch {
		case n.Sequence == 3 && !failed3:
			failed3 = true
			return errors.New("reconnecting")
		case n.Sequence == 5 && !rejected5:
			rejected5 = true
			return bridge.Permanent(errors.New("maximum payload exceeded"))
		}
		return nil
	}
	f.submit(t, 1, 2, 3, 4)
	// 3 was not accepted: nothing after it is published until 1 and 2 are
	// acknowledged and the round is retried.
	f.sink.expect(t, 1, 2, 3)
	f.sink.ack(1, nil)
	f.sink.ack(2, nil)
	f.sink.expect(t, 3, 4)
	f.submit(t, 5, 6)
	f.sink.expect(t, 5) // rejected synchronously: 6 waits until 3 and 4 are in
	f.sink.ack(3, nil)
	f.sink.ack(4, nil)
	f.sink.expect(t, 6)
	f.sink.ack(6, nil)
	f.p.CloseInput()
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if f.committed() != 6 || f.m.rejected["skip"].get() != 1 || f.m.retries.get() != 1 {
		t.Fatalf("committed %d skip %v retries %v", f.committed(), f.m.rejected["skip"].get(), f.m.retries.get())
	}
}

func TestPipelineRejectPolicies(t *testing.T) {
	reject := bridge.Permanent(errors.New("nats: maximum payload exceeded"))
	tests := []struct {
		policy        bridge.RejectPolicy
		wantCommitted uint64
		wantPublished float64
		wantErr       bool
	}{
		{bridge.RejectFail, 1, 1, true},
		{bridge.RejectDLQ, 3, 2, false},
		{bridge.RejectSkip, 3, 2, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.policy), func(t *testing.T) {
			f := newFixture(t, bridge.PipelineConfig{OnReject: tt.policy})
			dlqFailures := 2
			f.sink.dlF = func(bridge.DeadLetter) error {
				if dlqFailures > 0 {
					dlqFailures--
					return errors.New("dlq stream unavailable")
				}
				return nil
			}
			f.submit(t, 1, 2, 3)
			f.sink.expect(t, 1, 2, 3)
			f.sink.ack(1, nil)
			f.sink.ack(2, reject)
			f.sink.ack(3, nil)
			if !tt.wantErr {
				f.p.CloseInput()
			}
			err := f.wait()
			var rej *bridge.RejectedError
			if tt.wantErr {
				if !errors.As(err, &rej) || rej.Sequence != 2 || rej.ID != "mars@2" || !bridge.IsPermanent(err) ||
					!strings.HasPrefix(err.Error(), "OnReject: fail: ") || !strings.Contains(err.Error(), "maximum payload exceeded") {
					t.Fatalf("Run: %v, want a RejectedError for mars@2", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if f.committed() != tt.wantCommitted {
				t.Fatalf("committed %d, want %d", f.committed(), tt.wantCommitted)
			}
			if got := f.m.rejected[string(tt.policy)].get(); got != 1 {
				t.Fatalf("rejected{%s} = %v", tt.policy, got)
			}
			dls := f.sink.deadLetters()
			if tt.policy == bridge.RejectDLQ {
				if len(dls) != 1 || dls[0].Kind != bridge.DeadLetterRejected || dls[0].Notification.ID != "mars@2" ||
					string(dls[0].Raw) != `{"id":"mars@2"}` || !strings.Contains(dls[0].Reason, "maximum payload") || f.m.deadLettered.get() != 1 {
					t.Fatalf("dead letters %+v", dls)
				}
			} else if len(dls) != 0 {
				t.Fatalf("dead letters under %s: %+v", tt.policy, dls)
			}
			if f.m.published.get() != tt.wantPublished {
				t.Fatalf("published %v", f.m.published.get())
			}
		})
	}
}

func TestPipelineDLQPermanentFailureStops(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{OnReject: bridge.RejectDLQ})
	f.sink.dlF = func(bridge.DeadLetter) error { return bridge.Permanent(errors.New("dlq subject invalid")) }
	f.submit(t, 1, 2)
	f.sink.expect(t, 1, 2)
	f.sink.ack(1, nil)
	f.sink.ack(2, bridge.Permanent(errors.New("too big")))
	err := f.wait()
	var rej *bridge.RejectedError
	if !errors.As(err, &rej) || rej.Sequence != 2 || !strings.Contains(err.Error(), "dlq subject invalid") {
		t.Fatalf("Run: %v", err)
	}
	if f.committed() != 1 {
		t.Fatalf("committed %d", f.committed())
	}
}

func TestPipelineGracefulDrain(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{ShutdownTimeout: time.Minute})
	f.submit(t, 1, 2, 3)
	f.sink.expect(t, 1, 2, 3)
	f.sink.ack(1, nil)
	f.stop()
	waitFor(t, "the pipeline to stop taking input", func() bool { return f.p.Status().Stopped })
	n := note(4)
	if err := f.p.Submit(context.Background(), &n); !errors.Is(err, bridge.ErrStopped) {
		t.Fatalf("Submit while draining: %v", err)
	}
	// The drain retries failures.
	f.sink.ack(2, errors.New("blip"))
	f.sink.ack(3, nil)
	f.sink.expect(t, 2, 3)
	f.sink.ack(2, nil)
	f.sink.ack(3, nil)
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if f.committed() != 3 {
		t.Fatalf("committed %d, want 3", f.committed())
	}
}

// Notifications Submit had already queued (read from aviso before the stop)
// are still published and committed by the drain.
func TestPipelineDrainDeliversQueuedInput(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{MaxInFlight: 2, ShutdownTimeout: time.Minute})
	f.submit(t, 1, 2, 3, 4) // 1 and 2 in the window, 3 and 4 queued in front of it
	f.sink.expect(t, 1, 2)
	f.stop()
	waitFor(t, "the pipeline to stop taking input", func() bool { return f.p.Status().Stopped })
	f.sink.ack(1, nil)
	f.sink.ack(2, nil)
	f.sink.expect(t, 3, 4)
	f.sink.ack(3, nil)
	f.sink.ack(4, nil)
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if f.committed() != 4 {
		t.Fatalf("committed %d, want 4", f.committed())
	}
}

func TestPipelineDrainTimeout(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{ShutdownTimeout: 20 * time.Millisecond})
	f.submit(t, 1, 2, 3)
	f.sink.expect(t, 1, 2, 3)
	f.sink.ack(1, nil)
	f.stop() // 2 and 3 are never acknowledged
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if f.committed() != 1 {
		t.Fatalf("committed %d, want 1", f.committed())
	}
}

func TestPipelineCloseInputDrainsWithoutTimeout(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{ShutdownTimeout: time.Millisecond})
	f.submit(t, 1, 2)
	f.p.CloseInput()
	f.sink.expect(t, 1, 2)
	f.sink.ack(1, errors.New("blip")) // longer than the shutdown timeout: does not apply
	f.sink.ack(2, nil)
	f.sink.expect(t, 1, 2)
	f.sink.ack(1, nil)
	f.sink.ack(2, nil)
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if f.committed() != 2 {
		t.Fatalf("committed %d", f.committed())
	}
}

func TestPipelineCommitFailuresAreRetried(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{CheckpointInterval: time.Millisecond})
	failures := 0
	f.store.setFail(func(bridge.Checkpoint) error {
		if failures < 3 {
			failures++
			return errors.New("disk full")
		}
		return nil
	})
	f.submit(t, 1)
	f.sink.expect(t, 1)
	f.sink.ack(1, nil)
	waitFor(t, "a commit after failures", func() bool { return f.committed() == 1 })
	if f.m.cpErrors.get() != 3 {
		t.Fatalf("checkpoint errors %v", f.m.cpErrors.get())
	}
	f.p.CloseInput()
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
}

func TestPipelineKeyHeldIsFatal(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{CheckpointInterval: time.Millisecond})
	f.store.setFail(func(bridge.Checkpoint) error {
		return fmt.Errorf("kv bucket aviso_bridge: %w", bridge.ErrKeyHeld)
	})
	f.submit(t, 1)
	f.sink.expect(t, 1)
	f.sink.ack(1, nil)
	if err := f.wait(); !errors.Is(err, bridge.ErrKeyHeld) {
		t.Fatalf("Run: %v", err)
	}
	if f.committed() != 0 || len(f.store.commits) != 1 {
		t.Fatalf("commits after ErrKeyHeld: %v", f.store.commits)
	}
}

func TestPipelineFinalCommitFailure(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{CommitTimeout: 20 * time.Millisecond})
	f.store.setFail(func(bridge.Checkpoint) error { return errors.New("read-only file system") })
	f.submit(t, 1)
	f.sink.expect(t, 1)
	f.sink.ack(1, nil)
	f.p.CloseInput()
	if err := f.wait(); err == nil || !strings.Contains(err.Error(), "final checkpoint commit of mars@1") {
		t.Fatalf("Run: %v", err)
	}
}

func TestPipelineStatus(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	f := newFixture(t, bridge.PipelineConfig{Now: clock})
	st := f.p.Status()
	if st.InFlight != 0 || st.CheckpointFound || !st.LastAck.IsZero() || !st.OldestUnacked.IsZero() || st.Stalled(time.Second) {
		t.Fatalf("idle status %+v", st)
	}
	f.submit(t, 1, 2)
	f.sink.expect(t, 1, 2)
	waitFor(t, "in flight 2", func() bool { return f.p.Status().InFlight == 2 })
	// Status.At comes from the injected clock; it is read without locks.
	st = f.p.Status()
	if !st.OldestUnacked.Equal(now) || st.Stalled(time.Second) {
		t.Fatalf("status %+v", st)
	}
	st.At = now.Add(2 * time.Second)
	if !st.Stalled(time.Second) {
		t.Fatal("not stalled 2s after the oldest submit with nothing acknowledged")
	}
	f.sink.ack(1, nil)
	waitFor(t, "in flight 1", func() bool { return f.p.Status().InFlight == 1 })
	st = f.p.Status()
	if !st.LastAck.Equal(now) || st.Stalled(time.Second) {
		t.Fatalf("status after ack %+v", st)
	}
	if f.m.inFlight.get() != 1 || f.m.lastAck.get() != 1000 {
		t.Fatalf("metrics in_flight %v last_ack %v", f.m.inFlight.get(), f.m.lastAck.get())
	}
	f.sink.ack(2, nil)
	f.p.CloseInput()
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if st := f.p.Status(); !st.Stopped || st.Checkpoint.Sequence != 2 || st.InFlight != 0 {
		t.Fatalf("final status %+v", st)
	}
}

func TestPipelineDeadLetterPassthrough(t *testing.T) {
	f := newFixture(t, bridge.PipelineConfig{})
	calls := 0
	f.sink.dlF = func(bridge.DeadLetter) error {
		calls++
		if calls < 3 {
			return errors.New("timeout")
		}
		return nil
	}
	dl := bridge.DeadLetter{Kind: bridge.DeadLetterMalformed, Raw: []byte("{bad"), Event: "notification", Reason: "invalid JSON"}
	if err := f.p.DeadLetter(context.Background(), dl); err != nil {
		t.Fatal(err)
	}
	if got := f.sink.deadLetters(); len(got) != 1 || string(got[0].Raw) != "{bad" || calls != 3 || f.m.deadLettered.get() != 1 || f.m.sinkErrors.get() != 2 {
		t.Fatalf("dead letters %+v calls %d", got, calls)
	}
	f.sink.dlF = func(bridge.DeadLetter) error { return errors.New("down") }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := f.p.DeadLetter(ctx, dl); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DeadLetter until ctx done: %v", err)
	}
	f.sink.dlF = func(bridge.DeadLetter) error { return bridge.Permanent(errors.New("no such subject")) }
	if err := f.p.DeadLetter(context.Background(), dl); !bridge.IsPermanent(err) {
		t.Fatalf("permanent DeadLetter failure: %v", err)
	}
}

func TestNewPipelineValidates(t *testing.T) {
	store, _ := memStore(t)
	sink := newManualSink(1)
	for _, tc := range []struct {
		cfg   bridge.PipelineConfig
		field string
	}{
		{bridge.PipelineConfig{MaxInFlight: -1}, "MaxInFlight"},
		{bridge.PipelineConfig{MaxInFlightBytes: -1}, "MaxInFlightBytes"},
		{bridge.PipelineConfig{CheckpointInterval: -time.Second}, "CheckpointInterval"},
		{bridge.PipelineConfig{ShutdownTimeout: -time.Second}, "ShutdownTimeout"},
		{bridge.PipelineConfig{CommitTimeout: -time.Second}, "CommitTimeout"},
		{bridge.PipelineConfig{OnReject: "drop"}, "OnReject"},
	} {
		_, err := bridge.NewPipeline(sink, store, tc.cfg)
		var fe *bridge.FieldError
		if !errors.As(err, &fe) || fe.Fields[0] != tc.field {
			t.Errorf("NewPipeline(%+v): %v, want a field error naming %s", tc.cfg, err, tc.field)
		}
	}
	if _, err := bridge.NewPipeline(nil, store, bridge.PipelineConfig{}); err == nil {
		t.Error("nil sink accepted")
	}
	p, err := bridge.NewPipeline(sink, store, bridge.PipelineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatalf("Run with a cancelled context: %v", err)
	}
	if err := p.Run(ctx); err == nil {
		t.Fatal("second Run accepted")
	}
}

func TestDefaultBackoff(t *testing.T) {
	for a, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 5: 1600 * time.Millisecond, 8: 10 * time.Second, 100: 10 * time.Second} {
		for range 50 {
			if d := bridge.DefaultBackoff(a); d < want/2 || d > want {
				t.Fatalf("DefaultBackoff(%d) = %v, want in [%v, %v]", a, d, want/2, want)
			}
		}
	}
}
