package supervisor

import (
	"bytes"
	"context"
	"fmt"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// serverError handles an aviso error frame; stop says that the session
// ends with out. A frame with a sequence stands for one stored notification
// aviso-server cannot build ("CloudEvent creation failed", a "poison"
// notification): every replay that covers it sends the same frame again, so
// reconnecting cannot help, and the stream goes on (README, aviso-server
// versions). Any other error frame (a failed replay batch)
// reconnects from the cursor after a backoff, so that the part the server
// skipped is asked for again.
func (s *Supervisor) serverError(ctx context.Context, f *aviso.Frame, rid string) (out outcome, stop bool) {
	s.m.ServerErrors.Inc()
	rid = firstNonEmpty(f.RequestID, rid)
	if !f.HasSequence {
		s.log.Error("aviso.server.error", "request_id", rid, "error", f.ErrorCode, "message", f.Message, "topic", f.Topic,
			"action", "reconnecting from the cursor after a backoff")
		return outcome{reason: reasonServerError, retry: retryBackoff, requestID: rid,
			err: &serverErrorFrame{code: f.ErrorCode, message: f.Message}}, true
	}
	if s.end.beyond(f.Sequence, "") {
		return s.finished(rid, fmt.Sprintf("sequence %d is past the end of the replay", f.Sequence)), true
	}
	if err := s.unrenderable(ctx, f, rid); err != nil {
		return outcome{fatal: err}, true
	}
	if s.end.reached(s) {
		return s.finished(rid, "the end of the replay was reached"), true
	}
	return outcome{}, false
}

// unrenderable handles a poison notification: one above the cursor is
// logged at ERROR, counted, dead-lettered when configured, and skipped (the
// cursor moves past it, so no later request of this process covers it
// again); one at or below the cursor was already handled (or forwarded) and
// is only noted at DEBUG. The stream goes on either way. The error is a
// dead-letter failure (permanent, or ctx's).
func (s *Supervisor) unrenderable(ctx context.Context, f *aviso.Frame, rid string) error {
	if s.haveForwarded && f.Sequence <= s.lastForwarded {
		s.log.Debug("aviso.notification.unrenderable_again", "sequence", f.Sequence, "last_forwarded", s.lastForwarded,
			"request_id", rid)
		return nil
	}
	s.behind.ahead(s, f.Sequence)
	s.m.Unrenderable.Inc()
	s.log.Error("aviso.notification.unrenderable", "sequence", f.Sequence, "message", f.Message, "error", f.ErrorCode,
		"topic", f.Topic, "request_id", rid, "dead_lettered", s.deadLetters,
		"action", "skipped: the stream goes on",
		"hint", "aviso-server cannot build this stored notification (bad stored data); every replay covering it reports the same")
	if s.deadLetters {
		dl := bridge.DeadLetter{
			Kind:     bridge.DeadLetterUnrenderable,
			Raw:      bytes.Clone(f.Raw),
			Event:    f.Event,
			Reason:   fmt.Sprintf("aviso-server could not build the CloudEvent of sequence %d: %s", f.Sequence, f.Message),
			Listener: s.cfg.Listener,
		}
		if err := s.cfg.Pipeline.DeadLetter(ctx, dl); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
	s.skipTo(f.Sequence)
	return nil
}

// skipTo moves the cursor past seq without forwarding anything: the next
// request starts after it and anything at or below it is a duplicate. The
// pipeline's checkpoint moves past it with the next forwarded notification.
func (s *Supervisor) skipTo(seq uint64) {
	s.lastForwarded, s.haveForwarded, s.fromDate = seq, true, ""
}
