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

// Backoff configures the full-jitter exponential delays between failed
// connections: uniform in [0, min(Base x 2^attempt, Max)). The zero value
// is the default schedule.
type Backoff struct {
	Base time.Duration // first window (0: 250 ms)
	Max  time.Duration // largest window (0: 30 s)
	// Rand returns a float in [0, 1); nil uses math/rand/v2.
	Rand func() float64
}

// ceiling is the exclusive upper bound of the delay for attempt (0-based;
// negative counts as 0).
func (b Backoff) ceiling(attempt int) time.Duration {
	base, ceil := b.Base, b.Max
	if base <= 0 {
		base = 250 * time.Millisecond
	}
	if ceil <= 0 {
		ceil = 30 * time.Second
	}
	c := min(base, ceil)
	for i := 0; i < attempt && c < ceil; i++ {
		if c > ceil/2 {
			return ceil
		}
		c *= 2
	}
	return c
}

// delay returns a random delay for attempt (0-based), in [0, ceiling(attempt)).
func (b Backoff) delay(attempt int) time.Duration {
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	c := b.ceiling(attempt)
	d := time.Duration(r() * float64(c))
	return max(0, min(d, c-1))
}
