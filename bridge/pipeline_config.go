package bridge

import (
	"cmp"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Defaults of PipelineConfig (README, "Configuration").
const (
	DefaultMaxInFlight        = 256
	DefaultMaxInFlightBytes   = 64 << 20
	DefaultCheckpointInterval = time.Second
	DefaultShutdownTimeout    = 20 * time.Second
	DefaultCommitTimeout      = 5 * time.Second
)

// PipelineConfig configures a Pipeline. The zero value of every field means
// its default.
type PipelineConfig struct {
	// MaxInFlight is BRIDGE_MAX_IN_FLIGHT: the most notifications in the
	// window (received and not yet acknowledged). Build the sink with the same
	// value so that its Acks buffer holds a full window. Default 256.
	MaxInFlight int
	// MaxInFlightBytes is BRIDGE_MAX_IN_FLIGHT_BYTES: the most bytes held
	// by notifications submitted and not yet acknowledged, the input buffer
	// in front of the window included (see NotificationSize: a notification
	// counts twice its CloudEvent, for the sink's copy). Submit blocks
	// while the next notification would pass it; one notification larger
	// than the bound still passes, alone. Default 64 MiB.
	MaxInFlightBytes int64
	// CheckpointInterval is CHECKPOINT_INTERVAL: the longest an advanced
	// position waits before it is committed. Default 1s.
	CheckpointInterval time.Duration
	// ShutdownTimeout is BRIDGE_SHUTDOWN_TIMEOUT: once the Run context is
	// cancelled, the deadline of the drain and the final commit together,
	// counted from the cancellation. Drain sets an explicit deadline
	// instead. Default 20s.
	ShutdownTimeout time.Duration
	// CommitTimeout bounds the final commit when Run stops without a
	// deadline (the input was closed, or a fatal error); it runs on a
	// context detached from Run's. Default 5s.
	CommitTimeout time.Duration
	// OnReject is BRIDGE_ON_REJECT. Default RejectFail.
	OnReject RejectPolicy
	// Start is the checkpoint loaded from the store (nil when none). Nothing
	// at or below it is ever committed, and Submit refuses sequences at or
	// below it.
	Start *Checkpoint
	// Backoff returns the pause before retry number attempt (1, 2, ...)
	// after a retryable sink, dead-letter or final-commit failure. It is
	// called from Run and from DeadLetter, so it must be safe for concurrent
	// use. Default DefaultBackoff.
	Backoff func(attempt int) time.Duration
	// Logger defaults to a logger that discards.
	Logger *slog.Logger
	// Metrics defaults to NopMetrics().
	Metrics *Metrics
	// Now defaults to time.Now.
	Now func() time.Time
}

// DefaultBackoff is exponential backoff with jitter: 100 ms doubling per
// attempt up to 10 s, each pause drawn uniformly from [d/2, d].
func DefaultBackoff(attempt int) time.Duration {
	const base, limit = 100 * time.Millisecond, 10 * time.Second
	d := limit
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 8 {
		d = min(base<<(attempt-1), limit)
	}
	return d/2 + rand.N(d/2+1)
}

// validate refuses negative bounds and an unknown OnReject. Each error is
// a *FieldError naming the field to fix.
func (cfg PipelineConfig) validate() error {
	switch {
	case cfg.MaxInFlight < 0:
		return FieldErrorf("MaxInFlight", "%d must be positive", cfg.MaxInFlight)
	case cfg.MaxInFlightBytes < 0:
		return FieldErrorf("MaxInFlightBytes", "%d must be positive", cfg.MaxInFlightBytes)
	case cfg.CheckpointInterval < 0:
		return FieldErrorf("CheckpointInterval", "%s must be positive", cfg.CheckpointInterval)
	case cfg.ShutdownTimeout < 0:
		return FieldErrorf("ShutdownTimeout", "%s must not be negative", cfg.ShutdownTimeout)
	case cfg.CommitTimeout < 0:
		return FieldErrorf("CommitTimeout", "%s must not be negative", cfg.CommitTimeout)
	}
	if cfg.OnReject != "" {
		if _, err := ParseRejectPolicy(string(cfg.OnReject)); err != nil {
			return FieldErrorf("OnReject", "%w", err)
		}
	}
	return nil
}

// withDefaults returns cfg with every zero field set to its default and
// its own copy of Start.
func (cfg PipelineConfig) withDefaults() PipelineConfig {
	cfg.MaxInFlight = cmp.Or(cfg.MaxInFlight, DefaultMaxInFlight)
	cfg.MaxInFlightBytes = cmp.Or(cfg.MaxInFlightBytes, DefaultMaxInFlightBytes)
	cfg.CheckpointInterval = cmp.Or(cfg.CheckpointInterval, DefaultCheckpointInterval)
	cfg.ShutdownTimeout = cmp.Or(cfg.ShutdownTimeout, DefaultShutdownTimeout)
	cfg.CommitTimeout = cmp.Or(cfg.CommitTimeout, DefaultCommitTimeout)
	cfg.OnReject = cmp.Or(cfg.OnReject, RejectFail)
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Start != nil {
		s := *cfg.Start
		cfg.Start = &s
	}
	return cfg
}
