package kafka

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want class
	}{
		{"held back", fmt.Errorf("kafka.(*Client).Produce: %w", errHeldBack), retryable},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, retryable},
		{"connection reset", fmt.Errorf("kafka.(*Client).Produce: %w", syscall.ECONNRESET), retryable},
		{"unexpected EOF", io.ErrUnexpectedEOF, retryable},
		{"deadline", context.DeadlineExceeded, retryable},
		{"leader not available", kafkago.LeaderNotAvailable, retryable},
		{"not leader", fmt.Errorf("%w: moved", kafkago.NotLeaderForPartition), retryable},
		{"broker not available", kafkago.BrokerNotAvailable, retryable},
		{"request timed out", kafkago.RequestTimedOut, retryable},
		{"not enough replicas", kafkago.NotEnoughReplicas, retryable},
		{"network exception", kafkago.NetworkException, retryable},
		{"throttled", kafkago.ThrottlingQuotaExceeded, retryable},
		{"unknown server error", kafkago.Unknown, retryable},
		{"unknown topic", kafkago.UnknownTopicOrPartition, unknownTopic},
		{"message too large", kafkago.MessageSizeTooLarge, tooLarge},
		{"record list too large", kafkago.RecordListTooLarge, tooLarge},
		{"client-side too large", kafkago.MessageTooLargeError{}, permanent},
		{"topic authorization", kafkago.TopicAuthorizationFailed, permanent},
		{"cluster authorization", kafkago.ClusterAuthorizationFailed, permanent},
		{"sasl failed", kafkago.SASLAuthenticationFailed, permanent},
		{"sasl mechanism", fmt.Errorf("handshake: %w", kafkago.UnsupportedSASLMechanism), permanent},
		{"invalid topic", kafkago.InvalidTopic, permanent},
		{"policy violation", kafkago.PolicyViolation, permanent},
		{"bad CA", fmt.Errorf("dial: %w", x509.UnknownAuthorityError{}), permanent},
		{"write errors: retryable", kafkago.WriteErrors{nil, kafkago.LeaderNotAvailable}, retryable},
		{"write errors: permanent", kafkago.WriteErrors{kafkago.TopicAuthorizationFailed}, permanent},
		{"write errors: too large", fmt.Errorf("dead letter: %w", kafkago.WriteErrors{kafkago.MessageSizeTooLarge}), tooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err); got != tc.want {
				t.Fatalf("classify(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

// TestPublishErrorWrapping checks what the pipeline sees: permanent errors
// wrapped with bridge.Permanent, every error naming the topic, and a batch
// refused as too large being retryable (re-sent one record per request).
func TestPublishErrorWrapping(t *testing.T) {
	s := &Sink{cfg: Config{}.withDefaults()}
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		err       error
		records   int
		permanent bool
		unhealthy bool
	}{
		{"retryable", kafkago.LeaderNotAvailable, 1, false, true},
		{"held back", errHeldBack, 5, false, false},
		{"permanent", kafkago.TopicAuthorizationFailed, 3, true, false},
		{"one record too large", kafkago.MessageSizeTooLarge, 1, true, false},
		{"batch too large", kafkago.MessageSizeTooLarge, 2, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.healthErr.Store(nil)
			err := s.publishError(ctx, tc.err, "aviso.mars", 2, tc.records)
			if bridge.IsPermanent(err) != tc.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, !tc.permanent, tc.permanent)
			}
			if !strings.Contains(err.Error(), `kafka topic "aviso.mars" partition 2`) {
				t.Errorf("%v does not name the topic and partition", err)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("%v does not wrap %v", err, tc.err)
			}
			if (s.Healthy() != nil) != tc.unhealthy {
				t.Errorf("Healthy() = %v, want unhealthy %v", s.Healthy(), tc.unhealthy)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := Config{Brokers: []string{"k1:9092, k2:9092"}}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // "" = valid; else a substring of the error
	}{
		{"defaults", func(*Config) {}, ""},
		{"no brokers", func(c *Config) { c.Brokers = nil }, "Brokers: "},
		{"broker without port", func(c *Config) { c.Brokers = []string{"kafka"} }, "Brokers: "},
		{"unknown topic placeholder", func(c *Config) { c.Topic = "aviso.{class}" }, "Topic: "},
		{"unknown key placeholder", func(c *Config) { c.Key = "{nope}" }, "Key: "},
		{"unknown dlq placeholder", func(c *Config) { c.DLQTopic = "dlq.{x}" }, "DLQTopic: "},
		{"bad checkpoint topic", func(c *Config) { c.CheckpointTopic = "a/b" }, "CheckpointTopic: "},
		{"acks one", func(c *Config) { c.Acks = "one" }, ""},
		{"acks none", func(c *Config) { c.Acks = "none" }, "Acks: "},
		{"zstd", func(c *Config) { c.Compression = "zstd" }, ""},
		{"brotli", func(c *Config) { c.Compression = "brotli" }, "Compression: "},
		{"structured", func(c *Config) { c.Format = "structured" }, ""},
		{"format", func(c *Config) { c.Format = "json" }, "Format: "},
		{"batch size", func(c *Config) { c.BatchSize = -1 }, "BatchSize: "},
		{"max in flight", func(c *Config) { c.MaxInFlight = -5 }, "MaxInFlight: "},
		{"sasl without user", func(c *Config) { c.SASLMechanism = "PLAIN" }, "Username and SASLMechanism: "},
		{"user without sasl", func(c *Config) { c.Username = "u" }, "SASLMechanism and Username: "},
		{"sasl unknown", func(c *Config) { c.SASLMechanism = "GSSAPI"; c.Username = "u" }, "SASLMechanism: unknown"},
		{"scram 512", func(c *Config) { c.SASLMechanism = "SCRAM-SHA-512"; c.Username = "u"; c.Password = "p" }, ""},
		{"password file", func(c *Config) { c.SASLMechanism = "PLAIN"; c.Username = "u"; c.PasswordFile = pw }, ""},
		{"password both", func(c *Config) { c.SASLMechanism = "PLAIN"; c.Username = "u"; c.Password = "p"; c.PasswordFile = pw }, "Password and PasswordFile: "},
		{"password file missing", func(c *Config) {
			c.SASLMechanism = "PLAIN"
			c.Username = "u"
			c.PasswordFile = filepath.Join(dir, "nope")
		}, "PasswordFile: "},
		{"ca file missing", func(c *Config) { c.TLSCAFile = filepath.Join(dir, "nope") }, "TLSCAFile: "},
		{"ca file not pem", func(c *Config) { c.TLSCAFile = pw }, "TLSCAFile: "},
		{"cert without key", func(c *Config) { c.TLSCertFile = pw }, "TLSCertFile and TLSKeyFile: must be set together"},
		{"key without cert", func(c *Config) { c.TLSKeyFile = pw }, "TLSCertFile and TLSKeyFile: must be set together"},
		{"dedupe scan", func(c *Config) { c.DedupeScan = -2 }, "DedupeScan: "},
		{"sasl without password", func(c *Config) { c.SASLMechanism = "PLAIN"; c.Username = "u" }, "Password and PasswordFile: "},
		{"password both without sasl", func(c *Config) { c.Password = "p"; c.PasswordFile = pw }, "Password and PasswordFile: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.want)
			}
		})
	}
	if got := ok.withDefaults().Brokers; len(got) != 2 || got[0] != "k1:9092" || got[1] != "k2:9092" {
		t.Errorf("brokers split as %q", got)
	}
	c := Config{SASLMechanism: "PLAIN", Username: "u", PasswordFile: pw}
	if p, err := c.password(); err != nil || p != "secret" {
		t.Errorf("password() = %q, %v", p, err)
	}
}

func TestStartError(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		err                  error
		retryable, permanent bool
	}{
		{"refused", fmt.Errorf("kafka start-up scan: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true, false},
		{"leader not available", fmt.Errorf("scan: %w", kafkago.LeaderNotAvailable), true, false},
		{"deadline", fmt.Errorf("scan: %w", context.DeadlineExceeded), true, false},
		{"unexpected EOF", io.ErrUnexpectedEOF, true, false},
		{"authorisation", fmt.Errorf("scan: %w", kafkago.TopicAuthorizationFailed), false, true},
		{"certificate", fmt.Errorf("scan: %w", x509.UnknownAuthorityError{}), false, true},
		{"unknown", errors.New("something else"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := startError(tc.err)
			if bridge.IsRetryable(got) != tc.retryable || bridge.IsPermanent(got) != tc.permanent {
				t.Fatalf("startError(%v): retryable %v permanent %v, want %v %v", tc.err, bridge.IsRetryable(got), bridge.IsPermanent(got), tc.retryable, tc.permanent)
			}
			if got.Error() != tc.err.Error() || !errors.Is(got, tc.err) {
				t.Fatalf("startError changed the error: %q, was %q", got, tc.err)
			}
		})
	}
}

// A broker that is not listening yet is a RetryableError from NewSink, so
// that the caller waits for it; the text names the topic and the brokers.
func TestNewSinkUnreachableIsRetryable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	_, err := NewSink(ctx, Config{Brokers: []string{"127.0.0.1:1"}, EventType: "mars", WriteTimeout: time.Second}, Options{})
	if !bridge.IsRetryable(err) || bridge.IsPermanent(err) {
		t.Fatalf("NewSink against a closed port = %v, want a RetryableError", err)
	}
	if !strings.Contains(err.Error(), "brokers [127.0.0.1:1]") {
		t.Fatalf("%q does not name the brokers", err)
	}
}

// Acks and Compression decode from text as Validate reads them (what a
// caller decoding its configuration gets is what the sink accepts).
func TestAcksCompressionText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Acks
		ok   bool
	}{{"all", AcksAll, true}, {"-1", AcksAll, true}, {"ONE", AcksOne, true}, {"1", AcksOne, true}, {"none", "", false}} {
		var a Acks
		err := a.UnmarshalText([]byte(tc.in))
		if (err == nil) != tc.ok || a != tc.want {
			t.Errorf("Acks %q: %q, %v", tc.in, a, err)
		}
		if tc.ok {
			if err := (Config{Brokers: []string{"k:9092"}, Acks: a}).Validate(); err != nil {
				t.Errorf("Acks %q: Validate: %v", tc.in, err)
			}
		}
	}
	for _, tc := range []struct {
		in   string
		want Compression
		ok   bool
	}{{"none", CompressionNone, true}, {"ZSTD", CompressionZstd, true}, {"lz4", CompressionLz4, true}, {"brotli", "", false}} {
		var c Compression
		err := c.UnmarshalText([]byte(tc.in))
		if (err == nil) != tc.ok || c != tc.want {
			t.Errorf("Compression %q: %q, %v", tc.in, c, err)
		}
	}
}
