package kafka_test

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
)

func records(recs []*kgo.Record) []bridgetest.Message {
	out := make([]bridgetest.Message, len(recs))
	for i, r := range recs {
		h := make(map[string]string, len(r.Headers))
		for _, kv := range r.Headers {
			if _, ok := h[kv.Key]; !ok {
				h[kv.Key] = string(kv.Value)
			}
		}
		out[i] = bridgetest.Message{Body: r.Value, Headers: h}
	}
	return out
}

// The Kafka sink meets the bridge.Sink contract in both formats; a record
// larger than KAFKA_BATCH_BYTES is rejected permanently.
func TestSinkSuite(t *testing.T) {
	for _, format := range []string{kafka.FormatBinary, kafka.FormatStructured} {
		t.Run(format, func(t *testing.T) {
			idHeader := "ce_id" // binary mode only: structured records carry it in the body
			if format == kafka.FormatStructured {
				idHeader = ""
			}
			bridgetest.SinkSuite(t, bridgetest.SinkSuiteConfig{
				Structured: format == kafka.FormatStructured,
				IDHeader:   idHeader,
				Reject: func(seq uint64) *bridge.Notification {
					return bridgetest.Notification(seq, bridgetest.Size(20000))
				},
				New: func(t *testing.T) bridgetest.SinkUnderTest {
					cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
					s := newSink(t, cl, kafka.Config{Topic: "suite", Format: format, BatchBytes: 8000, MaxInFlight: 64})
					return bridgetest.SinkUnderTest{
						Sink:         s,
						Stored:       func(t *testing.T) []bridgetest.Message { return records(readTopic(t, cl, "suite")) },
						DeadLettered: func(t *testing.T) []bridgetest.Message { return records(readTopic(t, cl, kafka.DefaultDLQTopic)) },
					}
				},
			})
		})
	}
}
