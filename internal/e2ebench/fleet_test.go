package e2ebench

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestFleetSmoke runs the fleet measurements small: a few listeners at rest
// for two seconds, one kill -9 and one SIGTERM hand-over. Each runner checks
// readiness, the spread and the exit codes and fails otherwise; the numbers
// are not judged here (they are the bench table's).
func TestFleetSmoke(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build cmd/aviso-bridge:", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	bin, err := BuildBinary(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("idle", func(t *testing.T) {
		r, err := FleetIdle(ctx, FleetIdleConfig{Binary: bin, Listeners: 20, Measure: 2 * time.Second, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if r.Listeners != 20 || r.Measured < 2*time.Second || r.Ready <= 0 {
			t.Fatalf("result %+v: want 20 listeners measured at least 2 s after a positive start-up", r)
		}
		t.Logf("20 listeners: ready after %v, CPU %.2f %% of one core, peak RSS %.1f MiB", r.Ready, r.CPUPercent(), float64(r.PeakRSS)/(1<<20))
	})
	t.Run("failover", func(t *testing.T) {
		r, err := FleetFailover(ctx, FleetFailoverConfig{Binary: bin, Listeners: 4, Rounds: 1, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kill) != 1 || len(r.Term) != 1 || r.Kill[0] <= 0 || r.Term[0] <= 0 {
			t.Fatalf("result %+v: want one positive kill -9 and one SIGTERM hand-over", r)
		}
		t.Logf("TTL %v: kill -9 %v, SIGTERM %v", r.TTL, r.Kill[0], r.Term[0])
	})
}
