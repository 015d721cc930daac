package supervisor

import (
	"context"
	"math/rand/v2"
	"time"
)

// Clock is the supervisor's source of time. Tests inject one that records
// the delays asked for and returns at once.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx is done (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Backoff computes full-jitter exponential delays: uniform in
// [0, min(Base x 2^attempt, Max)).
type Backoff struct {
	Base time.Duration // 250 ms
	Max  time.Duration // 30 s
	// Rand returns a float in [0, 1); nil uses math/rand/v2.
	Rand func() float64
}

// Ceiling is the exclusive upper bound of the delay for attempt (0-based).
func (b Backoff) Ceiling(attempt int) time.Duration {
	if attempt < 0 {
		attempt = 0
	}
	if attempt > 20 {
		attempt = 20
	}
	c := b.Base << attempt
	if c > b.Max || c <= 0 {
		c = b.Max
	}
	return c
}

// Delay returns a random delay for attempt (0-based).
func (b Backoff) Delay(attempt int) time.Duration {
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	return time.Duration(r() * float64(b.Ceiling(attempt)))
}
