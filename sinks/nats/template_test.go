package nats

import (
	"testing"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// Identifier values that are not strings (numbers, booleans, polygons)
// land on the subject their compact JSON renders to, each one subject
// token, with both sinks; a subscriber or stream reads them back there.
func TestNonStringIdentifierSubjects(t *testing.T) {
	srv := natstest.NewServer(t)
	js := avisoStream(t, srv)
	const tmpl = "aviso.{event_type}.{identifier.step}.{identifier.flag}.{identifier.polygon}"
	idents := []struct {
		identifier string
		subject    string
	}{
		{`{"step": 12, "flag": true, "polygon": [[52.5, -1.25], [53, 0.75], [52.5, -1.25]]}`,
			"aviso.mars.12.true.%5B%5B52%2E5%2C-1%2E25%5D%2C%5B53%2C0%2E75%5D%2C%5B52%2E5%2C-1%2E25%5D%5D"},
		{`{"step": -0.5, "flag": false, "polygon": [[1,2]]}`, "aviso.mars.-0%2E5.false.%5B%5B1%2C2%5D%5D"},
		{`{"step": 1E+3}`, "aviso.mars.1E%2B3._._"},
	}
	notes := func(first uint64) []*bridge.Notification {
		ns := bridgetest.Notifications(first, len(idents), bridgetest.EventType("mars"), bridgetest.DataSize(200))
		for i, n := range ns {
			n.Identifier = []byte(idents[i].identifier)
		}
		return ns
	}

	t.Run("jetstream", func(t *testing.T) {
		s := newJetStreamSink(t, srv, Config{Stream: "AVISO", Subject: tmpl}, nil)
		for _, a := range publishAll(t, s, notes(1)) {
			if a.Err != nil {
				t.Fatalf("ack %+v", a)
			}
		}
		msgs := natstest.ReadStream(t, js, "AVISO", "aviso.mars.>")
		if len(msgs) != len(idents) {
			t.Fatalf("%d messages, want %d", len(msgs), len(idents))
		}
		for i, m := range msgs {
			if m.Subject() != idents[i].subject {
				t.Errorf("message %d on %q, want %q", i, m.Subject(), idents[i].subject)
			}
		}
	})
	t.Run("core", func(t *testing.T) {
		s := newCoreSink(t, srv, Config{Subject: tmpl})
		for _, id := range idents {
			// Each value is one token: a subscription naming the exact
			// subject gets the message.
			sub := subscribe(t, srv, id.subject)
			n := notes(10)[0]
			n.Identifier = []byte(id.identifier)
			if a := publishAll(t, s, []*bridge.Notification{n}); a[0].Err != nil {
				t.Fatalf("ack %+v", a[0])
			}
			if m := receive(t, sub); m.Subject != id.subject {
				t.Errorf("received on %q, want %q", m.Subject, id.subject)
			}
		}
	})
}
