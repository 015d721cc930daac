// Package supervisor turns single aviso connections (package aviso) into one
// resilient stream: it reconnects through disconnects, server restarts,
// stalls, throttling and credential rotation, resumes from the right cursor,
// drops duplicates, and hands every notification once per process to the
// bridge pipeline (package bridge), in sequence order.
//
// Data flow: aviso (SSE bytes -> frames) -> supervisor (cursor, reconnects,
// deduplication) -> bridge (ordered window, sink, checkpoint).
package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Pipeline is what the supervisor feeds: *bridge.Pipeline satisfies it.
type Pipeline interface {
	// Submit blocks while the in-flight window is full; that time never
	// counts as server silence.
	Submit(ctx context.Context, n *bridge.Notification) error
	DeadLetter(ctx context.Context, dl bridge.DeadLetter) error
}

// Start is where the first request starts. A checkpoint wins over FromID and
// FromDate; with none of them the watch starts live from now, pinned to the
// server's connection_established timestamp (a reconnect before the first
// notification asks for from_date = that timestamp, so nothing is missed).
type Start struct {
	// Checkpoint is the committed sequence (HasCheckpoint false: none): the
	// first request asks for from_id = Checkpoint + 1. Give the pipeline the
	// same checkpoint (bridge.PipelineConfig.Start). Where the sink reports
	// a higher stored position (bridge.PositionReporter), use the larger.
	Checkpoint    uint64
	HasCheckpoint bool
	// FromID is AVISO_FROM_ID: the first sequence to deliver (inclusive).
	FromID *uint64
	// FromDate is AVISO_FROM_DATE, sent verbatim until the first notification.
	FromDate string
}

// Config configures a Supervisor.
type Config struct {
	Client     *aviso.Client
	Mode       aviso.Mode
	EventType  string
	Identifier json.RawMessage
	Start      Start
	Pipeline   Pipeline
	// ToID and ToDate are AVISO_TO_ID and AVISO_TO_DATE: the inclusive end
	// of a replay (Mode Replay only; at most one). They are sent as aviso's
	// to_id/to_date, and the bridge also stops itself there (never
	// forwarding a notification past the bound), so an aviso-server older
	// than 0.13, which refuses the fields, delivers the same range. Without
	// them, the end_sequence of the first replay_started (aviso-server 0.13)
	// is pinned and sent as to_id on every reconnect, so that a replay stays
	// finite while the server keeps publishing.
	ToID   *uint64
	ToDate string
	// DeadLetters sends what cannot be forwarded to the dead-letter
	// destination through Pipeline.DeadLetter (BRIDGE_ON_REJECT=dlq):
	// undecodable frames and the end of an oversized event (kind malformed),
	// and notifications aviso-server reports it cannot build (kind
	// unrenderable). A permanent dead-letter failure ends Run with that
	// error.
	DeadLetters bool
	// DeadLetterMalformed is the former name of DeadLetters: either enables
	// dead letters.
	DeadLetterMalformed bool
	// BehindGrace is how long aviso-server may serve only sequences at or
	// below the bridge's position, within one connection, before the
	// supervisor reports it behind the checkpoint (Status.BehindCheckpoint,
	// WARN aviso.stream.behind_checkpoint; default 30 s).
	BehindGrace time.Duration
	// BehindWarnInterval is the least time between two WARNs of one
	// behind-checkpoint episode (default 5 min).
	BehindWarnInterval time.Duration
	// CheckpointName names the checkpoint in the behind-checkpoint hint
	// (`aviso-bridge checkpoint set NAME SEQ`): the listener name (default
	// the event type).
	CheckpointName string
	Logger         *slog.Logger
	Metrics        *bridge.Metrics
	Clock          Clock
	// Backoff for transport failures (default 250 ms doubling to 30 s).
	Backoff Backoff
	// ShutdownDelay is the wait after a server_shutdown close (default 5 s).
	ShutdownDelay time.Duration
	// ShortSession: immediate reconnects after sessions shorter than this
	// back off instead (default 1 s).
	ShortSession time.Duration
	// ProgressInterval bounds the INFO progress lines while catching up (default 5 s).
	ProgressInterval time.Duration
}

// Supervisor runs one watch (or replay) until its context ends, the replay
// completes, or a configuration error stops it.
type Supervisor struct {
	cfg Config
	log *slog.Logger
	m   *bridge.Metrics

	// Cursor state, owned by Run's goroutine.
	lastForwarded uint64
	haveForwarded bool   // lastForwarded is meaningful (a checkpoint, FromID-1, or a forwarded notification)
	fromDate      string // bootstrap date (AVISO_FROM_DATE or the pinned live start) until the first notification
	deadLetters   bool
	end           replayEnd
	behind        behindTracker

	mu     sync.Mutex
	status Status
}

// Status is the supervisor's view of the aviso connection, for readiness.
type Status struct {
	Connected bool
	// Reason says why it is not connected (empty when connected): "not
	// connected yet", a reconnect reason (the label of
	// aviso_bridge_reconnects_total), or "stopped" once Run returned.
	Reason string
	// Since is when Connected last changed (or New, before the first
	// connection), so that readiness can tolerate routine reconnects.
	Since time.Time
	// RequestID is the request id of the current (or last) connection.
	RequestID string
	// LastForwarded is the highest sequence handed to the pipeline.
	LastForwarded uint64
	HaveForwarded bool
	// BehindCheckpoint is non-empty, with a human-readable detail, while
	// aviso-server serves only sequences at or below the bridge's position
	// (its storage was reset, or the checkpoint comes from elsewhere): the
	// bridge is then not ready. It clears when a notification above the
	// position arrives.
	BehindCheckpoint string
}

// New validates cfg and fills defaults.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Client == nil || cfg.Pipeline == nil {
		return nil, errors.New("supervisor: Client and Pipeline are required")
	}
	if cfg.EventType == "" {
		return nil, &ConfigError{Setting: "AVISO_EVENT_TYPE", Err: errors.New("empty event type")}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = bridge.NopMetrics()
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Backoff.Base <= 0 {
		cfg.Backoff.Base = 250 * time.Millisecond
	}
	if cfg.Backoff.Max <= 0 {
		cfg.Backoff.Max = 30 * time.Second
	}
	if cfg.ShutdownDelay <= 0 {
		cfg.ShutdownDelay = 5 * time.Second
	}
	if cfg.ShortSession <= 0 {
		cfg.ShortSession = time.Second
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = 5 * time.Second
	}
	if cfg.BehindGrace <= 0 {
		cfg.BehindGrace = 30 * time.Second
	}
	if cfg.BehindWarnInterval <= 0 {
		cfg.BehindWarnInterval = 5 * time.Minute
	}
	if cfg.CheckpointName == "" {
		cfg.CheckpointName = cfg.EventType
	}
	if id := bytes.TrimSpace(cfg.Identifier); len(id) > 0 && (id[0] != '{' || !json.Valid(id)) {
		return nil, &ConfigError{Setting: "AVISO_IDENTIFIER", Err: fmt.Errorf("identifier %q is not a JSON object", truncate(string(id), 200))}
	}
	st := cfg.Start
	if st.FromID != nil && st.FromDate != "" {
		return nil, &ConfigError{Setting: "AVISO_FROM_ID or AVISO_FROM_DATE", Err: errors.New("set at most one start position")}
	}
	end, err := newReplayEnd(&cfg)
	if err != nil {
		return nil, err
	}
	for _, r := range reconnectReasons {
		cfg.Metrics.Reconnects(r)
	}
	s := &Supervisor{cfg: cfg, log: cfg.Logger, m: cfg.Metrics, end: end,
		deadLetters: cfg.DeadLetters || cfg.DeadLetterMalformed}
	switch {
	case st.HasCheckpoint:
		s.lastForwarded, s.haveForwarded = st.Checkpoint, true
	case st.FromID != nil:
		if *st.FromID > 0 {
			s.lastForwarded, s.haveForwarded = *st.FromID-1, true
		} else {
			// from_id 0 means "from the beginning": nothing to deduplicate against.
			s.fromDate = ""
		}
	case st.FromDate != "":
		s.fromDate = st.FromDate
	}
	if cfg.Mode == aviso.Replay && !s.haveForwarded && s.fromDate == "" && st.FromID == nil {
		return nil, &ConfigError{Setting: "AVISO_FROM_ID or AVISO_FROM_DATE", Err: errors.New("AVISO_MODE=replay needs a start position (no checkpoint exists yet)")}
	}
	s.status.Reason, s.status.Since = "not connected yet", cfg.Clock.Now()
	return s, nil
}

// Status returns the current connection status.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Supervisor) setConnected(requestID string) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	if !s.status.Connected {
		s.status.Since = now
	}
	s.status.Connected, s.status.Reason, s.status.RequestID = true, "", requestID
	s.mu.Unlock()
	s.m.Connected.Set(1)
}

func (s *Supervisor) setDisconnected(reason string) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	if s.status.Connected {
		s.status.Since = now
	}
	s.status.Connected, s.status.Reason = false, reason
	s.mu.Unlock()
	s.m.Connected.Set(0)
}

func (s *Supervisor) setForwarded(seq uint64) {
	s.lastForwarded, s.haveForwarded, s.fromDate = seq, true, ""
	s.mu.Lock()
	s.status.LastForwarded, s.status.HaveForwarded = seq, true
	s.mu.Unlock()
}

// policy is how to wait before the next connection.
type policy int

const (
	policyImmediate  policy = iota // routine rotation: at once (short sessions back off)
	policyShutdown                 // server_shutdown: fixed delay
	policyBackoff                  // full-jitter exponential
	policyRetryAfter               // the server's Retry-After
	policyAuth                     // first 401 of a cycle: refresh credentials, at once
	policyProgress                 // replay limit: at once while paging makes progress
)

// outcome is how one session ended.
type outcome struct {
	done       bool  // replay finished: stop cleanly
	fatal      error // stop with this error
	reason     string
	policy     policy
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
}

// Run connects, reads, and reconnects until ctx is done (returns ctx.Err()),
// a replay completes or reaches its end (Config.ToID/ToDate, or the pinned
// end_sequence; returns nil: the caller then calls CloseInput on the
// pipeline, drains, commits and exits 0), or a failure that retrying cannot fix (a
// *ConfigError, or the pipeline's error, such as bridge.ErrStopped when the
// pipeline stopped first: its Run error is then the one to report).
//
// Run must be called at most once.
func (s *Supervisor) Run(ctx context.Context) error {
	var (
		attempt       int  // consecutive failures since the last confirmed opening
		shortSessions int  // consecutive sessions shorter than ShortSession
		authRetried   bool // the immediate retry after a 401 was used in this failure cycle
		lastLimitSeq  uint64
		limitStreak   int
		refresh       bool // re-read the credentials before the next request (after a 401)
	)
	defer s.setDisconnected("stopped")
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if refresh {
			refresh = false
			if err := s.cfg.Client.Credentials.Refresh(ctx); err != nil {
				s.log.Error("aviso.auth.refresh_failed", "error", err.Error(),
					"hint", "check AVISO_TOKEN_FILE or AVISO_PASSWORD_FILE")
			} else {
				s.log.Info("aviso.auth.refreshed")
			}
		}
		begun := s.cfg.Clock.Now()
		out := s.session(ctx)
		if out.fatal != nil {
			if ce := (*ConfigError)(nil); errors.As(out.fatal, &ce) {
				s.log.Error("aviso.config_error", "setting", ce.Setting, "error", ce.Err.Error())
			}
			return out.fatal
		}
		if out.done {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if out.confirmed || out.progressed {
			attempt = 0
			authRetried = false
		}
		// A short session that forwarded something is not a hot loop: a
		// server rotating connections every few hundred notifications is
		// followed at once, not slowed to 30 s pauses.
		short := !out.progressed && s.cfg.Clock.Now().Sub(begun) < s.cfg.ShortSession
		if short {
			shortSessions++
		} else {
			shortSessions = 0
		}

		var delay time.Duration
		used := attempt // the backoff attempt this delay is drawn for
		switch out.policy {
		case policyImmediate:
			if short {
				used = shortSessions - 1
				delay = s.cfg.Backoff.Delay(used)
			}
		case policyProgress:
			if s.haveForwarded && s.lastForwarded == lastLimitSeq {
				limitStreak++
				used = limitStreak - 1
				delay = s.cfg.Backoff.Delay(used)
			} else {
				limitStreak = 0
			}
			lastLimitSeq = s.lastForwarded
		case policyShutdown:
			delay = s.cfg.ShutdownDelay
		case policyRetryAfter:
			delay = out.retryAfter
			attempt++
		case policyAuth:
			refresh = true
			if !authRetried {
				authRetried = true
			} else {
				delay = s.cfg.Backoff.Delay(attempt)
				attempt++
			}
		case policyBackoff:
			delay = s.cfg.Backoff.Delay(attempt)
			attempt++
		}
		s.m.Reconnects(out.reason).Inc()
		s.setDisconnected(out.reason)
		level := slog.LevelInfo
		if out.policy == policyBackoff || out.policy == policyAuth || out.policy == policyRetryAfter {
			level = slog.LevelWarn
		}
		attrs := []any{"reason", out.reason, "delay_ms", delay.Milliseconds(), "attempt", used, "request_id", out.requestID}
		if out.err != nil {
			attrs = append(attrs, "error", out.err.Error())
		}
		if s.haveForwarded {
			attrs = append(attrs, "last_forwarded", s.lastForwarded)
		}
		s.log.Log(ctx, level, "aviso.connection.retrying", attrs...)
		if err := s.cfg.Clock.Sleep(ctx, delay); err != nil {
			return err
		}
	}
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
func (s *Supervisor) session(ctx context.Context) (out outcome) {
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

	rid := firstNonEmpty(st.Opening.RequestID, st.RequestID)
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
		// Live-only start: pin it to the server's clock so a reconnect
		// before the first notification asks for everything since then.
		if ts := st.Opening.Timestamp; ts != "" {
			s.fromDate = ts
			s.log.Info("aviso.start.pinned", "from_date", ts, "request_id", rid)
		} else {
			s.log.Warn("aviso.start.unpinned", "request_id", rid,
				"hint", "connection_established carried no timestamp: a reconnect before the first notification resumes live and may miss notifications")
		}
	}

	forwarded := 0
	defer func() { out.progressed = out.progressed || forwarded > 0 }()
	replayCompleted := false
	prog := progress{at: s.cfg.Clock.Now()}
	for {
		f, err := st.Next()
		if err != nil {
			if ctx.Err() != nil {
				return outcome{fatal: ctx.Err()}
			}
			return s.streamFailure(ctx, err, rid)
		}
		switch f.Kind {
		case aviso.KindNotification:
			if s.end.beyond(f.Notification.Sequence, f.Notification.Time) {
				return s.finished(rid, fmt.Sprintf("sequence %d is past the end of the replay", f.Notification.Sequence))
			}
			ok, err := s.forward(ctx, &f.Notification)
			if err != nil {
				if ctx.Err() != nil {
					return outcome{fatal: ctx.Err()}
				}
				return outcome{fatal: err}
			}
			if ok {
				forwarded++
				s.progress(&prog, &f.Notification, !replayCompleted && st.Opening.Kind == aviso.KindReplayStarted)
				if s.end.reached(s) {
					return s.finished(rid, "the end of the replay was forwarded")
				}
			}
		case aviso.KindHeartbeat:
			s.behind.tick(s)
		case aviso.KindDecodeError:
			if err := s.malformed(ctx, f, rid); err != nil {
				if ctx.Err() != nil {
					return outcome{fatal: ctx.Err()}
				}
				return outcome{fatal: err}
			}
		case aviso.KindReplayCompleted:
			if !replayCompleted {
				replayCompleted = true
				s.log.Info("aviso.replay.completed", "request_id", rid, "last_forwarded", s.lastForwarded)
			}
		case aviso.KindReplayLimitReached:
			s.m.ReplayLimitsReached.Inc()
			s.log.Info("aviso.replay.limit_reached", "max_allowed", f.MaxAllowed, "request_id", rid,
				"last_forwarded", s.lastForwarded, "action", "reconnecting from the cursor to keep paging")
			return outcome{reason: reasonReplayLimit, policy: policyProgress, requestID: rid, confirmed: true}
		case aviso.KindServerError:
			if out, stop := s.serverError(ctx, &f, rid); stop {
				return out
			}
		case aviso.KindClosing:
			return s.closing(f, rid, replayCompleted)
		}
	}
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
	n := Convert(an, s.cfg.Clock.Now())
	if err := s.cfg.Pipeline.Submit(ctx, &n); err != nil {
		return false, err
	}
	s.setForwarded(an.Sequence)
	return true, nil
}

// Convert turns a decoded aviso notification into the bridge's, received at
// received. The byte slices alias an's (the frame's own copy of the event).
func Convert(an *aviso.Notification, received time.Time) bridge.Notification {
	n := bridge.Notification{
		EventType:       an.EventType,
		Sequence:        an.Sequence,
		ID:              an.ID,
		Source:          an.Source,
		Type:            an.Type,
		DataSchema:      an.DataSchema,
		DataContentType: an.DataContentType,
		TimeRaw:         an.Time,
		Identifier:      an.Identifier,
		Data:            an.Data,
		CloudEvent:      an.CloudEvent,
		Received:        received,
	}
	if an.Time != "" {
		if t, err := time.Parse(time.RFC3339Nano, an.Time); err == nil {
			n.Time = t
		}
	}
	return n
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
	err := s.cfg.Pipeline.DeadLetter(ctx, bridge.DeadLetter{Kind: bridge.DeadLetterMalformed, Raw: raw, Event: f.Event, Reason: reason})
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// closing maps a connection-closing frame to the next step.
func (s *Supervisor) closing(f aviso.Frame, rid string, replayCompleted bool) outcome {
	rid = firstNonEmpty(f.RequestID, rid)
	s.log.Info("aviso.connection.closing", "reason", f.Reason, "message", f.Message, "request_id", rid)
	switch f.Reason {
	case "max_duration_reached":
		return outcome{reason: reasonMaxDuration, policy: policyImmediate, requestID: rid, confirmed: true}
	case "server_shutdown":
		return outcome{reason: reasonShutdown, policy: policyShutdown, requestID: rid, confirmed: true}
	case "end_of_stream":
		if s.cfg.Mode == aviso.Replay && replayCompleted {
			return s.finished(rid, "replay_completed")
		}
		return outcome{reason: reasonEndOfStream, policy: policyImmediate, requestID: rid, confirmed: true}
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
		return outcome{reason: reasonUnknownClose, policy: policyBackoff, requestID: rid, err: err}
	}
}

// streamFailure classifies an error from Stream.Next.
func (s *Supervisor) streamFailure(ctx context.Context, err error, rid string) outcome {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return outcome{reason: reasonEOF, policy: policyBackoff, requestID: rid, err: err, confirmed: true}
	case errors.Is(err, aviso.ErrIdleTimeout):
		return outcome{reason: reasonIdle, policy: policyBackoff, requestID: rid, err: err, confirmed: true}
	case errors.Is(err, aviso.ErrEventTooLarge):
		return s.tooLarge(ctx, err, rid)
	}
	return outcome{reason: reasonTransport, policy: policyBackoff, requestID: rid, err: err, confirmed: true}
}

// tooLarge handles an event larger than the client's MaxEventSize, which
// ends the connection. It is a malformed frame: counted, dead-lettered (its
// tail) when configured, and skipped when aviso recovered its sequence, so
// the reconnect resumes after it. Without a sequence the reconnect from the
// cursor meets the same event again; the session is then not confirmed, so
// the backoff grows to its ceiling instead of hammering the server.
func (s *Supervisor) tooLarge(ctx context.Context, err error, rid string) outcome {
	s.m.MalformedFrames.Inc()
	out := outcome{reason: reasonEventTooLarge, policy: policyBackoff, requestID: rid, err: err}
	var te *aviso.EventTooLargeError
	skip := errors.As(err, &te) && recoveredOwnID(te) && (!s.haveForwarded || te.Sequence > s.lastForwarded)
	attrs := []any{"error", err.Error(), "request_id", rid, "dead_lettered", s.deadLetters}
	if skip {
		attrs = append(attrs, "sequence", te.Sequence, "action", "skipped: resuming after it",
			"hint", "raise AVISO_MAX_EVENT_SIZE to forward such notifications")
	} else {
		attrs = append(attrs, "last_forwarded", s.lastForwarded, "action", "reconnecting from the cursor after a backoff",
			"hint", "raise AVISO_MAX_EVENT_SIZE: the stream cannot move past this event")
	}
	s.log.Error("aviso.frame.too_large", attrs...)
	if s.deadLetters && te != nil {
		dl := bridge.DeadLetter{Kind: bridge.DeadLetterMalformed, Raw: te.Tail, Reason: err.Error() + " (body: the end of the event only)"}
		if derr := s.cfg.Pipeline.DeadLetter(ctx, dl); derr != nil {
			if ctx.Err() != nil {
				return outcome{fatal: ctx.Err()}
			}
			return outcome{fatal: derr}
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
				return outcome{fatal: &ConfigError{Setting: "AVISO_TOKEN, AVISO_TOKEN_FILE or AVISO_USERNAME/AVISO_PASSWORD",
					Err: fmt.Errorf("aviso-server requires credentials and none are configured: %w", he)}}
			}
			// Run re-reads the credentials right before the retry, so a
			// secret rotated during the wait is used at once.
			return outcome{reason: reasonUnauthorized, policy: policyAuth, requestID: rid, err: he}
		case he.Throttled():
			if he.HasRetryAfter {
				return outcome{reason: reasonThrottled, policy: policyRetryAfter, retryAfter: he.RetryAfter, requestID: rid, err: he}
			}
			return outcome{reason: reasonThrottled, policy: policyBackoff, requestID: rid, err: he}
		case he.ServerError():
			return outcome{reason: reasonHTTP5xx, policy: policyBackoff, requestID: rid, err: he}
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
			"hint", "check that AVISO_URL points to an aviso-server")
		return outcome{reason: reason, policy: policyBackoff, requestID: pe.RequestID, err: pe}
	case errors.Is(err, aviso.ErrInvalidRequest):
		// The client cannot even form the request (New already checked the
		// identifier and the event type): the base URL.
		return outcome{fatal: &ConfigError{Setting: "AVISO_URL", Err: err}}
	case errors.Is(err, aviso.ErrCredentials):
		// An unreadable or empty token/password file: a rotated secret may be
		// in the middle of being replaced, so retry (not ready meanwhile).
		s.log.Error("aviso.auth.unavailable", "error", err.Error(),
			"hint", "check AVISO_TOKEN_FILE or AVISO_PASSWORD_FILE")
		return outcome{reason: reasonCredentials, policy: policyBackoff, err: err}
	case errors.Is(err, aviso.ErrIdleTimeout):
		return outcome{reason: reasonIdle, policy: policyBackoff, err: err}
	}
	return outcome{reason: reasonTransport, policy: policyBackoff, err: err}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "...(truncated)"
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
