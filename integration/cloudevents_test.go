package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	cesarama "github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	natsgo "github.com/nats-io/nats.go"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// TestCloudEventsSDK: an independent consumer, the official CloudEvents Go
// SDK (its JetStream binding, and its sarama binding for Kafka), reads what
// the binary wrote to JetStream and Kafka in binary and structured mode.
// Every message must convert to a valid event whose id, source, type,
// time, dataschema, datacontenttype and data bytes are those aviso served,
// each notification exactly once, in sequence order, with no attribute or
// extension the bridge made up.
func TestCloudEventsSDK(t *testing.T) {
	const total = 60
	type consume func(t *testing.T, n int) []*event.Event
	sinks := []struct {
		name string
		// start starts the broker, returns e with the sink set, and the
		// SDK consumer of what the bridge wrote.
		start func(t *testing.T, e env) (env, consume)
		// kafka: the binding adds kafkaoffset, kafkapartition and
		// kafkatopic extensions in binary mode.
		kafka bool
	}{
		{name: "jetstream", start: func(t *testing.T, e env) (env, consume) {
			ns := natstest.NewServer(t)
			return jetStreamEnv(e, ns), func(t *testing.T, n int) []*event.Event { return sdkReadJetStream(t, ns, n) }
		}},
		{name: "kafka", kafka: true, start: func(t *testing.T, e env) (env, consume) {
			cl := newKafka(t)
			return kafkaEnv(e, cl), func(t *testing.T, n int) []*event.Event {
				if got := kafkaCount(cl, kafkaTopic); got != n {
					t.Fatalf("topic %s holds %d records, want %d", kafkaTopic, got, n)
				}
				return sdkReadKafka(t, cl.Addr, kafkaTopic, n)
			}
		}},
	}
	for _, sk := range sinks {
		for _, format := range []string{"binary", "structured"} {
			t.Run(sk.name+"/"+format, func(t *testing.T) {
				t.Parallel()
				aviso := avisotest.NewServer(t)
				dir := t.TempDir()
				want := publish(aviso, total)
				e, read := sk.start(t, avisoEnv(aviso, dir).With("AVISO_MODE", "replay", "SINK_FORMAT", format))
				b := startBridge(t, "cloudevents-"+sk.name+"-"+format, dir, e)
				if code := b.Wait(startupWait); code != 0 {
					t.Fatalf("exit code %d, want 0", code)
				}
				served := cloudEvents(t, aviso)
				events := read(t, len(want))
				if len(events) != len(want) {
					t.Fatalf("the SDK read %d events, want %d", len(events), len(want))
				}
				for i, ev := range events {
					if err := ev.Validate(); err != nil {
						t.Fatalf("event %d (%s) is not a valid CloudEvent: %v", i, ev.ID(), err)
					}
					seq := seqOfID(t, ev.ID())
					if seq != want[i] {
						t.Fatalf("event %d has sequence %d, want %d (each once, in order)", i, seq, want[i])
					}
					raw, ok := served[seq]
					if !ok {
						t.Fatalf("event %s: aviso served no such notification", ev.ID())
					}
					if diff := compareEvent(ev, raw, sk.kafka && format == "binary"); diff != "" {
						t.Errorf("event %s differs from what aviso served: %s", ev.ID(), diff)
					}
				}
			})
		}
	}
}

// servedEvent is the CloudEvent JSON aviso served, with data kept as bytes.
type servedEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            string          `json:"time"`
	DataSchema      string          `json:"dataschema"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// compareEvent returns what differs between ev (as the SDK read it) and
// raw (as aviso served it), or "". kafkaExt allows the extensions the
// SDK's Kafka binding adds itself.
func compareEvent(ev *event.Event, raw []byte, kafkaExt bool) string {
	var want servedEvent
	if err := json.Unmarshal(raw, &want); err != nil {
		return "served JSON: " + err.Error()
	}
	var diffs []string
	check := func(name, got, want string) {
		if got != want {
			diffs = append(diffs, fmt.Sprintf("%s %q, want %q", name, got, want))
		}
	}
	check("specversion", ev.SpecVersion(), want.SpecVersion)
	check("id", ev.ID(), want.ID)
	check("source", ev.Source(), want.Source)
	check("type", ev.Type(), want.Type)
	check("dataschema", ev.DataSchema(), want.DataSchema)
	check("datacontenttype", ev.DataContentType(), want.DataContentType)
	if wt, err := time.Parse(time.RFC3339Nano, want.Time); err != nil || !ev.Time().Equal(wt) {
		diffs = append(diffs, fmt.Sprintf("time %s, want %s", ev.Time().Format(time.RFC3339Nano), want.Time))
	}
	if !bytes.Equal(ev.Data(), want.Data) {
		diffs = append(diffs, fmt.Sprintf("data %s, want %s", ev.Data(), want.Data))
	}
	for name := range ev.Extensions() {
		if kafkaExt && strings.HasPrefix(name, "kafka") {
			continue
		}
		diffs = append(diffs, "unexpected extension "+name)
	}
	return strings.Join(diffs, "; ")
}

// sdkReadJetStream consumes n messages of subject from stream AVISO with
// the SDK's JetStream binding and converts each to an event.
func sdkReadJetStream(t *testing.T, ns *natstest.Server, n int) []*event.Event {
	t.Helper()
	if got := jetStreamCount(t, ns.JetStream(t)); got != uint64(n) {
		t.Fatalf("stream %s holds %d messages, want %d", streamName, got, n)
	}
	nc, err := natsgo.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c, err := cejs.NewConsumerFromConn(nc, streamName, subject, nil, nil)
	if err != nil {
		t.Fatalf("CloudEvents JetStream consumer: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opened := make(chan error, 1)
	go func() { opened <- c.OpenInbound(ctx) }()
	t.Cleanup(func() {
		cancel()
		t.Logf("OpenInbound returned %v", <-opened) // it ends with ctx
	})
	out := make([]*event.Event, 0, n)
	for len(out) < n {
		m, err := c.Receive(ctx)
		if err != nil {
			t.Fatalf("receive after %d of %d events: %v", len(out), n, err)
		}
		ev, err := binding.ToEvent(ctx, m)
		if err != nil {
			t.Fatalf("message %d does not convert to an event: %v", len(out), err)
		}
		_ = m.Finish(nil)
		out = append(out, ev)
	}
	return out
}

// sdkReadKafka consumes the first n records of topic with sarama and
// converts each with the SDK's sarama binding. Every record of one event
// type is in one partition (KAFKA_KEY={event_type}); the events are
// returned in that partition's order.
func sdkReadKafka(t *testing.T, addr, topic string, n int) []*event.Event {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.ClientID = "cloudevents-sdk-test"
	cfg.Consumer.Return.Errors = true
	consumer, err := sarama.NewConsumer([]string{addr}, cfg)
	if err != nil {
		t.Fatalf("sarama consumer: %v", err)
	}
	t.Cleanup(func() { consumer.Close() })
	parts, err := consumer.Partitions(topic)
	if err != nil {
		t.Fatalf("sarama partitions of %s: %v", topic, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	msgs := make(chan *sarama.ConsumerMessage)
	for _, p := range parts {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("sarama consume %s/%d: %v", topic, p, err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			for {
				select {
				case m, ok := <-pc.Messages():
					if !ok {
						return
					}
					select {
					case msgs <- m:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	out := make([]*event.Event, 0, n)
	part := int32(-1)
	for len(out) < n {
		var cm *sarama.ConsumerMessage
		select {
		case cm = <-msgs:
		case <-ctx.Done():
			t.Fatalf("sarama read %d of %d records", len(out), n)
		}
		if part >= 0 && cm.Partition != part {
			t.Fatalf("records in partitions %d and %d (KAFKA_KEY={event_type} keeps one)", part, cm.Partition)
		}
		part = cm.Partition
		m := cesarama.NewMessageFromConsumerMessage(cm)
		ev, err := binding.ToEvent(ctx, m)
		if err != nil {
			t.Fatalf("record %s/%d@%s does not convert to an event: %v", topic, cm.Partition, strconv.FormatInt(cm.Offset, 10), err)
		}
		out = append(out, ev)
	}
	return out
}
