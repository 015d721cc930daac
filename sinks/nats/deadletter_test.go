package nats

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// wantOmitted is the headers of the dead letter of n whose body of size
// bytes was left out.
func wantOmitted(n *bridge.Notification, reason string, size int) natsgo.Header {
	h := wantHeaders(n, FormatBinary, map[string]string{
		"Nats-Msg-Id":                   "dlq:" + n.ID,
		"Aviso-Bridge-Dlq-Kind":         "rejected",
		"Aviso-Bridge-Dlq-Reason":       reason,
		"Aviso-Bridge-Dlq-Body-Omitted": strconv.Itoa(size),
	})
	delete(h, "Content-Type")
	delete(h, "ce-datacontenttype")
	return h
}

// bodyOmittedLogged checks for one sink.nats.deadletter.body_omitted
// warning naming n and size.
func bodyOmittedLogged(t *testing.T, logs *logBuffer, n *bridge.Notification, size int) {
	t.Helper()
	var found int
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if r["msg"] != "sink.nats.deadletter.body_omitted" {
			continue
		}
		found++
		if r["level"] != "WARN" || r["id"] != n.ID || r["bytes"] != float64(size) || r["error"] == "" {
			t.Errorf("body_omitted record %v", r)
		}
	}
	if found != 1 {
		t.Errorf("%d sink.nats.deadletter.body_omitted records, want 1; logs:\n%s", found, logs)
	}
}

// A dead letter too large for the server (max_payload) or for the stream
// (max message size) is stored with its headers only and the size of the
// body it left out, and DeadLetter succeeds; a small one keeps its body.
func TestJetStreamDeadLetterTooLarge(t *testing.T) {
	tests := []struct {
		name   string
		opts   []natstest.Option
		dlqMax int32 // the DLQ stream's max message size; 0: none
		size   int   // data size of the notification
		omit   bool
	}{
		{name: "over max_payload", opts: []natstest.Option{natstest.WithMaxPayload(8 << 10)}, size: 16 << 10, omit: true},
		{name: "over the stream's max message size", dlqMax: 2048, size: 4096, omit: true},
		{name: "fits", opts: []natstest.Option{natstest.WithMaxPayload(8 << 10)}, dlqMax: 2048, size: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := natstest.NewServer(t, tt.opts...)
			avisoStream(t, srv)
			js := srv.JetStream(t)
			srv.CreateStream(t, jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq.>"}, MaxMsgSize: tt.dlqMax})
			var logs logBuffer
			s := newJetStreamSink(t, srv, Config{Stream: "AVISO", DLQSubject: "dlq.{event_type}"}, logs.logger())
			n := bridgetest.Notifications(42, 1, bridgetest.EventType("mars"), bridgetest.DataSize(tt.size))[0]
			if err := s.DeadLetter(testCtx(t, 10*time.Second), bridge.DeadLetter{Kind: bridge.DeadLetterRejected,
				Notification: n, Raw: n.CloudEvent, Reason: "too large"}); err != nil {
				t.Fatalf("DeadLetter: %v", err)
			}
			msgs := natstest.ReadStream(t, js, "DLQ", "")
			if len(msgs) != 1 {
				t.Fatalf("%d dead letters, want 1", len(msgs))
			}
			if !tt.omit {
				want := wantHeaders(n, FormatBinary, map[string]string{
					"Nats-Msg-Id": "dlq:mars@42", "Aviso-Bridge-Dlq-Kind": "rejected", "Aviso-Bridge-Dlq-Reason": "too large"})
				delete(want, "Content-Type")
				delete(want, "ce-datacontenttype")
				checkMsg(t, msgs[0], "dlq.mars", want, n.CloudEvent)
				if strings.Contains(logs.String(), "body_omitted") {
					t.Errorf("body_omitted logged for a dead letter that fits:\n%s", logs.String())
				}
				return
			}
			checkMsg(t, msgs[0], "dlq.mars", wantOmitted(n, "too large", len(n.CloudEvent)), nil)
			bodyOmittedLogged(t, &logs, n, len(n.CloudEvent))
		})
	}
}

func TestCoreDeadLetterTooLarge(t *testing.T) {
	srv := natstest.NewServer(t, natstest.WithMaxPayload(8<<10))
	sub := subscribe(t, srv, "aviso.dlq")
	var logs logBuffer
	s, err := NewCoreSink(testCtx(t, 10*time.Second), Config{ConnConfig: ConnConfig{URL: srv.URL}}, Options{Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	n := bridgetest.Notifications(42, 1, bridgetest.EventType("mars"), bridgetest.DataSize(16<<10))[0]
	if err := s.DeadLetter(testCtx(t, 10*time.Second), bridge.DeadLetter{Kind: bridge.DeadLetterRejected,
		Notification: n, Raw: n.CloudEvent, Reason: "too large"}); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	m := receive(t, sub)
	if want := wantOmitted(n, "too large", len(n.CloudEvent)); !headersEqual(m.Header, want) {
		t.Errorf("headers\n got %v\nwant %v", m.Header, want)
	}
	if len(m.Data) != 0 {
		t.Errorf("body of %d bytes, want none", len(m.Data))
	}
	bodyOmittedLogged(t, &logs, n, len(n.CloudEvent))
}
