package e2ebench

import (
	"context"
	"fmt"
	"log/slog"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	kafkasink "github.com/aviso-bridge/aviso-bridge/sinks/kafka"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
)

// Kafka measures the bridge into Kafka (kfake in process, one partition per
// topic, acks=all) next to a bare kafka-go async Writer with the sink's
// settings (batch size, timeout and bytes, acks, attempts, backoff,
// transport), whose Completion callback counts the acknowledged records,
// writing the same records: once bounded to the bridge's window (Bare) and
// once unbounded (Unbounded). The three alternate in rounds; every topic is
// checked to hold its records.
//
// The bridge writes to aviso.<event type> (KAFKA_TOPIC's default) with key
// <event type> (KAFKA_KEY's default); the bare Writers write the same keys
// and records to bare.<event type> and free.<event type>.
func Kafka(ctx context.Context, cfg ThroughputConfig) (ThroughputResult, error) {
	cfg = cfg.withDefaults()
	var res ThroughputResult
	dir, cleanup, err := scratch(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer cleanup()
	var topics []string
	for r := range cfg.Rounds {
		et := roundEventType(r)
		topics = append(topics, "aviso."+et, "bare."+et, "free."+et)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		return res, fmt.Errorf("kfake: %w", err)
	}
	defer cluster.Close()
	addr := cluster.ListenAddrs()[0]
	sizes := chunks(cfg.N, cfg.Rounds)
	pad, err := replayPad(ctx, sizes[0], cfg.FrameSize)
	if err != nil {
		return res, err
	}
	res.Rounds = make([]ThroughputResult, len(sizes))
	var frames frameStats
	for r, size := range sizes {
		et := roundEventType(r)
		this := &res.Rounds[r]
		kc, err := kafkaConfig(addr, et, cfg.Window)
		if err != nil {
			return res, err
		}
		src, round, err := roundSource(ctx, et, size, pad)
		if err != nil {
			return res, err
		}
		frames.add(round)
		bare := func(prefix string, window int, into *Throughput) func() error {
			return func() error {
				t, err := writeBare(ctx, kc, prefix+et, round, window)
				if err != nil {
					return fmt.Errorf("bare kafka-go Writer to %s, round %d: %w", prefix+et, r, err)
				}
				*into = t
				return nil
			}
		}
		viaBridge := func() error {
			t, err := runReplay(ctx, src.URL, et, len(round), cfg.Window, dir, cfg.Logger, kafkaOpener(kc, cfg.Logger))
			if err != nil {
				return fmt.Errorf("bridge into Kafka, round %d: %w", r, err)
			}
			this.Bridge = t
			return nil
		}
		err = alternate(r, bare("bare.", cfg.Window, &this.Bare), viaBridge, bare("free.", 0, &this.Unbounded))
		src.Close()
		if err != nil {
			return res, err
		}
		res.Bridge.add(this.Bridge)
		res.Bare.add(this.Bare)
		res.Unbounded.add(this.Unbounded)
	}
	res.FrameBytes = frames.mean()
	return res, checkTopics(ctx, addr, topics, sizes)
}

// kafkaConfig is kafkaConfig in cmd/aviso-bridge with SINK=kafka and every
// other variable at its default.
func kafkaConfig(addr, eventType string, window int) (kafkasink.Config, error) {
	kc := kafkasink.Config{
		Brokers:         []string{addr},
		Topic:           kafkasink.DefaultTopic,
		Key:             kafkasink.DefaultKey,
		Acks:            kafkasink.DefaultAcks,
		BatchSize:       kafkasink.DefaultBatchSize,
		BatchTimeout:    kafkasink.DefaultBatchTimeout,
		Compression:     kafkasink.DefaultCompression,
		Format:          kafkasink.FormatBinary,
		DLQTopic:        kafkasink.DefaultDLQTopic,
		CheckpointTopic: kafkasink.DefaultCheckpointTopic,
		MaxInFlight:     window,
		EventType:       eventType,
		WriteTimeout:    kafkasink.DefaultWriteTimeout,
		BatchBytes:      kafkasink.DefaultBatchBytes,
		MaxAttempts:     kafkasink.DefaultMaxAttempts,
		ClientID:        kafkasink.DefaultClientID,
	}
	if err := kc.Validate(); err != nil {
		return kc, err
	}
	return kc, nil
}

func kafkaOpener(kc kafkasink.Config, log *slog.Logger) sinkOpener {
	return func(ctx context.Context, m *bridge.Metrics) (bridge.Sink, error) {
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		return kafkasink.NewSink(ctx, kc, kafkasink.Options{Logger: log, Metrics: m})
	}
}

// writeBare writes the records the sink would write for ns (binary mode,
// key = event type) to topic with a bare async Writer configured like the
// sink's, with at most window records awaiting completion (0: no bound).
func writeBare(ctx context.Context, kc kafkasink.Config, topic string, ns []*bridge.Notification, window int) (Throughput, error) {
	msgs := make([]kafkago.Message, len(ns))
	for i, n := range ns {
		msgs[i] = kafkasink.BuildMessage(n, topic, []byte(n.EventType), kafkasink.FormatBinary)
	}
	tr, err := kafkasink.NewTransport(kc)
	if err != nil {
		return Throughput{}, err
	}
	defer tr.CloseIdleConnections()
	w := &kafkago.Writer{
		Addr:                   kafkago.TCP(kc.Brokers...),
		Balancer:               &kafkago.Hash{},
		MaxAttempts:            kafkasink.DefaultMaxAttempts,
		WriteBackoffMin:        kafkasink.DefaultRetryBackoffMin,
		WriteBackoffMax:        kafkasink.DefaultRetryBackoffMax,
		BatchSize:              kc.BatchSize,
		BatchBytes:             kc.BatchBytes,
		BatchTimeout:           kc.BatchTimeout,
		ReadTimeout:            kc.WriteTimeout,
		WriteTimeout:           kc.WriteTimeout,
		RequiredAcks:           kafkago.RequireAll,
		AllowAutoTopicCreation: true,
		Transport:              tr,
	}
	cpu := processCPU()
	d, err := kafkatest.WriteBare(ctx, w, msgs, window)
	if err != nil {
		return Throughput{}, err
	}
	return Throughput{Messages: len(msgs), Elapsed: d, CPU: processCPU() - cpu}, nil
}

// checkTopics checks that the three topics of each round hold that round's
// number of records.
func checkTopics(ctx context.Context, addr string, topics []string, sizes []int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("end offsets: %w", err)
	}
	if err := ends.Error(); err != nil {
		return fmt.Errorf("end offsets: %w", err)
	}
	for i, t := range topics {
		var got int64
		for _, o := range ends[t] {
			got += o.Offset
		}
		if want := int64(sizes[i/3]); got != want {
			return fmt.Errorf("topic %s holds %d records, want %d", t, got, want)
		}
	}
	return nil
}
