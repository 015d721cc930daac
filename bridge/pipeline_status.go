package bridge

import (
	"fmt"
	"time"
)

// Status is a snapshot of the pipeline for readiness checks.
type Status struct {
	// At is when the snapshot was taken.
	At time.Time
	// InFlight is the number of notifications in the window: received by
	// Run and not yet acknowledged.
	InFlight int
	// Checkpoint is the last committed position (the start checkpoint until
	// the first commit); CheckpointFound is false when there is none.
	Checkpoint      Checkpoint
	CheckpointFound bool
	// LastAck is when the position last advanced (zero: never).
	LastAck time.Time
	// OldestUnacked is when the oldest notification in the window entered
	// it (zero when the window is empty).
	OldestUnacked time.Time
	// InFlightBytes is the size (NotificationSize) of the notifications
	// submitted and not yet acknowledged: the window and the input buffer
	// in front of it.
	InFlightBytes int64
	// Acknowledged is the watermark: the last notification of the
	// acknowledged prefix (committed or not yet); AcknowledgedFound is
	// false when there is none (nor a start checkpoint).
	Acknowledged      Checkpoint
	AcknowledgedFound bool
	// CommitErr is the error of the last checkpoint commit when it failed
	// and no commit succeeded since (nil otherwise); CommitFailingSince is
	// when the first of those consecutive failures happened.
	CommitErr          error
	CommitFailingSince time.Time
	// Stopped is true once the pipeline no longer takes input.
	Stopped bool
}

// Uncommitted reports whether acknowledged notifications are not covered
// by the committed checkpoint: a restart now would deliver them again.
// Notifications still in flight are not counted: the checkpoint is before
// them, so they are read again from aviso either way.
func (s Status) Uncommitted() bool {
	return s.AcknowledgedFound && (!s.CheckpointFound || s.Acknowledged.Sequence > s.Checkpoint.Sequence)
}

// CommitFailure returns nil unless checkpoint commits are failing: the
// last one failed and none succeeded since. The error names when the
// failures began and wraps the store's last error; /readyz reports it.
func (s Status) CommitFailure() error {
	if s.CommitErr == nil {
		return nil
	}
	return fmt.Errorf("checkpoint commits failing since %s (%s): %w",
		s.CommitFailingSince.UTC().Format(time.RFC3339), s.At.Sub(s.CommitFailingSince).Round(time.Millisecond), s.CommitErr)
}

// Stalled reports whether notifications are in flight and nothing was
// acknowledged for readyStall (BRIDGE_READY_STALL): neither an ack nor the
// oldest unacknowledged notification is more recent than At-readyStall. A
// notification that has just arrived after an idle period is not a stall.
func (s Status) Stalled(readyStall time.Duration) bool {
	if s.InFlight == 0 || readyStall <= 0 {
		return false
	}
	since := s.OldestUnacked
	if s.LastAck.After(since) {
		since = s.LastAck
	}
	return s.At.Sub(since) >= readyStall
}

// Status returns a snapshot of the pipeline; safe for concurrent use.
func (p *Pipeline) Status() Status {
	s := Status{At: p.now(), InFlight: int(p.stInFlight.Load()), InFlightBytes: p.bytes.Load()}
	if cp := p.stCheckpoint.Load(); cp != nil {
		s.Checkpoint, s.CheckpointFound = *cp, true
	}
	if cp := p.stAcked.Load(); cp != nil {
		s.Acknowledged, s.AcknowledgedFound = *cp, true
	}
	if f := p.stCommitFail.Load(); f != nil {
		s.CommitErr, s.CommitFailingSince = f.err, f.since
	}
	if t := p.stLastAck.Load(); t != 0 {
		s.LastAck = time.Unix(0, t)
	}
	if t := p.stOldest.Load(); t != 0 {
		s.OldestUnacked = time.Unix(0, t)
	}
	select {
	case <-p.stopped:
		s.Stopped = true
	default:
	}
	return s
}

type commitFailure struct {
	err   error
	since time.Time
}

// commitFailed counts a failed commit and records it for Status.
func (p *Pipeline) commitFailed(err error) {
	p.m.CheckpointErrors.Inc()
	since := p.now()
	if f := p.stCommitFail.Load(); f != nil {
		since = f.since
	}
	p.stCommitFail.Store(&commitFailure{err: err, since: since})
}
