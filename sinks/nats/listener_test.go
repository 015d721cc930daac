package nats

import (
	"testing"

	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// {listener} is a valid placeholder of NATS_SUBJECT and the DLQ subject,
// and each message goes to the subject of its own listener (one
// percent-encoded token), also when listeners alternate on one sink.
func TestListenerSubjects(t *testing.T) {
	cfg := Config{Subject: "lst.{listener}.{event_type}", DLQSubject: "dlq.{listener}"}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate(%+v): %v", cfg, err)
	}
	srv := natstest.NewServer(t)
	sub := subscribe(t, srv, "lst.>")
	s := newCoreSink(t, srv, cfg)
	listeners := []string{"mars.od", "mars-en", ""}
	ns := bridgetest.Notifications(1, 6)
	for i, n := range ns {
		n.Listener = listeners[i%len(listeners)]
	}
	for i, a := range publishAll(t, s, ns) {
		if a.Err != nil {
			t.Fatalf("ack %d = %+v", i, a)
		}
	}
	want := map[string]string{"mars.od": "lst.mars%2Eod.mars", "mars-en": "lst.mars-en.mars", "": "lst._.mars"}
	for i, n := range ns {
		if m := receive(t, sub); m.Subject != want[n.Listener] {
			t.Errorf("message %d (listener %q): subject %q, want %q", i, n.Listener, m.Subject, want[n.Listener])
		}
	}
}
