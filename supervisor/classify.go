package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// outcome is how one session ended: what the session saw (classified from
// the frames and errors of its connection) and what Run measured, which is
// all the reconnect policy decides from.
type outcome struct {
	done       bool  // replay finished: stop cleanly
	fatal      error // stop with this error
	reason     string
	retry      retry
	retryAfter time.Duration
	requestID  string
	err        error // cause, for the log
	// confirmed: the session ended in a way that proves the server healthy
	// (a confirmed opening followed by a routine close or a transport loss);
	// it resets the backoff. Error frames, oversized events and unknown
	// close reasons do not confirm, so a server that fails every session
	// sees the backoff grow.
	confirmed bool
	// progressed: the session forwarded at least one notification (also
	// resets the backoff).
	progressed bool

	// Measured by Run after the session: how long it lasted, and the
	// cursor it left (position, meaningful when hasPosition).
	lasted      time.Duration
	position    uint64
	hasPosition bool
}

// fail is the outcome of an error that stops Run: ctx's when it ended (the
// error is then a consequence), else err.
func fail(ctx context.Context, err error) outcome {
	if ctx.Err() != nil {
		return outcome{fatal: ctx.Err()}
	}
	return outcome{fatal: err}
}

// Reconnect reasons (the label of aviso_bridge_reconnects_total).
const (
	reasonMaxDuration    = "max_duration_reached"
	reasonEndOfStream    = "end_of_stream"
	reasonShutdown       = "server_shutdown"
	reasonUnknownClose   = "unknown_close_reason"
	reasonEOF            = "eof"
	reasonIdle           = "idle_timeout"
	reasonTransport      = "transport_error"
	reasonHTTP5xx        = "http_5xx"
	reasonThrottled      = "throttled"
	reasonUnauthorized   = "unauthorized"
	reasonServerError    = "server_error"
	reasonReplayLimit    = "replay_limit_reached"
	reasonProtocol       = "protocol_error"
	reasonOpeningTimeout = "opening_timeout"
	reasonNotEventStream = "not_event_stream"
	reasonEventTooLarge  = "event_too_large"
	reasonCredentials    = "credentials_unavailable"
)

// reconnectReasons lists every reason, so that each series of
// aviso_bridge_reconnects_total exists (at 0) from the start.
var reconnectReasons = []string{reasonMaxDuration, reasonEndOfStream, reasonShutdown, reasonUnknownClose, reasonEOF,
	reasonIdle, reasonTransport, reasonHTTP5xx, reasonThrottled, reasonUnauthorized, reasonServerError,
	reasonReplayLimit, reasonProtocol, reasonOpeningTimeout, reasonNotEventStream, reasonEventTooLarge, reasonCredentials}

// closing maps a connection-closing frame to the next step.
func (s *Supervisor) closing(f aviso.Frame, rid string, replayCompleted bool) outcome {
	rid = firstNonEmpty(f.RequestID, rid)
	s.log.Info("aviso.connection.closing", "reason", f.Reason, "message", f.Message, "request_id", rid)
	switch f.Reason {
	case "max_duration_reached":
		return outcome{reason: reasonMaxDuration, retry: retryImmediate, requestID: rid, confirmed: true}
	case "server_shutdown":
		return outcome{reason: reasonShutdown, retry: retryShutdown, requestID: rid, confirmed: true}
	case "end_of_stream":
		if s.cfg.Mode == aviso.Replay && replayCompleted {
			return s.finished(rid, "replay_completed")
		}
		return outcome{reason: reasonEndOfStream, retry: retryImmediate, requestID: rid, confirmed: true}
	default:
		// The official client stops here; the bridge retries, but with a
		// growing backoff (not confirmed) so that a server that keeps closing
		// for a reason we do not know is not hammered.
		s.log.Warn("aviso.connection.unknown_close", "reason", f.Reason, "request_id", rid,
			"action", "reconnecting from the cursor after a backoff")
		err := fmt.Errorf("connection-closing with unknown reason %q", f.Reason)
		if f.Err != nil {
			err = fmt.Errorf("undecodable connection-closing frame: %w", f.Err)
		}
		return outcome{reason: reasonUnknownClose, retry: retryBackoff, requestID: rid, err: err}
	}
}

// streamFailure classifies an error from Stream.Next.
func (s *Supervisor) streamFailure(ctx context.Context, err error, rid string) outcome {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return outcome{reason: reasonEOF, retry: retryBackoff, requestID: rid, err: err, confirmed: true}
	case errors.Is(err, aviso.ErrIdleTimeout):
		return outcome{reason: reasonIdle, retry: retryBackoff, requestID: rid, err: err, confirmed: true}
	case errors.Is(err, aviso.ErrEventTooLarge):
		return s.tooLarge(ctx, err, rid)
	}
	return outcome{reason: reasonTransport, retry: retryBackoff, requestID: rid, err: err, confirmed: true}
}

// tooLarge handles an event larger than the client's MaxEventSize, which
// ends the connection. It is a malformed frame: counted, dead-lettered (its
// tail) when configured, and skipped when aviso recovered its sequence, so
// the reconnect resumes after it. Without a sequence the reconnect from the
// cursor meets the same event again; the session is then not confirmed, so
// the backoff grows to its ceiling instead of hammering the server.
func (s *Supervisor) tooLarge(ctx context.Context, err error, rid string) outcome {
	s.m.MalformedFrames.Inc()
	out := outcome{reason: reasonEventTooLarge, retry: retryBackoff, requestID: rid, err: err}
	var te *aviso.EventTooLargeError
	skip := errors.As(err, &te) && recoveredOwnID(te) && (!s.haveForwarded || te.Sequence > s.lastForwarded)
	attrs := []any{"error", err.Error(), "request_id", rid, "dead_lettered", s.deadLetters}
	if skip {
		attrs = append(attrs, "sequence", te.Sequence, "action", "skipped: resuming after it",
			"hint", "raise the client's maximum event size to forward such notifications")
	} else {
		attrs = append(attrs, "last_forwarded", s.lastForwarded, "action", "reconnecting from the cursor after a backoff",
			"hint", "raise the client's maximum event size: the stream cannot move past this event")
	}
	s.log.Error("aviso.frame.too_large", attrs...)
	if s.deadLetters && te != nil {
		dl := bridge.DeadLetter{Kind: bridge.DeadLetterMalformed, Raw: te.Tail, Reason: err.Error() + " (body: the end of the event only)",
			Listener: s.cfg.Listener}
		if derr := s.cfg.Pipeline.DeadLetter(ctx, dl); derr != nil {
			return fail(ctx, derr)
		}
	}
	if skip {
		s.setForwarded(te.Sequence)
		out.progressed = true
	}
	return out
}

// recoveredOwnID reports whether the id aviso recovered from an oversized
// event is certainly the CloudEvent's own: the end of the event was reached
// (its tail ends with the blank line) and the id is the event's last object
// member but for the string attributes that follow it, up to the closing
// brace. aviso gives up skimming an event after 2 x MaxEventSize and then
// takes the last "id":"..." it saw, which can be one inside the payload;
// skipping to such a sequence would drop everything below it as duplicates.
// Not skipping only costs retries, which are logged and counted.
func recoveredOwnID(te *aviso.EventTooLargeError) bool {
	if !te.HasSequence {
		return false
	}
	tail := te.Tail
	switch {
	case bytes.HasSuffix(tail, []byte("\n\n")):
		tail = tail[:len(tail)-2]
	case bytes.HasSuffix(tail, []byte("\r\n\r\n")):
		tail = tail[:len(tail)-4]
	default:
		return false
	}
	i := bytes.LastIndex(tail, []byte(`"id":"`+te.ID+`"`))
	if i < 0 {
		return false
	}
	rest := tail[i:]
	return bytes.IndexByte(rest, '}') == len(rest)-1 && !bytes.ContainsAny(rest, "{[")
}

// connectFailure classifies an error from Client.Connect.
func (s *Supervisor) connectFailure(ctx context.Context, req aviso.Request, err error) outcome {
	if ctx.Err() != nil {
		return outcome{fatal: ctx.Err()}
	}
	var he *aviso.HTTPError
	var pe *aviso.ProtocolError
	switch {
	case errors.As(err, &he):
		rid := firstNonEmpty(he.HeaderRequestID, he.RequestID)
		switch {
		case he.Unauthorized():
			if s.cfg.Client.Credentials == nil {
				return outcome{fatal: &ConfigError{Setting: "{Client.Credentials}",
					Err: fmt.Errorf("aviso-server requires credentials and none are configured: %w", he)}}
			}
			// Run re-reads the credentials right before the retry, so a
			// secret rotated during the wait is used at once.
			return outcome{reason: reasonUnauthorized, retry: retryAuth, requestID: rid, err: he}
		case he.Throttled():
			if he.HasRetryAfter {
				return outcome{reason: reasonThrottled, retry: retryAfterHeader, retryAfter: he.RetryAfter, requestID: rid, err: he}
			}
			return outcome{reason: reasonThrottled, retry: retryBackoff, requestID: rid, err: he}
		case he.ServerError():
			return outcome{reason: reasonHTTP5xx, retry: retryBackoff, requestID: rid, err: he}
		default:
			return outcome{fatal: &ConfigError{Setting: s.settingFor(he, req), Err: he}}
		}
	case errors.As(err, &pe):
		reason := reasonProtocol
		switch {
		case errors.Is(pe, aviso.ErrOpeningTimeout):
			reason = reasonOpeningTimeout
		case errors.Is(pe, aviso.ErrNotEventStream):
			reason = reasonNotEventStream
		}
		s.log.Error("aviso.connection.protocol_error", "error", pe.Error(), "request_id", pe.RequestID,
			"hint", "check that the base URL points to an aviso-server")
		return outcome{reason: reason, retry: retryBackoff, requestID: pe.RequestID, err: pe}
	case errors.Is(err, aviso.ErrInvalidRequest):
		// The client cannot even form the request (New already checked the
		// identifier and the event type): the base URL.
		return outcome{fatal: &ConfigError{Setting: "{Client.BaseURL}", Err: err}}
	case errors.Is(err, aviso.ErrCredentials):
		// An unreadable or empty token/password file: a rotated secret may be
		// in the middle of being replaced, so retry (not ready meanwhile).
		s.log.Error("aviso.auth.unavailable", "error", err.Error(),
			"hint", "check the token or password file")
		return outcome{reason: reasonCredentials, retry: retryBackoff, err: err}
	case errors.Is(err, aviso.ErrIdleTimeout):
		return outcome{reason: reasonIdle, retry: retryBackoff, err: err}
	}
	return outcome{reason: reasonTransport, retry: retryBackoff, err: err}
}
