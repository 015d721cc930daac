package e2ebench

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestSmoke runs every runner with a few hundred notifications. Each runner
// checks that every notification reached its destination (acknowledgement
// count, committed checkpoint, messages in the stream or topic) and fails
// otherwise; speed is never judged here.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)

	t.Run("decode", func(t *testing.T) {
		res, err := Decode(ctx, DecodeConfig{N: 300, Passes: 2})
		if err != nil {
			t.Fatal(err)
		}
		if res.Aviso.Frames != 600 || res.Raw.Frames != 600 {
			t.Fatalf("decoded %d and scanned %d notifications, want 600 each", res.Aviso.Frames, res.Raw.Frames)
		}
		if res.FrameBytes < 550 || res.FrameBytes > 650 {
			t.Errorf("%.1f bytes per notification, want about %d", res.FrameBytes, DefaultFrameSize)
		}
	})
	for _, tc := range []struct {
		name      string
		run       func(context.Context, ThroughputConfig) (ThroughputResult, error)
		unbounded bool
	}{
		{"jetstream", JetStream, false},
		{"kafka", Kafka, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := tc.run(ctx, ThroughputConfig{N: 500, Rounds: 2, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if res.Bridge.Messages != 500 || res.Bare.Messages != 500 {
				t.Fatalf("bridge %d, bare %d messages, want 500 each", res.Bridge.Messages, res.Bare.Messages)
			}
			if want := map[bool]int{true: 500}[tc.unbounded]; res.Unbounded.Messages != want {
				t.Fatalf("unbounded bare %d messages, want %d", res.Unbounded.Messages, want)
			}
		})
	}
	t.Run("discard", func(t *testing.T) {
		res, err := Discard(ctx, ThroughputConfig{N: 500, Rounds: 2, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Messages != 500 {
			t.Fatalf("%d messages, want 500", res.Messages)
		}
	})
	t.Run("latency", func(t *testing.T) {
		res, err := Latency(ctx, LatencyConfig{N: 200, Rate: 1000, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Count != 200 {
			t.Fatalf("%d latencies, want 200", res.Count)
		}
		if res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.Max {
			t.Fatalf("inconsistent percentiles: p50 %v, p99 %v, max %v", res.P50, res.P99, res.Max)
		}
	})
	t.Run("binary", func(t *testing.T) {
		if _, err := exec.LookPath("go"); err != nil {
			t.Skip("no go command to build cmd/aviso-bridge:", err)
		}
		dir := t.TempDir()
		bin, err := BuildBinary(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Binary(ctx, BinaryConfig{Binary: bin, N: 300, Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if res.Throughput.Messages != 300 || res.Throughput.Elapsed <= 0 {
			t.Fatalf("throughput %+v, want 300 messages in a positive time", res.Throughput)
		}
		if res.PeakRSS <= 0 {
			t.Logf("peak RSS unknown on this platform")
		}
		st, err := Stalled(ctx, StalledConfig{Binary: bin, N: 20, PayloadSize: 100_000, ShutdownTimeout: time.Second,
			Quiet: 500 * time.Millisecond, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if st.ExitErr != nil || st.Stop <= 0 {
			t.Fatalf("stalled run: exit %v after SIGTERM, stop %v", st.ExitErr, st.Stop)
		}
	})
}
