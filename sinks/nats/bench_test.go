package nats

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// BenchmarkJetStreamSink publishes b.N notifications (600-byte data,
// binary mode) through the JetStream sink, driven by bridge.NewPipeline or
// by natstest.Drive, and in the same run b.N messages with the same headers
// and bodies through a bare PublishAsync loop with the same window. The
// two alternate in benchRounds rounds (bare, sink, bare, sink, ...) so that
// neither gets the cold start or a quiet moment of a shared machine alone. Metrics: sink_msgs/s, bare_msgs/s and their ratio (target >= 0.85).
//
//	go test ./sinks/nats -run '^$' -bench JetStreamSink -benchtime 100000x
func BenchmarkJetStreamSink(b *testing.B) {
	const benchRounds = 10
	const window = 256
	for _, via := range []string{"pipeline", "driver"} {
		b.Run(via, func(b *testing.B) {
			srv := natstest.NewServer(b)
			srv.CreateStream(b, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"sink.>", "bare.>"}, Duplicates: 2 * time.Minute})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			sink, err := NewJetStreamSink(ctx, Config{ConnConfig: ConnConfig{URL: srv.URL}, Subject: "sink.{event_type}",
				Stream: "BENCH", MaxPending: window, MaxInFlight: window}, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer sink.Close(ctx)
			ns := bridgetest.Notifications(1, b.N, bridgetest.EventType("bench"), bridgetest.DataSize(600))
			bare := bridgetest.Notifications(1, b.N, bridgetest.EventType("bare"), bridgetest.DataSize(600))

			var sinkDur, bareDur time.Duration
			b.ResetTimer()
			for i := range benchRounds {
				lo, hi := b.N*i/benchRounds, b.N*(i+1)/benchRounds
				if hi == lo {
					continue
				}
				rate, err := natstest.BareRate(ctx, srv.URL, "bare.bench", bare[lo:hi], window)
				if err != nil {
					b.Fatal(err)
				}
				bareDur += time.Duration(float64(hi-lo) / rate * float64(time.Second))
				start := time.Now()
				if err := publishVia(ctx, via, sink, ns[lo:hi], window); err != nil {
					b.Fatal(err)
				}
				sinkDur += time.Since(start)
			}
			b.StopTimer()
			js := srv.JetStream(b)
			if got := natstest.StreamMsgs(b, js, "BENCH"); got != uint64(2*b.N) {
				b.Fatalf("stream holds %d messages, want %d", got, 2*b.N)
			}
			sinkRate := float64(b.N) / sinkDur.Seconds()
			bareRate := float64(b.N) / bareDur.Seconds()
			b.ReportMetric(sinkRate, "sink_msgs/s")
			b.ReportMetric(bareRate, "bare_msgs/s")
			b.ReportMetric(sinkRate/bareRate, "ratio")
		})
	}
}

// publishVia delivers ns through sink with bridge.NewPipeline ("pipeline")
// or natstest.Drive ("driver"), with window in flight.
func publishVia(ctx context.Context, via string, sink bridge.Sink, ns []*bridge.Notification, window int) error {
	if via == "driver" {
		_, err := bridgetest.Drive(ctx, sink, ns, bridgetest.DriveConfig{Window: window})
		return err
	}
	store, err := checkpoint.NewMemory().Open("bench")
	if err != nil {
		return err
	}
	p, err := bridge.NewPipeline(sink, store, bridge.PipelineConfig{MaxInFlight: window})
	if err != nil {
		return err
	}
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()
	for _, n := range ns {
		if err := p.Submit(ctx, n); err != nil {
			return fmt.Errorf("submit %s: %w (run: %w)", n.ID, err, <-runErr)
		}
	}
	p.CloseInput()
	return <-runErr
}
