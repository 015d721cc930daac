package e2ebench

import (
	"context"
	"testing"
	"time"
)

// Each benchmark runs one measurement of b.N notifications and reports its
// metrics; ns/op is suppressed, since the time of an op mixes setup, bridge
// and baseline. Give b.N with -benchtime Nx (the default 1s would grow b.N
// by trial):
//
//	go test ./internal/e2ebench -run '^$' -bench . -benchtime 100000x
//	go test ./internal/e2ebench -run '^$' -bench JetStream -benchtime 100000x -cpuprofile cpu.out
//
// cmd/aviso-bench runs the same measurements and prints one table.

func benchCtx(b *testing.B) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	b.Cleanup(cancel)
	return ctx
}

// BenchmarkDecode: the aviso client and a raw bufio line scan reading the
// same /replay stream of b.N notifications of 600 bytes.
func BenchmarkDecode(b *testing.B) {
	ctx := benchCtx(b)
	res, err := Decode(ctx, DecodeConfig{N: b.N})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.Aviso.FramesPerSec(), "aviso_frames/s")
	b.ReportMetric(res.Raw.FramesPerSec(), "raw_frames/s")
	b.ReportMetric(res.Aviso.MBPerSec(), "aviso_MB/s")
	b.ReportMetric(res.Raw.MBPerSec(), "raw_MB/s")
	b.ReportMetric(res.Ratio(), "ratio")
	b.ReportMetric(res.FrameBytes, "B/frame")
	b.ReportMetric(0, "ns/op")
}

func benchThroughput(b *testing.B, run func(context.Context, ThroughputConfig) (ThroughputResult, error)) {
	ctx := benchCtx(b)
	res, err := run(ctx, ThroughputConfig{N: b.N, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.Bridge.Rate(), "bridge_msgs/s")
	b.ReportMetric(res.Bare.Rate(), "bare_msgs/s")
	b.ReportMetric(res.Ratio(), "ratio")
	b.ReportMetric(float64(res.Bridge.CPUPerMsg())/1e3, "bridge_cpu_us/msg")
	b.ReportMetric(float64(res.Bare.CPUPerMsg())/1e3, "bare_cpu_us/msg")
	if res.Unbounded.Messages > 0 {
		b.ReportMetric(res.Unbounded.Rate(), "bare_unbounded_msgs/s")
		b.ReportMetric(res.Bridge.Rate()/res.Unbounded.Rate(), "ratio_unbounded")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkJetStream: b.N notifications through the whole bridge into
// JetStream, next to a bare PublishAsync loop with the same window
// (issue #5 target: ratio >= 0.85).
func BenchmarkJetStream(b *testing.B) { benchThroughput(b, JetStream) }

// BenchmarkKafka: b.N notifications through the whole bridge into kfake,
// next to a bare async kafka-go Writer with the sink's settings (issue #6
// target: ratio >= 0.85).
func BenchmarkKafka(b *testing.B) { benchThroughput(b, Kafka) }

// BenchmarkDiscard: b.N notifications through the bridge into a sink that
// acknowledges at once: the source side's ceiling.
func BenchmarkDiscard(b *testing.B) {
	res, err := Discard(benchCtx(b), ThroughputConfig{N: b.N, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.Rate(), "bridge_msgs/s")
	b.ReportMetric(float64(res.CPUPerMsg())/1e3, "bridge_cpu_us/msg")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkLatency: b.N notifications published live at 1000/s, the time
// from avisotest's Publish to the JetStream acknowledgement.
func BenchmarkLatency(b *testing.B) {
	ctx := benchCtx(b)
	res, err := Latency(ctx, LatencyConfig{N: b.N, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(res.P50)/1e6, "p50_ms")
	b.ReportMetric(float64(res.P99)/1e6, "p99_ms")
	b.ReportMetric(float64(res.Max)/1e6, "max_ms")
	b.ReportMetric(res.Rate, "published/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkBinary: the built aviso-bridge replaying b.N notifications into
// JetStream, its rate and peak RSS.
func BenchmarkBinary(b *testing.B) {
	ctx := benchCtx(b)
	bin, err := BuildBinary(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	res, err := Binary(ctx, BinaryConfig{Binary: bin, N: b.N, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.Throughput.Rate(), "bridge_msgs/s")
	b.ReportMetric(float64(res.Throughput.CPUPerMsg())/1e3, "bridge_cpu_us/msg")
	b.ReportMetric(float64(res.PeakRSS)/(1<<20), "peak_RSS_MiB")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkStalled: the built aviso-bridge replaying 200 notifications of
// 0.9 MB into SINK=stdout whose reader never reads; its peak RSS (the
// byte-bounded window) and the time from SIGTERM to exit with
// BRIDGE_SHUTDOWN_TIMEOUT=3s. b.N is ignored: run it with -benchtime 1x.
func BenchmarkStalled(b *testing.B) {
	ctx := benchCtx(b)
	bin, err := BuildBinary(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	res, err := Stalled(ctx, StalledConfig{Binary: bin, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	if res.ExitErr != nil {
		b.Errorf("exit after SIGTERM: %v", res.ExitErr)
	}
	b.ReportMetric(float64(res.PeakRSS)/(1<<20), "peak_RSS_MiB")
	b.ReportMetric(res.Stop.Seconds(), "stop_s")
	b.ReportMetric(0, "ns/op")
}
