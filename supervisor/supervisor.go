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
	"log/slog"
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
	// BehindGrace is how long aviso-server may serve only sequences at or
	// below the bridge's position, within one connection, before the
	// supervisor reports it behind the checkpoint (Status.BehindCheckpoint,
	// WARN aviso.stream.behind_checkpoint; default 30 s).
	BehindGrace time.Duration
	// BehindWarnInterval is the least time between two WARNs of one
	// behind-checkpoint episode (default 5 min).
	BehindWarnInterval time.Duration
	// Listener is the name of the listener this supervisor runs
	// (AVISO_LISTENER_NAME or the name in AVISO_LISTENERS_FILE; default the
	// event type). Every notification it forwards carries it
	// (bridge.Notification.Listener, the {listener} placeholder).
	Listener string
	// CheckpointName names the checkpoint in the behind-checkpoint hint
	// (`aviso-bridge checkpoint set NAME SEQ`): the listener name (default
	// Listener).
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
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	end, err := newReplayEnd(&cfg)
	if err != nil {
		return nil, err
	}
	st := cfg.Start
	if cfg.Mode == aviso.Replay && !st.HasCheckpoint && st.FromID == nil && st.FromDate == "" {
		return nil, &ConfigError{Setting: "{Start.FromID} or {Start.FromDate}", Err: errors.New("a replay needs a start position (no checkpoint exists yet)")}
	}
	for _, r := range reconnectReasons {
		cfg.Metrics.Reconnects(r)
	}
	s := &Supervisor{cfg: cfg, log: cfg.Logger, m: cfg.Metrics, end: end,
		deadLetters: cfg.DeadLetters}
	switch {
	case st.HasCheckpoint:
		s.lastForwarded, s.haveForwarded = st.Checkpoint, true
	case st.FromID != nil && *st.FromID > 0:
		s.lastForwarded, s.haveForwarded = *st.FromID-1, true
	case st.FromID != nil:
		// from_id 0 means "from the beginning": nothing to deduplicate against.
	case st.FromDate != "":
		s.fromDate = st.FromDate
	}
	s.status.Reason, s.status.Since = "not connected yet", cfg.Clock.Now()
	return s, nil
}

// validate checks what New cannot default.
func (cfg *Config) validate() error {
	if cfg.Client == nil || cfg.Pipeline == nil {
		return errors.New("supervisor: Client and Pipeline are required")
	}
	if cfg.EventType == "" {
		return &ConfigError{Setting: "{EventType}", Err: errors.New("empty event type")}
	}
	if id := bytes.TrimSpace(cfg.Identifier); len(id) > 0 && (id[0] != '{' || !json.Valid(id)) {
		return &ConfigError{Setting: "{Identifier}", Err: fmt.Errorf("identifier %q is not a JSON object", truncate(string(id), 200))}
	}
	if cfg.Start.FromID != nil && cfg.Start.FromDate != "" {
		return &ConfigError{Setting: "{Start.FromID} or {Start.FromDate}", Err: errors.New("set at most one start position")}
	}
	return nil
}

// setDefaults fills the fields left zero with their documented defaults.
func (cfg *Config) setDefaults() {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = bridge.NopMetrics()
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Listener == "" {
		cfg.Listener = cfg.EventType
	}
	if cfg.CheckpointName == "" {
		cfg.CheckpointName = cfg.Listener
	}
	orDefault(&cfg.Backoff.Base, 250*time.Millisecond)
	orDefault(&cfg.Backoff.Max, 30*time.Second)
	orDefault(&cfg.ShutdownDelay, 5*time.Second)
	orDefault(&cfg.ShortSession, time.Second)
	orDefault(&cfg.ProgressInterval, 5*time.Second)
	orDefault(&cfg.BehindGrace, 30*time.Second)
	orDefault(&cfg.BehindWarnInterval, 5*time.Minute)
}

// orDefault sets *d to def unless it is positive.
func orDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
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

// Run connects, reads, and reconnects until ctx is done (returns ctx.Err()),
// a replay completes or reaches its end (Config.ToID/ToDate, or the pinned
// end_sequence; returns nil: the caller then calls CloseInput on the
// pipeline, drains, commits and exits 0), or a failure that retrying cannot fix (a
// *ConfigError, or the pipeline's error, such as bridge.ErrStopped when the
// pipeline stopped first: its Run error is then the one to report).
//
// Run must be called at most once.
func (s *Supervisor) Run(ctx context.Context) error {
	defer s.setDisconnected("stopped")
	p := newPolicy(&s.cfg)
	refresh := false // re-read the credentials before the next request (after a 401)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if refresh {
			s.refreshCredentials(ctx)
		}
		begun := s.cfg.Clock.Now()
		out := s.session(ctx)
		out.lasted = s.cfg.Clock.Now().Sub(begun)
		out.position, out.hasPosition = s.lastForwarded, s.haveForwarded
		d := p.next(&out)
		if d.stop {
			if ce := (*ConfigError)(nil); errors.As(d.err, &ce) {
				s.log.Error("aviso.config_error", "setting", ce.Setting, "error", ce.Err.Error())
			}
			return d.err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		refresh = d.refresh
		s.retrying(ctx, &out, d)
		if err := s.cfg.Clock.Sleep(ctx, d.delay); err != nil {
			return err
		}
	}
}

// refreshCredentials re-reads the token or password file after a 401.
func (s *Supervisor) refreshCredentials(ctx context.Context) {
	if err := s.cfg.Client.Credentials.Refresh(ctx); err != nil {
		s.log.Error("aviso.auth.refresh_failed", "error", err.Error(),
			"hint", "check the token or password file")
		return
	}
	s.log.Info("aviso.auth.refreshed")
}

// retrying counts, reports and logs the reconnect that d decided after out.
func (s *Supervisor) retrying(ctx context.Context, out *outcome, d decision) {
	s.m.Reconnects(out.reason).Inc()
	s.setDisconnected(out.reason)
	level := slog.LevelInfo
	if out.retry.warns() {
		level = slog.LevelWarn
	}
	attrs := []any{"reason", out.reason, "delay", d.delay.String(), "attempt", d.attempt, "request_id", out.requestID}
	if out.err != nil {
		attrs = append(attrs, "error", out.err.Error())
	}
	if s.haveForwarded {
		attrs = append(attrs, "last_forwarded", s.lastForwarded)
	}
	s.log.Log(ctx, level, "aviso.connection.retrying", attrs...)
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
