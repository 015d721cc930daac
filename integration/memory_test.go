package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/internal/e2ebench"
)

// TestMemoryStalledStdout: 200 notifications of 0.9 MB replayed into
// SINK=stdout whose reader never reads. The byte-bounded window
// (BRIDGE_MAX_IN_FLIGHT_BYTES, default 64MiB) keeps the bridge's peak RSS
// under 400 MiB (before it: 800-935 MB, every notification in the window
// and in the sink's buffer). SIGTERM then stops it with exit 0 and no
// checkpoint, since nothing was acknowledged. Memory is asserted, never
// time.
func TestMemoryStalledStdout(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("peak RSS is read from /proc (Linux only)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	res, err := e2ebench.Stalled(ctx, e2ebench.StalledConfig{Binary: binary, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("peak RSS %.1f MiB, SIGTERM to exit %v", float64(res.PeakRSS)/(1<<20), res.Stop)
	if res.PeakRSS <= 0 {
		t.Fatal("peak RSS unknown")
	}
	if limit := int64(400 << 20); res.PeakRSS >= limit {
		t.Errorf("peak RSS %.1f MiB, want under %d MiB", float64(res.PeakRSS)/(1<<20), limit>>20)
	}
	if res.ExitErr != nil {
		t.Errorf("exit after SIGTERM: %v, want 0", res.ExitErr)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "checkpoint.json")); err == nil && strings.Contains(string(b), "last_committed_sequence") {
		t.Errorf("checkpoint after a stop with nothing acknowledged: %s", b)
	}
}
