package kafka_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
)

// Identifier values that are not strings (numbers, booleans, polygons)
// render as their compact JSON in KAFKA_TOPIC (characters outside
// [A-Za-z0-9._-] as '_') and KAFKA_KEY (verbatim); the records are read
// back from the rendered topics with the rendered keys.
func TestNonStringIdentifierTopicsAndKeys(t *testing.T) {
	cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
	s := newSink(t, cl, kafka.Config{
		Topic:      "aviso.{event_type}.{identifier.step}.{identifier.flag}",
		Key:        "{identifier.polygon}",
		DedupeScan: -1, // the topic depends on the notification
	})
	tests := []struct {
		identifier string
		topic, key string
	}{
		{`{"step": 12, "flag": true, "polygon": [[52.5, -1.25], [53, 0.75], [52.5, -1.25]]}`,
			"aviso.mars.12.true", "[[52.5,-1.25],[53,0.75],[52.5,-1.25]]"},
		{`{"step": -0.5, "flag": false, "polygon": [ [1, 2] ]}`, "aviso.mars.-0.5.false", "[[1,2]]"},
		{`{"step": 1E+3, "polygon": {"lat": [1], "lon": [2]}}`, "aviso.mars.1E_3._", `{"lat":[1],"lon":[2]}`},
	}
	notes := bridgetest.Notifications(1, len(tests))
	for i, tt := range tests {
		notes[i] = bridgetest.Notification(uint64(i+1), bridgetest.Identifier(tt.identifier))
	}
	drive(t, s, notes, bridgetest.DriveConfig{})
	for i, tt := range tests {
		recs := readTopic(t, cl, tt.topic)
		if len(recs) != 1 {
			t.Fatalf("topic %q holds %d records, want 1", tt.topic, len(recs))
		}
		if got := string(recs[0].Key); got != tt.key {
			t.Errorf("record of %s: key %q, want %q", notes[i].ID, got, tt.key)
		}
		if got := seqOf(t, recs[0]); got != notes[i].Sequence {
			t.Errorf("topic %q holds sequence %d, want %d", tt.topic, got, notes[i].Sequence)
		}
	}
}

// {listener} in KAFKA_TOPIC, KAFKA_KEY and BRIDGE_DLQ_TOPIC renders each
// notification's listener, also when two listeners of one event type
// alternate on the shared sink (no rendering is reused across listeners); a
// dead letter without a notification renders its own Listener.
func TestListenerTopicsAndKeys(t *testing.T) {
	cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
	s := newSink(t, cl, kafka.Config{Topic: "aviso-{listener}", Key: "{listener}/{event_type}", DLQTopic: "dlq-{listener}", DedupeScan: -1})
	listeners := []string{"mars od", "mars-en"}
	topics := map[string]string{"mars od": "aviso-mars_od", "mars-en": "aviso-mars-en"}
	notes := bridgetest.Notifications(1, 6)
	for i, n := range notes {
		n.Listener = listeners[i%2]
	}
	drive(t, s, notes, bridgetest.DriveConfig{})
	for i, l := range listeners {
		recs := readTopic(t, cl, topics[l])
		if len(recs) != 3 {
			t.Fatalf("topic %q holds %d records, want 3 (listener %q)", topics[l], len(recs), l)
		}
		for j, r := range recs {
			if got, want := string(r.Key), l+"/mars"; got != want {
				t.Errorf("record %d of %s: key %q, want %q", j, topics[l], got, want)
			}
			if got, want := seqOf(t, r), uint64(2*j+i+1); got != want {
				t.Errorf("record %d of %s: sequence %d, want %d", j, topics[l], got, want)
			}
		}
	}
	dls := []struct {
		dl    bridge.DeadLetter
		topic string
	}{
		{bridge.DeadLetter{Kind: bridge.DeadLetterMalformed, Raw: []byte("{"), Listener: "mars od"}, "dlq-mars_od"},
		{bridge.DeadLetter{Kind: bridge.DeadLetterRejected, Notification: notes[1], Raw: notes[1].CloudEvent}, "dlq-mars-en"},
	}
	for _, tt := range dls {
		if err := s.DeadLetter(testContext(t, 20*time.Second), tt.dl); err != nil {
			t.Fatalf("DeadLetter(%s): %v", tt.dl.Kind, err)
		}
		if recs := readTopic(t, cl, tt.topic); len(recs) != 1 {
			t.Errorf("dead letter %s: topic %q holds %d records, want 1", tt.dl.Kind, tt.topic, len(recs))
		}
	}
}
