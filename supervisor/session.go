package supervisor

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// request builds the next request from the cursor.
func (s *Supervisor) request() (aviso.Request, error) {
	req := aviso.Request{EventType: s.cfg.EventType, Identifier: s.cfg.Identifier}
	switch {
	case s.haveForwarded:
		if s.lastForwarded == math.MaxUint64 {
			return req, fmt.Errorf("sequence %d is the largest possible: cannot resume after it", s.lastForwarded)
		}
		next := s.lastForwarded + 1
		req.FromID = &next
	case s.cfg.Start.FromID != nil:
		v := *s.cfg.Start.FromID
		req.FromID = &v
	case s.fromDate != "":
		req.FromDate = s.fromDate
	}
	if s.cfg.Mode == aviso.Replay {
		s.end.apply(&req)
	}
	return req, nil
}

func cursorAttrs(req aviso.Request) []any {
	var out []any
	switch {
	case req.FromID != nil:
		out = []any{"from_id", strconv.FormatUint(*req.FromID, 10)}
	case req.FromDate != "":
		out = []any{"from_date", req.FromDate}
	default:
		out = []any{"from", "live"}
	}
	switch {
	case req.ToID != nil:
		out = append(out, "to_id", strconv.FormatUint(*req.ToID, 10))
	case req.ToDate != "":
		out = append(out, "to_date", req.ToDate)
	}
	return out
}

// session runs one connection to its end.
func (s *Supervisor) session(ctx context.Context) outcome {
	if s.end.reached(s) {
		return s.finished("", "the position is at the end of the replay")
	}
	req, err := s.request()
	if err != nil {
		return outcome{fatal: err}
	}
	st, req, err := s.connect(ctx, req)
	if err != nil {
		return s.connectFailure(ctx, req, err)
	}
	defer st.Close()
	// Close the body when ctx ends so a blocked read returns.
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()

	c := &conn{stream: st, rid: firstNonEmpty(st.Opening.RequestID, st.RequestID), prog: progress{at: s.cfg.Clock.Now()}}
	s.opened(c, req)
	out := s.read(ctx, c)
	out.progressed = out.progressed || c.forwarded > 0
	return out
}

// conn is the state of one connection, owned by session.
type conn struct {
	stream          *aviso.Stream
	rid             string // the request id, for the logs
	forwarded       int    // notifications handed to the pipeline
	replayCompleted bool   // a replay_completed frame was seen
	prog            progress
}

// replaying reports whether the connection is still catching up through a replay.
func (c *conn) replaying() bool {
	return !c.replayCompleted && c.stream.Opening.Kind == aviso.KindReplayStarted
}

// opened records a connection's opening: status, logs, the replay window,
// and the pinned start of a live-only watch.
func (s *Supervisor) opened(c *conn, req aviso.Request) {
	st, rid := c.stream, c.rid
	s.setConnected(rid)
	s.log.Info("aviso.connection.opened", append([]any{"request_id", rid, "mode", s.cfg.Mode.String()}, cursorAttrs(req)...)...)
	if st.Anomaly != "" {
		s.log.Warn("aviso.connection.unexpected_opening", "request_id", rid, "anomaly", st.Anomaly,
			"action", "accepted: notifications are forwarded and deduplicated as usual")
	}
	s.behind.newConnection()
	if st.Opening.Kind == aviso.KindReplayStarted {
		s.replayStarted(&st.Opening, rid)
	}
	if st.Opening.Kind == aviso.KindConnectionEstablished && !s.haveForwarded && s.fromDate == "" && req.FromID == nil {
		s.pinLiveStart(&st.Opening, rid)
	}
}

// pinLiveStart pins a live-only start to the server's clock, so that a
// reconnect before the first notification asks for everything since then.
func (s *Supervisor) pinLiveStart(opening *aviso.Frame, rid string) {
	if ts := opening.Timestamp; ts != "" {
		s.fromDate = ts
		s.log.Info("aviso.start.pinned", "from_date", ts, "request_id", rid)
		return
	}
	s.log.Warn("aviso.start.unpinned", "request_id", rid,
		"hint", "connection_established carried no timestamp: a reconnect before the first notification resumes live and may miss notifications")
}

// read handles the frames of an opened connection until one ends the session.
func (s *Supervisor) read(ctx context.Context, c *conn) outcome {
	for {
		f, err := c.stream.Next()
		if err != nil {
			if ctx.Err() != nil {
				return outcome{fatal: ctx.Err()}
			}
			return s.streamFailure(ctx, err, c.rid)
		}
		if out, stop := s.frame(ctx, c, &f); stop {
			return out
		}
	}
}

// frame handles one frame; stop says that the session ends with out.
func (s *Supervisor) frame(ctx context.Context, c *conn, f *aviso.Frame) (out outcome, stop bool) {
	switch f.Kind {
	case aviso.KindNotification:
		return s.notification(ctx, c, &f.Notification)
	case aviso.KindHeartbeat:
		s.behind.tick(s)
	case aviso.KindDecodeError:
		if err := s.malformed(ctx, *f, c.rid); err != nil {
			return fail(ctx, err), true
		}
	case aviso.KindReplayCompleted:
		if !c.replayCompleted {
			c.replayCompleted = true
			s.log.Info("aviso.replay.completed", "request_id", c.rid, "last_forwarded", s.lastForwarded)
		}
	case aviso.KindReplayLimitReached:
		s.m.ReplayLimitsReached.Inc()
		s.log.Info("aviso.replay.limit_reached", "max_allowed", f.MaxAllowed, "request_id", c.rid,
			"last_forwarded", s.lastForwarded, "action", "reconnecting from the cursor to keep paging")
		return outcome{reason: reasonReplayLimit, retry: retryPage, requestID: c.rid, confirmed: true}, true
	case aviso.KindServerError:
		return s.serverError(ctx, f, c.rid)
	case aviso.KindClosing:
		return s.closing(*f, c.rid, c.replayCompleted), true
	}
	return outcome{}, false
}

// notification forwards one notification, unless it lies past the end of
// the replay; stop says that the session ends with out.
func (s *Supervisor) notification(ctx context.Context, c *conn, n *aviso.Notification) (out outcome, stop bool) {
	if s.end.beyond(n.Sequence, n.Time) {
		return s.finished(c.rid, fmt.Sprintf("sequence %d is past the end of the replay", n.Sequence)), true
	}
	ok, err := s.forward(ctx, n)
	if err != nil {
		return fail(ctx, err), true
	}
	if !ok {
		return outcome{}, false
	}
	c.forwarded++
	s.progress(&c.prog, n, c.replaying())
	if s.end.reached(s) {
		return s.finished(c.rid, "the end of the replay was forwarded"), true
	}
	return outcome{}, false
}

// forward deduplicates n and hands it to the pipeline; ok is false for a
// dropped duplicate.
func (s *Supervisor) forward(ctx context.Context, an *aviso.Notification) (ok bool, err error) {
	s.m.NotificationsReceived.Inc()
	if s.haveForwarded && an.Sequence <= s.lastForwarded {
		s.m.DuplicatesDropped.Inc()
		s.log.Debug("aviso.notification.duplicate", "sequence", an.Sequence, "last_forwarded", s.lastForwarded)
		s.behind.duplicate(s, an.Sequence)
		return false, nil
	}
	s.behind.ahead(s, an.Sequence)
	if s.haveForwarded && an.Sequence > s.lastForwarded+1 {
		s.m.SequenceGaps.Inc()
		s.log.Debug("aviso.sequence.gap", "expected", s.lastForwarded+1, "observed", an.Sequence)
	}
	n := s.convert(an)
	if err := s.cfg.Pipeline.Submit(ctx, &n); err != nil {
		return false, err
	}
	s.setForwarded(an.Sequence)
	return true, nil
}

type progress struct {
	at    time.Time
	count int
}

// progress logs an INFO line at most every ProgressInterval while catching up.
func (s *Supervisor) progress(p *progress, n *aviso.Notification, replaying bool) {
	p.count++
	now := s.cfg.Clock.Now()
	el := now.Sub(p.at)
	if el < s.cfg.ProgressInterval {
		return
	}
	behind := -1.0
	if t, err := time.Parse(time.RFC3339Nano, n.Time); err == nil {
		behind = now.Sub(t).Seconds()
	}
	if replaying || behind > 30 {
		s.log.Info("aviso.progress", "sequence", n.Sequence, "rate_per_second", math.Round(float64(p.count)/el.Seconds()),
			"behind_seconds", math.Round(behind), "replaying", replaying)
	}
	p.at, p.count = now, 0
}

// malformed logs, counts and (when configured) dead-letters an undecodable frame.
func (s *Supervisor) malformed(ctx context.Context, f aviso.Frame, rid string) error {
	s.m.MalformedFrames.Inc()
	raw := f.Raw
	const maxLogged = 512
	logged := string(raw)
	if len(logged) > maxLogged {
		logged = logged[:maxLogged] + "...(truncated)"
	}
	reason := "undecodable frame"
	if f.Err != nil {
		reason = f.Err.Error()
	}
	s.log.Error("aviso.frame.malformed", "event", f.Event, "error", reason, "raw", logged, "request_id", rid,
		"dead_lettered", s.deadLetters)
	if !s.deadLetters {
		return nil
	}
	err := s.cfg.Pipeline.DeadLetter(ctx, bridge.DeadLetter{Kind: bridge.DeadLetterMalformed, Raw: raw, Event: f.Event, Reason: reason,
		Listener: s.cfg.Listener})
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
