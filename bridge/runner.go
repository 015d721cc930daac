package bridge

import (
	"context"
	"time"
)

// runner is the state Run's goroutine owns. Positions are counters over
// the receipt order: head <= ack <= pub <= tail, tail-head <= max.
//   - [head, ack): results seen but not yet advanced over (only while a
//     retry round is failing: results at or after fail.pos are ignored);
//   - [ack, pub): handed to the sink, result outstanding;
//   - [pub, tail): in the window, not handed to the sink (yet, or again).
type runner struct {
	p     *Pipeline
	ctx   context.Context // Run's
	opCtx context.Context // Run's, or the drain context once draining

	ring                 []slot
	mask                 uint64
	max                  uint64
	head, ack, pub, tail uint64
	in                   <-chan Notification
	acks                 <-chan Ack
	inputOpen            bool
	// syncPending: a Publish was refused and its error waits, at its
	// position, for the results before it.
	syncPending bool
	fatal       error

	fail    failRound
	drain   drainState
	commits commitState
}

func newRunner(ctx context.Context, p *Pipeline) *runner {
	size := uint64(1)
	for size < uint64(p.cfg.MaxInFlight) {
		size <<= 1
	}
	r := &runner{
		p:         p,
		ctx:       ctx,
		opCtx:     ctx,
		ring:      make([]slot, size),
		mask:      size - 1,
		max:       uint64(p.cfg.MaxInFlight),
		in:        p.in,
		acks:      p.sink.Acks(),
		inputOpen: true,
		fail:      failRound{timer: stoppedTimer()},
		commits: commitState{
			timer: stoppedTimer(),
			req:   make(chan commitRequest, 1),
			res:   make(chan commitResult, 1),
			done:  make(chan struct{}),
		},
	}
	if st := p.cfg.Start; st != nil {
		r.commits.wm, r.commits.wmFound = *st, true
		r.commits.committed, r.commits.committedFound = *st, true
		p.m.CheckpointSequence.Set(float64(st.Sequence))
	}
	p.m.InFlight.Set(0)
	go r.committer()
	return r
}

// stoppedTimer returns a timer that is not running, for Reset.
func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

func (r *runner) run() error {
	defer r.drain.release()
	r.takeDrainRequests() // Drain called before Run
	for !r.finished() {
		r.step()
	}
	return r.finish()
}

// loopChans are the channels the loop waits on in the runner's present
// state; a nil channel is not selected.
type loopChans struct {
	in         <-chan Notification
	ctxDone    <-chan struct{}
	backoff    <-chan time.Time
	commitTick <-chan time.Time
	commitRes  <-chan commitResult
}

func (r *runner) chans() loopChans {
	var c loopChans
	// While draining, what Submit had already queued is still taken (it
	// was read from aviso before the stop), but nothing more.
	if r.inputOpen && r.tail-r.head < r.max && (!r.drain.active || len(r.in) > 0) {
		c.in = r.in
	}
	if !r.drain.ctxSeen {
		c.ctxDone = r.ctx.Done()
	}
	if r.fail.backingOff {
		c.backoff = r.fail.timer.C
	}
	if r.commits.timerArmed {
		c.commitTick = r.commits.timer.C
	}
	if r.commits.running {
		c.commitRes = r.commits.res
	}
	return c
}

// step waits for one event and handles it.
func (r *runner) step() {
	c := r.chans()
	select {
	case n, ok := <-c.in:
		if !ok {
			r.inputOpen = false
			return
		}
		r.take(&n)
	case a := <-r.acks:
		r.onAcks(&a)
	case <-c.backoff:
		r.fail.backingOff = false
		r.retry()
	case <-c.commitTick:
		r.onCommitTick()
	case res := <-c.commitRes:
		r.onCommitResult(res)
	case <-c.ctxDone:
		r.drainOnCancel()
	case <-r.p.drainSig:
		r.takeDrainRequests()
	case <-r.drain.done:
		r.drain.expired = true
	}
}

func (r *runner) finished() bool {
	switch {
	case r.fatal != nil, r.drain.expired:
		return true
	case !r.inputOpen:
		return r.head == r.tail
	case r.drain.active:
		return r.head == r.tail && len(r.in) == 0
	}
	return false
}
