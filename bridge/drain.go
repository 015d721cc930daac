package bridge

import (
	"context"
	"time"
)

// drainState is the state of a drain (Drain was called, or Run's context
// was cancelled): input is no longer taken and the window is drained on a
// context of its own until it is empty or the drain ends.
type drainState struct {
	active  bool            // input is no longer taken
	expired bool            // the drain context ended: stop waiting
	ctxSeen bool            // Run's context was seen cancelled
	done    <-chan struct{} // the drain context's Done (nil before)
	cancel  context.CancelFunc
	// deadline is the deadline of the drain and the final commit (zero:
	// none); timer ends the drain a reserve before it; watches stop the
	// context.AfterFuncs that end it with a Drain context.
	deadline time.Time
	timer    *time.Timer
	watches  []func() bool
}

// release frees the drain's context, timer and watches.
func (d *drainState) release() {
	if d.cancel != nil {
		d.cancel()
	}
	if d.timer != nil {
		d.timer.Stop()
	}
	for _, stop := range d.watches {
		stop()
	}
}

// maxCommitReserve is the most of a drain deadline kept for the final
// commit (a fifth of the time left when that is less).
const maxCommitReserve = time.Second

// drainOnCancel starts the drain for a cancelled Run context: the drain
// and the final commit within ShutdownTimeout from now.
func (r *runner) drainOnCancel() {
	r.drain.ctxSeen = true
	r.beginDrain("context cancelled")
	r.setDeadline(time.Now().Add(r.p.cfg.ShutdownTimeout))
}

// takeDrainRequests applies the contexts passed to Drain.
func (r *runner) takeDrainRequests() {
	p := r.p
	p.drainMu.Lock()
	reqs := p.drainReqs
	p.drainReqs = nil
	p.drainMu.Unlock()
	for _, ctx := range reqs {
		r.beginDrain("drain requested")
		if d, ok := ctx.Deadline(); ok {
			r.setDeadline(d)
		}
		r.drain.watches = append(r.drain.watches, context.AfterFunc(ctx, r.drain.cancel))
	}
}

// beginDrain stops taking input; the drain runs on a context detached from
// Run's, cancelled when the drain must end.
func (r *runner) beginDrain(reason string) {
	if r.drain.active {
		return
	}
	r.drain.active = true
	r.p.stop()
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.ctx))
	r.opCtx, r.drain.cancel, r.drain.done = ctx, cancel, ctx.Done()
	r.p.log.Info("bridge.drain.started", "reason", reason, "in_flight", r.tail-r.head)
}

// setDeadline bounds the drain and the final commit by d, unless an
// earlier deadline is set. The drain ends a reserve before d.
func (r *runner) setDeadline(d time.Time) {
	if !r.drain.deadline.IsZero() && !d.Before(r.drain.deadline) {
		return
	}
	r.drain.deadline = d
	left := time.Until(d)
	end := left - min(maxCommitReserve, left/5)
	if r.drain.timer != nil {
		r.drain.timer.Stop()
	}
	r.drain.timer = time.AfterFunc(max(end, 0), r.drain.cancel)
	r.p.log.Info("bridge.drain.deadline", "timeout", left.String(), "drain", max(end, 0).String())
}
