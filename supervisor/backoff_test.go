package supervisor_test

import (
	"math"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

func TestBackoffCeiling(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	tests := []struct {
		name    string
		b       supervisor.Backoff
		attempt int
		want    time.Duration
	}{
		{"zero value, attempt 0", supervisor.Backoff{}, 0, 250 * ms},
		{"negative attempt", supervisor.Backoff{}, -3, 250 * ms},
		{"attempt 1", supervisor.Backoff{}, 1, 500 * ms},
		{"attempt 2", supervisor.Backoff{}, 2, time.Second},
		{"attempt 3", supervisor.Backoff{}, 3, 2 * time.Second},
		{"attempt 4", supervisor.Backoff{}, 4, 4 * time.Second},
		{"attempt 5", supervisor.Backoff{}, 5, 8 * time.Second},
		{"attempt 6", supervisor.Backoff{}, 6, 16 * time.Second},
		{"attempt 7 is capped", supervisor.Backoff{}, 7, 30 * time.Second},
		{"huge attempt", supervisor.Backoff{}, math.MaxInt, 30 * time.Second},
		{"explicit schedule", supervisor.Backoff{Base: 10 * ms, Max: 100 * ms}, 3, 80 * ms},
		{"explicit cap", supervisor.Backoff{Base: 10 * ms, Max: 100 * ms}, 4, 100 * ms},
		{"base above max", supervisor.Backoff{Base: time.Minute, Max: time.Second}, 0, time.Second},
		{"no overflow", supervisor.Backoff{Base: 5 << 42, Max: math.MaxInt64}, 40, math.MaxInt64},
		{"no overflow below max", supervisor.Backoff{Base: 1 << 40, Max: math.MaxInt64}, 22, 1 << 62},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.b.Ceiling(tc.attempt); got != tc.want {
				t.Fatalf("Ceiling(%d) = %v, want %v", tc.attempt, got, tc.want)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		rand    float64
		attempt int
		want    time.Duration
	}{
		{"bottom of the window", 0, 2, 0},
		{"middle", 0.5, 2, 500 * time.Millisecond},
		{"top stays exclusive", 0.9999999999, 0, 250*time.Millisecond - 1},
		{"a bad source cannot reach the ceiling", 1, 0, 250*time.Millisecond - 1},
		{"nor go negative", -1, 0, 0},
		{"capped window", 0.5, 12, 15 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := supervisor.Backoff{Rand: func() float64 { return tc.rand }}
			if got := b.Delay(tc.attempt); got != tc.want {
				t.Fatalf("Delay(%d) with rand %v = %v, want %v", tc.attempt, tc.rand, got, tc.want)
			}
		})
	}
	t.Run("default source spans the window", func(t *testing.T) {
		var b supervisor.Backoff
		var lo, hi bool
		for i := 0; i < 2000; i++ {
			d := b.Delay(1)
			if d < 0 || d >= 500*time.Millisecond {
				t.Fatalf("Delay(1) = %v, outside [0, 500ms)", d)
			}
			lo = lo || d < 250*time.Millisecond
			hi = hi || d >= 250*time.Millisecond
		}
		if !lo || !hi {
			t.Fatalf("2000 draws all in one half of the window (low %v, high %v)", lo, hi)
		}
	})
}
