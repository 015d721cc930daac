package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
)

// replayEnd is the inclusive end of a bounded replay (AVISO_MODE=replay with
// AVISO_TO_ID or AVISO_TO_DATE, or the end_sequence the first
// replay_started of an aviso-server 0.13 announced). It is pinned across
// reconnects (cap pages, cuts), so that a replay stays finite while the
// server keeps publishing, and the bridge also stops itself there, so that
// servers without to_id/to_date (0.7.1) deliver the same range.
//
// Owned by Run's goroutine.
type replayEnd struct {
	// id is the last sequence to deliver (AVISO_TO_ID or the pinned
	// end_sequence); nil: none known.
	id *uint64
	// pinned: id is the server's first end_sequence.
	pinned bool
	// date is AVISO_TO_DATE as given (sent verbatim until the end is pinned)
	// and dateT its parsed value, the bound on a notification's time.
	date  string
	dateT time.Time
	// unsupported: the server refused to_id/to_date (aviso-server before
	// 0.13); the bound is then the bridge's alone.
	unsupported bool
}

// newReplayEnd validates AVISO_TO_ID / AVISO_TO_DATE against the mode and
// the start position.
func newReplayEnd(cfg *Config) (replayEnd, error) {
	var e replayEnd
	if cfg.ToID == nil && cfg.ToDate == "" {
		return e, nil
	}
	if cfg.Mode != aviso.Replay {
		setting := "{ToID}"
		if cfg.ToID == nil {
			setting = "{ToDate}"
		}
		return e, &ConfigError{Setting: setting + " or {Mode}",
			Err: errors.New("the end of a replay needs the replay mode")}
	}
	if cfg.ToID != nil && cfg.ToDate != "" {
		return e, &ConfigError{Setting: "{ToID} or {ToDate}", Err: errors.New("set at most one end position")}
	}
	if cfg.ToID != nil {
		if *cfg.ToID == 0 {
			return e, &ConfigError{Setting: "{ToID}", Err: errors.New("to_id must be a positive sequence")}
		}
		if f := cfg.Start.FromID; f != nil && !cfg.Start.HasCheckpoint && *f > *cfg.ToID {
			return e, &ConfigError{Setting: "{ToID} or {Start.FromID}",
				Err: fmt.Errorf("the end %d is lower than the start %d", *cfg.ToID, *f)}
		}
		v := *cfg.ToID
		e.id = &v
		return e, nil
	}
	t, err := parseAvisoDate(cfg.ToDate)
	if err != nil {
		return e, &ConfigError{Setting: "{ToDate}", Err: err}
	}
	if fd := cfg.Start.FromDate; fd != "" && !cfg.Start.HasCheckpoint {
		if ft, err := parseAvisoDate(fd); err == nil && t.Before(ft) {
			return e, &ConfigError{Setting: "{ToDate} or {Start.FromDate}",
				Err: fmt.Errorf("the end %q is earlier than the start %q", cfg.ToDate, fd)}
		}
	}
	e.date, e.dateT = cfg.ToDate, t
	return e, nil
}

// apply adds the end to the next request: the pinned or configured to_id,
// else to_date; nothing once the server refused them.
func (e *replayEnd) apply(req *aviso.Request) {
	if e.unsupported {
		return
	}
	switch {
	case e.id != nil:
		v := *e.id
		req.ToID = &v
	case e.date != "":
		req.ToDate = e.date
	}
}

// pin keeps the end_sequence of the first replay_started (a later one
// cannot widen the replay: the server applies the to_id sent).
func (e *replayEnd) pin(s *Supervisor, f *aviso.Frame, rid string) {
	if e.pinned || f.EndSequence == nil {
		return
	}
	end := *f.EndSequence
	if e.id != nil && *e.id < end {
		end = *e.id
	}
	e.id, e.pinned = &end, true
	s.log.Info("aviso.replay.end_pinned", "end_sequence", end, "request_id", rid,
		"to_date", e.date, "action", "every reconnect of this replay asks for to_id "+strconv.FormatUint(end, 10))
}

// reached reports whether the cursor is at or past the end: the replay is
// finished and no request is needed.
func (e *replayEnd) reached(s *Supervisor) bool {
	return e.id != nil && s.haveForwarded && s.lastForwarded >= *e.id
}

// beyond reports whether a notification (seq, its CloudEvent time; "" when
// unknown) lies past the end: it is not forwarded and the replay is finished.
func (e *replayEnd) beyond(seq uint64, timeRaw string) bool {
	if e.id != nil {
		return seq > *e.id
	}
	if e.date != "" && timeRaw != "" {
		if t, err := time.Parse(time.RFC3339Nano, timeRaw); err == nil {
			return t.After(e.dateT)
		}
	}
	return false
}

// refused reports a 400 that says the server does not know to_id/to_date
// (aviso-server before 0.13 rejects any unknown top-level key).
func refusedEnd(he *aviso.HTTPError, req aviso.Request) bool {
	if he.Status != 400 || (req.ToID == nil && req.ToDate == "") {
		return false
	}
	text := he.Code + " " + he.Message + " " + he.Details
	return he.Code == "UNKNOWN_FIELD" && (strings.Contains(text, "to_id") || strings.Contains(text, "to_date"))
}

// parseAvisoDate parses the from_date/to_date formats aviso-server accepts
// (README, aviso-server versions): RFC 3339, "YYYY-MM-DD HH:MM:SS[.f]"
// with an offset or naive (UTC), and unix seconds (up to 11 significant
// digits) or milliseconds (12 or more).
func parseAvisoDate(s string) (time.Time, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return time.Time{}, errors.New("empty date")
	}
	if digits := strings.TrimPrefix(t, "+"); digits != "" && strings.Trim(digits, "0123456789") == "" {
		sig := strings.TrimLeft(digits, "0")
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("date %q: %w", s, err)
		}
		if len(sig) <= 11 {
			return time.Unix(n, 0).UTC(), nil
		}
		return time.UnixMilli(n).UTC(), nil
	}
	for _, layout := range []string{
		time.RFC3339Nano,
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02T15:04:05.999999999",
		"2006-01-02 15:04:05.999999999",
	} {
		if v, err := time.Parse(layout, t); err == nil {
			return v.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("date %q is not RFC 3339, 'YYYY-MM-DD HH:MM:SS[+offset]' or a unix timestamp", s)
}

// connect opens one connection for req. When the server refuses the
// replay's end (aviso-server before 0.13 rejects to_id/to_date as unknown
// fields), it says so once and asks again without it: the bridge then
// enforces the end alone. It returns the request actually sent.
func (s *Supervisor) connect(ctx context.Context, req aviso.Request) (*aviso.Stream, aviso.Request, error) {
	st, err := s.cfg.Client.Connect(ctx, s.cfg.Mode, req)
	var he *aviso.HTTPError
	if err == nil || !errors.As(err, &he) || !refusedEnd(he, req) {
		return st, req, err
	}
	s.end.unsupported = true
	s.log.Warn("aviso.replay.end_unsupported", "error", he.Error(),
		"request_id", firstNonEmpty(he.HeaderRequestID, he.RequestID),
		"action", "asking again without to_id/to_date: the bridge stops itself at the end of the replay",
		"hint", "aviso-server older than 0.13 does not accept to_id/to_date")
	req.ToID, req.ToDate = nil, ""
	st, err = s.cfg.Client.Connect(ctx, s.cfg.Mode, req)
	return st, req, err
}

// replayStarted handles the opening replay_started of a connection: in
// replay mode its end_sequence pins the end of the replay; on either
// endpoint an end_sequence below the cursor is evidence of aviso-server
// being behind the checkpoint.
func (s *Supervisor) replayStarted(f *aviso.Frame, rid string) {
	if s.cfg.Mode == aviso.Replay {
		s.end.pin(s, f, rid)
	}
	if f.EndSequence != nil && s.haveForwarded && *f.EndSequence < s.lastForwarded {
		s.behind.replayWindow(s, *f.EndSequence)
	}
}

// finished ends a replay run: Run returns nil, and the caller drains the
// pipeline, commits and exits 0.
func (s *Supervisor) finished(rid, why string) outcome {
	s.behind.finish(s)
	s.log.Info("aviso.replay.finished", "request_id", rid, "last_forwarded", s.lastForwarded, "why", why)
	return outcome{done: true}
}
