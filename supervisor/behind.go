package supervisor

import (
	"fmt"
	"time"
)

// behindTracker detects aviso-server serving only sequences at or below the
// bridge's position (its storage was reset, or the checkpoint was restored
// from elsewhere): every notification is then dropped as a duplicate,
// forever. Evidence that the server is behind is a duplicate notification,
// or (aviso-server 0.13) a replay window whose end_sequence is below the
// cursor; evidence that it is not is a notification (or an unrenderable
// one) above the cursor, which resolves an episode.
//
// A short burst of duplicates is normal (0.7.1 re-sends the end of a
// replay at the replay-to-live seam), so an episode is reported only when
// the evidence spans more than the grace within one connection and nothing
// above the cursor arrived meanwhile. Once reported, it stays reported
// (Status.BehindCheckpoint, /readyz 503) across reconnects until a
// notification above the cursor arrives.
//
// Owned by Run's goroutine.
type behindTracker struct {
	// since is when the evidence of the current connection began (zero:
	// none); window says that evidence includes the replay window, which
	// stays true for the whole connection (so heartbeats may end the grace).
	since  time.Time
	window bool
	// server is the highest sequence the server showed while behind.
	server uint64
	// detected: an episode is reported; warned is when the last WARN went out.
	detected bool
	warned   time.Time
}

// newConnection starts the evidence of a new connection afresh (a reported
// episode stays reported).
func (b *behindTracker) newConnection() {
	b.since, b.window = time.Time{}, false
}

// duplicate notes a notification at or below the cursor.
func (b *behindTracker) duplicate(s *Supervisor, seq uint64) {
	b.evidence(s, seq, false)
}

// replayWindow notes a replay_started whose end_sequence is below the cursor.
func (b *behindTracker) replayWindow(s *Supervisor, end uint64) {
	b.evidence(s, end, true)
}

func (b *behindTracker) evidence(s *Supervisor, seq uint64, window bool) {
	now := s.cfg.Clock.Now()
	if b.since.IsZero() {
		b.since, b.server = now, 0
	}
	b.server = max(b.server, seq)
	b.window = b.window || window
	b.check(s, now)
}

// tick re-checks the grace on any frame of a connection whose replay window
// was below the cursor (a quiet watch sends only heartbeats).
func (b *behindTracker) tick(s *Supervisor) {
	if b.window {
		b.check(s, s.cfg.Clock.Now())
	}
}

// finish reports a replay that ended with evidence of being behind and
// nothing above the cursor: a finite replay has no time for the grace.
func (b *behindTracker) finish(s *Supervisor) {
	if !b.since.IsZero() && !b.detected {
		b.report(s, s.cfg.Clock.Now())
	}
}

func (b *behindTracker) check(s *Supervisor, now time.Time) {
	switch {
	case b.since.IsZero():
	case !b.detected && now.Sub(b.since) >= s.cfg.BehindGrace:
		b.report(s, now)
	case b.detected && now.Sub(b.warned) >= s.cfg.BehindWarnInterval:
		b.warn(s, now)
	}
}

func (b *behindTracker) report(s *Supervisor, now time.Time) {
	b.detected = true
	s.m.BehindCheckpoint.Inc()
	b.warn(s, now)
}

func (b *behindTracker) warn(s *Supervisor, now time.Time) {
	b.warned = now
	detail := fmt.Sprintf("aviso-server serves sequences up to %d, below this bridge's position %d: "+
		"its storage was reset or the checkpoint comes from elsewhere; notifications at or below %d are dropped as duplicates",
		b.server, s.lastForwarded, s.lastForwarded)
	s.mu.Lock()
	s.status.BehindCheckpoint = detail
	s.mu.Unlock()
	name := s.cfg.CheckpointName
	s.log.Warn("aviso.stream.behind_checkpoint", "server_sequence", b.server, "checkpoint_sequence", s.lastForwarded,
		"for", now.Sub(b.since).Round(time.Millisecond).String(), "detail", detail,
		"hint", fmt.Sprintf("stop the bridge, then either run `aviso-bridge checkpoint set %s SEQ` (SEQ: the last sequence of this "+
			"aviso-server already delivered; 0 delivers everything it stores) or `aviso-bridge checkpoint delete %s`, and start it again", name, name))
}

// ahead notes a notification above the cursor: the server is not behind.
func (b *behindTracker) ahead(s *Supervisor, seq uint64) {
	if b.detected {
		s.log.Info("aviso.stream.behind_checkpoint_resolved", "sequence", seq, "checkpoint_sequence", s.lastForwarded)
		s.mu.Lock()
		s.status.BehindCheckpoint = ""
		s.mu.Unlock()
	}
	*b = behindTracker{}
}
