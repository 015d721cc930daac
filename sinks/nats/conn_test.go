package nats

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// Closing a sink logs sink.nats.closed, not a sink.nats.disconnected
// warning (nats.go reports its own close as a disconnect too).
func TestCloseLogsNoDisconnect(t *testing.T) {
	srv := natstest.NewServer(t)
	avisoStream(t, srv)
	tests := []struct {
		name string
		open func(log *logBuffer) (bridge.Sink, error)
	}{
		{"jetstream", func(log *logBuffer) (bridge.Sink, error) {
			return NewJetStreamSink(testCtx(t, 10*time.Second), Config{ConnConfig: ConnConfig{URL: srv.URL}, Stream: "AVISO"}, Options{Logger: log.logger()})
		}},
		{"core", func(log *logBuffer) (bridge.Sink, error) {
			return NewCoreSink(testCtx(t, 10*time.Second), Config{ConnConfig: ConnConfig{URL: srv.URL}}, Options{Logger: log.logger()})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logBuffer
			s, err := tt.open(&logs)
			if err != nil {
				t.Fatal(err)
			}
			publishAll(t, s, bridgetest.Notifications(1, 3, bridgetest.EventType("mars"), bridgetest.DataSize(100)))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Close(ctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			// nats.go runs the disconnect handler before the closed one.
			bridgetest.Eventually(t, 5*time.Second, "sink.nats.closed", func() bool { return strings.Contains(logs.String(), `"sink.nats.closed"`) })
			if strings.Contains(logs.String(), "sink.nats.disconnected") {
				t.Errorf("Close logged a disconnect:\n%s", logs.String())
			}
		})
	}
}
