package nats

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// logBuffer is a concurrency-safe log sink for asserting on log events.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func contextTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// newJetStreamSink builds a sink on srv; Close runs at cleanup.
func newJetStreamSink(t *testing.T, srv *natstest.Server, cfg Config, log *slog.Logger) *JetStreamSink {
	t.Helper()
	cfg.URL = srv.URL
	cfg.ReconnectWait = 50 * time.Millisecond
	s, err := NewJetStreamSink(testCtx(t, 10*time.Second), cfg, Options{Logger: log})
	if err != nil {
		t.Fatalf("NewJetStreamSink: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func newCoreSink(t *testing.T, srv *natstest.Server, cfg Config) *CoreSink {
	t.Helper()
	cfg.URL = srv.URL
	cfg.ReconnectWait = 50 * time.Millisecond
	s, err := NewCoreSink(testCtx(t, 10*time.Second), cfg, Options{})
	if err != nil {
		t.Fatalf("NewCoreSink: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

// avisoStream creates stream AVISO on aviso.> and returns a JetStream
// context for reading it back.
func avisoStream(t *testing.T, srv *natstest.Server, mod ...func(*jetstream.StreamConfig)) jetstream.JetStream {
	t.Helper()
	cfg := jetstream.StreamConfig{Name: "AVISO", Subjects: []string{"aviso.>"}, Duplicates: 2 * time.Minute}
	for _, m := range mod {
		m(&cfg)
	}
	srv.CreateStream(t, cfg)
	return srv.JetStream(t)
}

// publishAll publishes ns, at most 64 unacknowledged (sinks are built
// with a larger MaxInFlight), and returns their acks in order, failing the
// test on a Publish error or a missing ack.
func publishAll(t *testing.T, s bridge.Sink, ns []*bridge.Notification) []bridge.Ack {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	out := make([]bridge.Ack, 0, len(ns))
	take := func() {
		select {
		case a := <-s.Acks():
			out = append(out, a)
		case <-ctx.Done():
			t.Fatalf("waiting for acks: got %d of %d", len(out), len(ns))
		}
	}
	for i, n := range ns {
		if i-len(out) >= 64 {
			take()
		}
		if err := s.Publish(ctx, n); err != nil {
			t.Fatalf("Publish %s: %v", n.ID, err)
		}
	}
	for len(out) < len(ns) {
		take()
	}
	return out
}

// nextAck waits for one ack.
func nextAck(t *testing.T, s bridge.Sink) bridge.Ack {
	t.Helper()
	select {
	case a := <-s.Acks():
		return a
	case <-time.After(30 * time.Second):
		t.Fatal("no ack within 30s")
	}
	return bridge.Ack{}
}

func mustContain(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error containing %q, got nil", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}
