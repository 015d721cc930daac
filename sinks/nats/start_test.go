package nats

import (
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

func TestStartError(t *testing.T) {
	for _, tt := range []struct {
		name      string
		err       error
		retryable bool
	}{
		{"no servers", bridge.FieldErrorf("URL", "nats://x: connect: %w", natsgo.ErrNoServers), true},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"timeout", natsgo.ErrTimeout, true},
		{"no responders", bridge.FieldErrorf("URL", "x: jetstream: %w", jetstream.ErrNoStreamResponse), true},
		{"authorization", natsgo.ErrAuthorization, false},
		{"stream not found", bridge.FieldErrorf("Stream", "stream %q: %w", "S", jetstream.ErrStreamNotFound), false},
		{"certificate", &net.OpError{Op: "remote error", Err: x509.UnknownAuthorityError{}}, false},
		{"permanent", bridge.Permanent(natsgo.ErrTimeout), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := startError(tt.err)
			if bridge.IsRetryable(got) != tt.retryable {
				t.Fatalf("IsRetryable(startError(%v)) = %v, want %v", tt.err, !tt.retryable, tt.retryable)
			}
			if got.Error() != tt.err.Error() || !errors.Is(got, tt.err) {
				t.Fatalf("startError changed the error: %q, was %q", got, tt.err)
			}
		})
	}
	if startError(nil) != nil {
		t.Fatal("startError(nil) != nil")
	}
}

// Both sinks report a server that is not there yet as a RetryableError
// (the caller waits for it) with the text naming NATS_URL, and a wrong
// password or a missing stream as an error of another kind.
func TestNewStartErrors(t *testing.T) {
	const user, pw = "bridge", "s3cret"
	srv := natstest.NewServer(t, natstest.WithOptions(func(o *server.Options) { o.Username, o.Password = user, pw }))
	host := strings.TrimPrefix(srv.URL, "nats://")
	for _, mode := range []Mode{ModeCore, ModeJetStream} {
		for _, tt := range []struct {
			name      string
			cfg       Config
			retryable bool
		}{
			{"refused", Config{ConnConfig: ConnConfig{URL: "nats://127.0.0.1:1"}}, true},
			{"wrong password", Config{ConnConfig: ConnConfig{URL: "nats://" + user + ":wrong@" + host}}, false},
		} {
			t.Run(string(mode)+"/"+tt.name, func(t *testing.T) {
				tt.cfg.Mode = mode
				_, err := New(testCtx(t, 10*time.Second), tt.cfg, Options{})
				if err == nil {
					t.Fatal("no error")
				}
				if bridge.IsRetryable(err) != tt.retryable {
					t.Fatalf("IsRetryable(%v) = %v, want %v", err, !tt.retryable, tt.retryable)
				}
				if !strings.HasPrefix(err.Error(), "URL: ") {
					t.Fatalf("error %q does not name the URL field", err)
				}
			})
		}
	}
	_, err := New(testCtx(t, 10*time.Second), Config{ConnConfig: ConnConfig{URL: "nats://" + user + ":" + pw + "@" + host}, Mode: ModeJetStream, Stream: "MISSING"}, Options{})
	if err == nil || bridge.IsRetryable(err) {
		t.Fatalf("missing stream: %v, want an error that is not retryable", err)
	}
}
