package bridge_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/metrics"
)

// instantSink acknowledges every Publish at once.
type instantSink struct{ acks chan bridge.Ack }

func (s *instantSink) Publish(_ context.Context, n *bridge.Notification) error {
	s.acks <- bridge.Ack{Sequence: n.Sequence, ID: n.ID}
	return nil
}
func (s *instantSink) Acks() <-chan bridge.Ack                             { return s.acks }
func (s *instantSink) DeadLetter(context.Context, bridge.DeadLetter) error { return nil }
func (s *instantSink) Close(context.Context) error                         { return nil }

// BenchmarkPipeline measures the pipeline's overhead per notification
// (Submit, window, publish call, ack matching, watermark, metrics) with a
// sink that acknowledges instantly.
func BenchmarkPipeline(b *testing.B) {
	for _, c := range []struct {
		window int
		prom   bool
	}{{1, false}, {256, false}, {256, true}} {
		window := c.window
		name := "window=" + itoa(window)
		if c.prom {
			name += "/prometheus"
		}
		b.Run(name, func(b *testing.B) {
			store, err := checkpoint.NewMemory().Open("k")
			if err != nil {
				b.Fatal(err)
			}
			sink := &instantSink{acks: make(chan bridge.Ack, window)}
			cfg := bridge.PipelineConfig{MaxInFlight: window, CheckpointInterval: 10 * time.Millisecond}
			if c.prom {
				cfg.Metrics = metrics.New(prometheus.NewRegistry())
			}
			p, err := bridge.NewPipeline(sink, store, cfg)
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- p.Run(context.Background()) }()
			n := note(0)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				n.Sequence = uint64(i) + 1
				if err := p.Submit(ctx, &n); err != nil {
					b.Fatal(err)
				}
			}
			p.CloseInput()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if cp, _, _ := store.Load(ctx); cp.Sequence != uint64(b.N) {
				b.Fatalf("committed %d, want %d", cp.Sequence, b.N)
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
