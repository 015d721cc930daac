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
	ctx, bin := buildBridge(t)
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

// TestFleetTimeline runs the fail-over timeline short (two listeners, kill
// -9 after 2 s, restart 4 s later, 1 s more once spread again) and checks
// what the bench's figure shows: every notification published for each
// listener is stored once in the stream (none lost across the kill -9,
// none stored twice), both bridges ran some listener before the kill,
// every listener has notifications stored after the rejoin, and the marks
// are in the order of the run.
func TestFleetTimeline(t *testing.T) {
	ctx, bin := buildBridge(t)
	r, err := FleetTimeline(ctx, FleetTimelineConfig{Binary: bin, Rates: []int{10, 20},
		Before: 2 * time.Second, Down: 4 * time.Second, After: time.Second, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Marks) != 4 {
		t.Fatalf("marks %+v, want kill, take-over, restart, spread", r.Marks)
	}
	for i := 1; i < len(r.Marks); i++ {
		if r.Marks[i].At < r.Marks[i-1].At {
			t.Errorf("mark %q at %v before %q at %v", r.Marks[i].Label, r.Marks[i].At, r.Marks[i-1].Label, r.Marks[i-1].At)
		}
	}
	rejoined := r.Marks[3].At
	on := map[string]bool{}
	for _, l := range r.Listeners {
		on[l.FirstOn] = true
		if l.Published == 0 || l.Stored != l.Published {
			t.Errorf("%s: %d published, %d stored: want every one stored once", l.Name, l.Published, l.Stored)
		}
		after := 0
		for b := int(rejoined / r.Bucket); b < len(l.Counts); b++ {
			after += l.Counts[b]
		}
		if after == 0 {
			t.Errorf("%s: nothing stored after the spread at %v: counts %v", l.Name, rejoined, l.Counts)
		}
		t.Logf("%s: %d stored, longest gap %v", l.Label(), l.Stored, l.LongestGap)
	}
	if !on["bridge-a"] || !on["bridge-b"] {
		t.Errorf("before the kill the listeners ran on %v, want both bridges", on)
	}
}

// buildBridge builds cmd/aviso-bridge for a test (skipped without a go
// command) and returns a context of three minutes for it.
func buildBridge(t *testing.T) (context.Context, string) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build cmd/aviso-bridge:", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	bin, err := BuildBinary(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return ctx, bin
}
