package supervisor_test

import (
	"context"
	"sync"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// listenerPipeline records the listener of every submitted notification
// and dead letter.
type listenerPipeline struct {
	mu        sync.Mutex
	listeners []string
	dls       []bridge.DeadLetter
}

func (p *listenerPipeline) Submit(_ context.Context, n *bridge.Notification) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.listeners = append(p.listeners, n.Listener)
	return nil
}

func (p *listenerPipeline) DeadLetter(_ context.Context, dl bridge.DeadLetter) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dls = append(p.dls, dl)
	return nil
}

// Every notification the supervisor forwards, and every dead letter it
// sends without a notification (malformed, unrenderable), carries
// Config.Listener (the {listener} placeholder), the event type when none is
// configured.
func TestNotificationsCarryTheListener(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, listener, want string
	}{
		{"named", "mars-od.0", "mars-od.0"},
		{"unnamed: the event type", "", "mars"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, avisotest.V013)
			e.publish(2)
			e.srv.PublishPoison("mars", map[string]string{"class": "od"}, "bad polygon")
			e.publish(3)
			e.srv.Fault(avisotest.Malformed{After: 1, Data: "{"})
			cfg := e.config()
			cfg.Mode, cfg.Start.FromID, cfg.Listener = aviso.Replay, u64(1), tt.listener
			cfg.DeadLetters = true
			p := &listenerPipeline{}
			cfg.Pipeline = p
			sup, err := supervisor.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- sup.Run(context.Background()) }()
			if err := wait(t, done, "supervisor Run"); err != nil {
				t.Fatalf("Run: %v", err)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if len(p.listeners) != 5 {
				t.Fatalf("%d notifications forwarded, want 5", len(p.listeners))
			}
			for i, l := range p.listeners {
				if l != tt.want {
					t.Errorf("notification %d: Listener %q, want %q", i, l, tt.want)
				}
			}
			kinds := map[bridge.DeadLetterKind]bool{}
			for _, dl := range p.dls {
				kinds[dl.Kind] = true
				if dl.Listener != tt.want {
					t.Errorf("dead letter %s: Listener %q, want %q", dl.Kind, dl.Listener, tt.want)
				}
			}
			if len(p.dls) != 2 || !kinds[bridge.DeadLetterMalformed] || !kinds[bridge.DeadLetterUnrenderable] {
				t.Errorf("dead letters %+v, want one malformed and one unrenderable", p.dls)
			}
		})
	}
}
