package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// commitState is the watermark, the committed position, and the
// committer goroutine that runs Store.Commit off the loop.
type commitState struct {
	wm, committed           Checkpoint
	wmFound, committedFound bool
	timer                   *time.Timer // CheckpointInterval after an advance
	timerArmed              bool
	due                     bool               // the timer fired while a commit was running
	running                 bool               // a commit is with the committer
	cancel                  context.CancelFunc // ends the running commit
	req                     chan commitRequest
	res                     chan commitResult
	done                    chan struct{} // closed when the committer returns
}

type commitRequest struct {
	ctx context.Context
	cp  Checkpoint
}

type commitResult struct {
	cp  Checkpoint
	err error
	// interrupted: the request's context ended (shutdown), so err may
	// only say that.
	interrupted bool
}

// committer runs Store.Commit off the pipeline's goroutine, so a slow
// fsync or a remote store never stalls acknowledgements.
func (r *runner) committer() {
	defer close(r.commits.done)
	for req := range r.commits.req {
		err := r.p.store.Commit(req.ctx, req.cp)
		r.commits.res <- commitResult{cp: req.cp, err: err, interrupted: req.ctx.Err() != nil}
	}
}

// onCommitTick starts a commit when CheckpointInterval has passed since
// an advance, or marks one due behind the running commit.
func (r *runner) onCommitTick() {
	r.commits.timerArmed = false
	if r.commits.running {
		r.commits.due = true
		return
	}
	r.startCommit()
}

func (r *runner) startCommit() {
	if r.commits.running || !r.commits.wmFound || (r.commits.committedFound && r.commits.wm.Sequence <= r.commits.committed.Sequence) {
		r.commits.due = false
		return
	}
	cp := r.commits.wm
	cp.UpdatedAt = r.p.now().UTC()
	ctx, cancel := context.WithCancel(r.opCtx)
	r.commits.cancel = cancel
	r.commits.req <- commitRequest{ctx: ctx, cp: cp}
	r.commits.running, r.commits.due = true, false
}

func (r *runner) onCommitResult(res commitResult) {
	r.commits.running = false
	if r.commits.cancel != nil {
		r.commits.cancel()
		r.commits.cancel = nil
	}
	p := r.p
	if res.err != nil {
		if res.interrupted && errors.Is(res.err, context.Canceled) {
			return // interrupted by shutdown; the final commit follows
		}
		p.commitFailed(res.err)
		p.log.Warn("bridge.checkpoint.failed", "sequence", res.cp.Sequence, "event_id", res.cp.EventID, "error", res.err.Error())
		if errors.Is(res.err, ErrKeyHeld) {
			if r.fatal == nil {
				r.fatal = fmt.Errorf("bridge: commit checkpoint %s: %w", res.cp.EventID, res.err)
			}
			return
		}
		if !r.commits.timerArmed {
			r.commits.timer.Reset(p.cfg.CheckpointInterval)
			r.commits.timerArmed = true
		}
		return
	}
	r.commits.committed, r.commits.committedFound = res.cp, true
	cp := res.cp
	p.stCheckpoint.Store(&cp)
	p.stCommitFail.Store(nil)
	p.m.CheckpointCommits.Inc()
	p.m.CheckpointSequence.Set(float64(cp.Sequence))
	p.log.Debug("bridge.checkpoint.committed", "sequence", cp.Sequence, "event_id", cp.EventID)
	if r.commits.due {
		r.startCommit()
	}
}

// finish stops the committer and makes the final commit, both within the
// drain deadline when there is one (CommitTimeout otherwise).
func (r *runner) finish() error {
	p := r.p
	p.stop()
	var ctx context.Context
	var cancel context.CancelFunc
	if !r.drain.deadline.IsZero() {
		ctx, cancel = context.WithDeadline(context.WithoutCancel(r.ctx), r.drain.deadline)
	} else {
		ctx, cancel = context.WithTimeout(context.WithoutCancel(r.ctx), p.cfg.CommitTimeout)
	}
	defer cancel()
	if r.drain.expired {
		p.log.Warn("bridge.drain.timeout", "in_flight", r.tail-r.head)
	}
	var err error
	if r.commits.running {
		r.commits.due = false
		if r.drain.expired {
			// The final commit supersedes it; a stalled store must not
			// take the time left.
			r.commits.cancel()
		}
		select {
		case res := <-r.commits.res:
			r.onCommitResult(res)
		case <-ctx.Done():
			// The committer goroutine is left behind (a store that ignores
			// its context), and no second commit may run beside it.
			r.commits.cancel()
			close(r.commits.req)
			err = fmt.Errorf("bridge: checkpoint store: a commit did not return by the shutdown deadline: %w", ctx.Err())
			p.commitFailed(err)
			p.log.Info("bridge.pipeline.stopped", "checkpoint_sequence", r.commits.committed.Sequence, "checkpoint_found", r.commits.committedFound, "in_flight", r.tail-r.head)
			return errors.Join(r.fatal, err)
		}
	}
	r.commits.timer.Stop()
	r.fail.timer.Stop()
	close(r.commits.req)
	<-r.commits.done
	err = r.fatal
	if !errors.Is(err, ErrKeyHeld) {
		if cerr := r.finalCommit(ctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	p.log.Info("bridge.pipeline.stopped", "checkpoint_sequence", r.commits.committed.Sequence, "checkpoint_found", r.commits.committedFound, "in_flight", r.tail-r.head)
	return err
}

// finalCommit commits the watermark, retrying until ctx is done.
func (r *runner) finalCommit(ctx context.Context) error {
	p := r.p
	if !r.commits.wmFound || (r.commits.committedFound && r.commits.wm.Sequence <= r.commits.committed.Sequence) {
		return nil
	}
	cp := r.commits.wm
	_, err := p.retry(ctx, func(int) (bool, error) {
		cp.UpdatedAt = p.now().UTC()
		err := p.store.Commit(ctx, cp)
		if err == nil {
			return false, nil
		}
		p.commitFailed(err)
		p.log.Warn("bridge.checkpoint.failed", "sequence", cp.Sequence, "event_id", cp.EventID, "final", true, "error", err.Error())
		return !errors.Is(err, ErrKeyHeld) && ctx.Err() == nil, err
	}, func(int, time.Duration, error) {})
	if err != nil {
		return fmt.Errorf("bridge: final checkpoint commit of %s (sequence %d): %w", cp.EventID, cp.Sequence, err)
	}
	r.onCommitResult(commitResult{cp: cp})
	return nil
}
