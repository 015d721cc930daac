package bridge

import (
	"errors"
	"fmt"
	"time"
)

// slot is one window entry.
type slot struct {
	n  Notification
	at int64 // unix nanoseconds when it entered the window
	// size is NotificationSize(&n), released when the slot is advanced.
	size int64
	// syncErr is the error Publish returned for n; it stands in for n's Ack.
	syncErr error
}

// failRound is the state of a retry round: after a retryable failure the
// window waits for every outstanding result, backs off, and re-publishes
// from the failed notification on.
type failRound struct {
	active     bool        // a retryable failure is being handled
	pos        uint64      // position of the failed notification
	err        error       // its error
	attempt    int         // retry rounds since the last success
	timer      *time.Timer // the pause before re-publishing
	backingOff bool        // timer is running
}

// take appends n to the window, plus whatever else is already queued, then
// publishes.
func (r *runner) take(n *Notification) {
	at := r.p.now().UnixNano()
	r.put(n, at)
more:
	for r.tail-r.head < r.max {
		select {
		case n2, ok := <-r.in:
			if !ok {
				r.inputOpen = false
				break more
			}
			r.put(&n2, at)
		default:
			break more
		}
	}
	r.p.stInFlight.Store(int64(r.tail - r.head))
	r.p.m.InFlight.Set(float64(r.tail - r.head))
	r.publish()
}

func (r *runner) put(n *Notification, at int64) {
	s := &r.ring[r.tail&r.mask]
	s.n = *n
	s.at = at
	s.size = NotificationSize(n)
	if r.tail == r.head {
		r.p.stOldest.Store(at)
	}
	r.tail++
}

// publish hands the window's unpublished notifications to the sink, unless
// a failure is being handled.
func (r *runner) publish() {
	for r.pub < r.tail && !r.fail.active && !r.syncPending && r.fatal == nil {
		s := &r.ring[r.pub&r.mask]
		err := r.p.sink.Publish(r.opCtx, &s.n)
		r.pub++
		if err != nil {
			// Not accepted: no Ack follows. The error stands in for the
			// Ack, in order, once the earlier outstanding Acks are in.
			s.syncErr = err
			r.syncPending = true
			r.syncResults()
		}
	}
}

// syncResults handles the synthetic result at the ack position, if any.
func (r *runner) syncResults() {
	for r.ack < r.pub && r.fatal == nil {
		s := &r.ring[r.ack&r.mask]
		if s.syncErr == nil {
			return
		}
		err := s.syncErr
		s.syncErr = nil
		r.syncPending = false
		r.result(s, err)
	}
}

func (r *runner) onAck(a *Ack) {
	if r.fatal != nil {
		return
	}
	if r.ack == r.pub {
		r.fatal = fmt.Errorf("%w: acknowledgement for %s (sequence %d) with nothing outstanding", ErrSinkContract, a.ID, a.Sequence)
		return
	}
	s := &r.ring[r.ack&r.mask]
	if s.syncErr != nil || a.Sequence != s.n.Sequence || a.ID != s.n.ID {
		r.fatal = fmt.Errorf("%w: acknowledgement for %s (sequence %d), expected %s (sequence %d)", ErrSinkContract, a.ID, a.Sequence, s.n.ID, s.n.Sequence)
		return
	}
	r.result(s, a.Err)
	r.syncResults()
}

// onAcks handles a, then the acknowledgements already queued behind it
// without going through the loop's select again, then publishes.
func (r *runner) onAcks(a *Ack) {
	r.onAck(a)
	for i := len(r.acks); i > 0 && r.fatal == nil && !r.drain.expired; i-- {
		next := <-r.acks
		r.onAck(&next)
	}
	r.publish()
}

// result handles the outcome for the notification at the ack position.
func (r *runner) result(s *slot, err error) {
	pos := r.ack
	r.ack++
	if err != nil {
		r.p.m.SinkErrors.Inc()
	}
	switch {
	case r.fail.active && pos >= r.fail.pos:
		// Part of a failed round: re-published whatever the outcome.
	case err == nil:
		r.fail.attempt = 0
		r.advance(s, true)
	case IsPermanent(err):
		r.reject(s, err)
	default:
		r.fail.active, r.fail.pos, r.fail.err = true, pos, err
	}
	if r.fail.active && !r.fail.backingOff && r.ack == r.pub && r.fatal == nil {
		r.startBackoff()
	}
}

// advance moves the watermark over the head of the window.
func (r *runner) advance(s *slot, published bool) {
	if r.ack-1 != r.head {
		// Cannot happen: results before failPos are all advanced in order.
		r.fatal = fmt.Errorf("bridge: internal error: advancing %s (sequence %d) at position %d with head %d", s.n.ID, s.n.Sequence, r.ack-1, r.head)
		return
	}
	p := r.p
	now := p.now()
	if published {
		p.m.NotificationsPublished.Inc()
		if !s.n.Received.IsZero() {
			p.m.PublishLatency.Observe(now.Sub(s.n.Received).Seconds())
		}
		if !s.n.Time.IsZero() {
			p.m.EventAge.Observe(now.Sub(s.n.Time).Seconds())
		}
	}
	r.commits.wm = Checkpoint{Sequence: s.n.Sequence, EventID: s.n.ID}
	r.commits.wmFound = true
	wm := r.commits.wm
	p.stAcked.Store(&wm)
	size := s.size
	*s = slot{}
	r.head++
	p.release(size)
	unix := now.UnixNano()
	p.m.LastAckTimestamp.Set(float64(unix) / 1e9)
	p.stLastAck.Store(unix)
	if r.head == r.tail {
		p.stOldest.Store(0)
	} else {
		p.stOldest.Store(r.ring[r.head&r.mask].at)
	}
	p.stInFlight.Store(int64(r.tail - r.head))
	p.m.InFlight.Set(float64(r.tail - r.head))
	if !r.commits.timerArmed && !r.commits.due {
		r.commits.timer.Reset(p.cfg.CheckpointInterval)
		r.commits.timerArmed = true
	}
}

func (r *runner) reject(s *slot, err error) {
	p := r.p
	id, seq := s.n.ID, s.n.Sequence
	switch p.cfg.OnReject {
	case RejectSkip:
		p.rejSkip.Inc()
		p.log.Warn("bridge.sink.rejected", "action", string(RejectSkip), "id", id, "sequence", seq, "error", err.Error())
		r.advance(s, false)
	case RejectDLQ:
		p.rejDLQ.Inc()
		p.log.Warn("bridge.sink.rejected", "action", string(RejectDLQ), "id", id, "sequence", seq, "error", err.Error())
		n := s.n // the slot is reused once advanced; the sink may keep dl
		dl := DeadLetter{Kind: DeadLetterRejected, Notification: &n, Raw: n.CloudEvent, Reason: err.Error()}
		for {
			derr := p.deadLetter(r.opCtx, dl)
			if derr == nil {
				p.log.Info("bridge.deadlettered", "id", id, "sequence", seq, "reason", dl.Reason)
				r.advance(s, false)
				return
			}
			if IsPermanent(derr) {
				r.fatal = FieldErrorf("OnReject", "%s: %w", RejectDLQ, errors.Join(&RejectedError{ID: id, Sequence: seq, Err: err}, derr))
				return
			}
			// The context ended: Run's (start the timed drain and keep
			// trying) or the drain's (give up; the position stays
			// before this notification).
			if !r.drain.active {
				r.drainOnCancel()
				continue
			}
			r.drain.expired = true
			return
		}
	default:
		p.rejFail.Inc()
		p.log.Error("bridge.sink.rejected", "action", string(RejectFail), "id", id, "sequence", seq, "error", err.Error())
		r.fatal = FieldErrorf("OnReject", "%s: %w", RejectFail, &RejectedError{ID: id, Sequence: seq, Err: err})
	}
}

func (r *runner) startBackoff() {
	r.fail.attempt++
	d := r.p.cfg.Backoff(r.fail.attempt)
	s := &r.ring[r.fail.pos&r.mask]
	r.p.log.Warn("bridge.sink.retry", "id", s.n.ID, "sequence", s.n.Sequence, "attempt", r.fail.attempt, "backoff", d.String(), "error", r.fail.err.Error())
	r.fail.timer.Reset(d)
	r.fail.backingOff = true
}

// retry re-publishes from the failed notification on.
func (r *runner) retry() {
	if r.head != r.fail.pos || r.ack != r.pub {
		r.fatal = fmt.Errorf("bridge: internal error: retry from position %d with head %d, ack %d, pub %d", r.fail.pos, r.head, r.ack, r.pub)
		return
	}
	r.fail.active, r.fail.err = false, nil
	r.ack, r.pub = r.head, r.head
	r.p.m.SinkRetries.Inc()
	r.publish()
}
