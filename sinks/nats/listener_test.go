package nats

import (
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// {listener} is a valid placeholder of NATS_SUBJECT and the DLQ subject,
// and each message goes to the subject of its own listener (one
// percent-encoded token), also when listeners alternate on one sink; a dead
// letter without a notification renders its own Listener.
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
	dlqSub := subscribe(t, srv, "dlq.>")
	dls := []struct {
		dl   bridge.DeadLetter
		want string
	}{
		{bridge.DeadLetter{Kind: bridge.DeadLetterMalformed, Raw: []byte("{"), Listener: "mars.od"}, "dlq.mars%2Eod"},
		{bridge.DeadLetter{Kind: bridge.DeadLetterRejected, Notification: ns[1], Raw: ns[1].CloudEvent}, "dlq.mars-en"},
	}
	for _, tt := range dls {
		if err := s.DeadLetter(testCtx(t, 10*time.Second), tt.dl); err != nil {
			t.Fatalf("DeadLetter(%s): %v", tt.dl.Kind, err)
		}
		if m := receive(t, dlqSub); m.Subject != tt.want {
			t.Errorf("dead letter %s: subject %q, want %q", tt.dl.Kind, m.Subject, tt.want)
		}
	}
}
