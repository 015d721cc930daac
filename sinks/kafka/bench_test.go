package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
)

// BenchmarkSinkVsBareWriter pushes b.N 600-byte notifications through
// bridge.Pipeline and the Kafka sink, then the same records through a bare
// kafka-go async Writer with the same batch settings, each against its own
// fresh kfake broker, and reports both rates and their ratio
// (sink_msgs/s / bare_msgs/s); bare_window_msgs/s and ratio_window compare
// with a bare Writer held to the pipeline's window. The "driver" variants
// replace the pipeline with kafkatest.Drive, to show the sink's own share.
// ns/op covers all runs.
func BenchmarkSinkVsBareWriter(b *testing.B) {
	pipeline := func(ctx context.Context, s *kafka.Sink, notes []*bridge.Notification, window int) error {
		cp, err := kafkatest.RunPipeline(ctx, s, notes, bridge.PipelineConfig{MaxInFlight: window}, nil)
		if err == nil && cp.Sequence != notes[len(notes)-1].Sequence {
			err = fmt.Errorf("checkpoint %d, want %d", cp.Sequence, notes[len(notes)-1].Sequence)
		}
		return err
	}
	driver := func(ctx context.Context, s *kafka.Sink, notes []*bridge.Notification, window int) error {
		_, err := bridgetest.Drive(ctx, s, notes, bridgetest.DriveConfig{Window: window})
		return err
	}
	for _, bc := range []struct {
		name string
		cfg  kafka.Config
		run  func(context.Context, *kafka.Sink, []*bridge.Notification, int) error
	}{
		{"binary/pipeline", kafka.Config{}, pipeline},
		{"structured/pipeline", kafka.Config{Format: kafka.FormatStructured}, pipeline},
		{"binary/driver", kafka.Config{}, driver},
	} {
		b.Run(bc.name, func(b *testing.B) {
			benchSinkVsBare(b, bc.cfg, bc.run)
		})
	}
}

func benchSinkVsBare(b *testing.B, cfg kafka.Config, run func(context.Context, *kafka.Sink, []*bridge.Notification, int) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	notes := bridgetest.Notifications(1, b.N, bridgetest.Size(600))
	cfg.EventType = "mars"
	cfg.Topic = "bench"
	cfg.MaxInFlight = bridge.DefaultMaxInFlight
	b.SetBytes(int64(len(notes[0].CloudEvent)))
	b.ReportAllocs()

	// The sink, driven by the pipeline.
	b.StopTimer()
	sinkCluster := kafkatest.NewCluster(b, kfake.SeedTopics(1, "bench"))
	cfg.Brokers = []string{sinkCluster.Addr}
	sink, err := kafka.NewSink(ctx, cfg, kafka.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	start := time.Now()
	err = run(ctx, sink, notes, cfg.MaxInFlight)
	sinkElapsed := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if err := sink.Close(ctx); err != nil {
		b.Fatal(err)
	}
	sinkCluster.Stop()
	format := cfg.Format
	if format == "" {
		format = kafka.FormatBinary
	}

	// A bare async Writer with the same settings and the same records:
	// unbounded (the target), and bounded to the pipeline's window (to
	// separate the window's cost from the sink's).
	bare := func(window int) time.Duration {
		cl := kafkatest.NewCluster(b, kfake.SeedTopics(1, "bench"))
		defer cl.Stop()
		msgs := make([]kafkago.Message, len(notes))
		for i, n := range notes {
			msgs[i] = kafka.BuildMessage(n, "bench", []byte(n.EventType), format)
		}
		w := &kafkago.Writer{
			Addr:         kafkago.TCP(cl.Addr),
			Balancer:     &kafkago.Hash{},
			BatchSize:    kafka.DefaultBatchSize,
			BatchTimeout: kafka.DefaultBatchTimeout,
			RequiredAcks: kafkago.RequireAll,
			MaxAttempts:  kafka.DefaultMaxAttempts,
		}
		b.StartTimer()
		elapsed, err := kafkatest.WriteBare(ctx, w, msgs, window)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		return elapsed
	}
	bareElapsed := bare(0)
	windowElapsed := bare(cfg.MaxInFlight)

	sinkRate := float64(b.N) / sinkElapsed.Seconds()
	bareRate := float64(b.N) / bareElapsed.Seconds()
	windowRate := float64(b.N) / windowElapsed.Seconds()
	b.ReportMetric(sinkRate, "sink_msgs/s")
	b.ReportMetric(bareRate, "bare_msgs/s")
	b.ReportMetric(sinkRate/bareRate, "ratio")
	b.ReportMetric(windowRate, "bare_window_msgs/s")
	b.ReportMetric(sinkRate/windowRate, "ratio_window")
}
