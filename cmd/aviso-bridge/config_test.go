package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/bridge"
)

func load(t *testing.T, env map[string]string) (*Config, error) {
	t.Helper()
	return loadConfig(context.Background(), envconfig.MapLookuper(env))
}

func minimal(extra map[string]string) map[string]string {
	env := map[string]string{"AVISO_URL": "http://127.0.0.1:8000/", "AVISO_EVENT_TYPE": "mars"}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func TestDefaults(t *testing.T) {
	c, err := load(t, minimal(nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"AVISO_IDENTIFIER", c.Aviso.Identifier, "{}"},
		{"AVISO_MODE", c.Aviso.Mode, avisoMode(aviso.Watch)},
		{"AVISO_HEARTBEAT_INTERVAL", c.Aviso.HeartbeatInterval, 30 * time.Second},
		{"AVISO_IDLE_TIMEOUT", c.Aviso.IdleTimeout, 90 * time.Second},
		{"AVISO_MAX_EVENT_SIZE", c.Aviso.MaxEventSize, ByteSize(8 << 20)},
		{"SINK", c.Sink, sinkStdout},
		{"SINK_FORMAT", c.SinkFormat, "binary"},
		{"NATS_URL", c.NATS.URL, "nats://127.0.0.1:4222"},
		{"NATS_SUBJECT", c.NATS.Subject, "aviso.{event_type}"},
		{"NATS_MAX_PENDING", c.NATS.MaxPending, 256},
		{"KAFKA_TOPIC", c.Kafka.Topic, "aviso.{event_type}"},
		{"KAFKA_KEY", c.Kafka.Key, "{event_type}"},
		{"KAFKA_ACKS", c.Kafka.Acks, "all"},
		{"KAFKA_BATCH_SIZE", c.Kafka.BatchSize, 100},
		{"KAFKA_BATCH_TIMEOUT", c.Kafka.BatchTimeout, 5 * time.Millisecond},
		{"KAFKA_COMPRESSION", c.Kafka.Compression, "none"},
		{"CHECKPOINT_STORE", c.Checkpoint.Store, storeFile},
		{"CHECKPOINT_FILE", c.Checkpoint.File, "data/checkpoint.json"},
		{"CHECKPOINT_INTERVAL", c.Checkpoint.Interval, time.Second},
		{"NATS_KV_BUCKET", c.NATS.KVBucket, "aviso_bridge"},
		{"KAFKA_CHECKPOINT_TOPIC", c.Kafka.CheckpointTopic, "aviso-bridge-checkpoints"},
		{"BRIDGE_MAX_IN_FLIGHT", c.Bridge.MaxInFlight, 256},
		{"BRIDGE_ON_REJECT", c.Bridge.OnReject, rejectPolicy(bridge.RejectFail)},
		{"BRIDGE_DLQ_SUBJECT", c.Bridge.DLQSubject, "aviso.dlq"},
		{"BRIDGE_DLQ_TOPIC", c.Bridge.DLQTopic, "aviso-dlq"},
		{"BRIDGE_SHUTDOWN_TIMEOUT", c.Bridge.ShutdownTimeout, 20 * time.Second},
		{"BRIDGE_HTTP_ADDR", c.Bridge.HTTPAddr, ":8080"},
		{"BRIDGE_READY_STALL", c.Bridge.ReadyStall, 2 * time.Minute},
		{"LOG_LEVEL", c.LogLevel, "info"},
		{"LOG_FORMAT", c.LogFormat, "json"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s default = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestIdleTimeoutFollowsHeartbeat(t *testing.T) {
	for _, tc := range []struct {
		interval string
		want     time.Duration
	}{{"30s", 90 * time.Second}, {"60s", 180 * time.Second}, {"10s", 40 * time.Second}, {"1s", 31 * time.Second}} {
		c, err := load(t, minimal(map[string]string{"AVISO_HEARTBEAT_INTERVAL": tc.interval}))
		if err != nil {
			t.Fatal(err)
		}
		if c.Aviso.IdleTimeout != tc.want {
			t.Errorf("interval %s: idle %s, want %s", tc.interval, c.Aviso.IdleTimeout, tc.want)
		}
	}
	c, err := load(t, minimal(map[string]string{"AVISO_IDLE_TIMEOUT": "5s"}))
	if err != nil || c.Aviso.IdleTimeout != 5*time.Second {
		t.Fatalf("explicit idle timeout: %v %v", c, err)
	}
}

// Every configuration error names the variable to fix.
func TestValidationNamesTheVariable(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("t0ken"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"AVISO_EVENT_TYPE": "mars"}, "AVISO_URL"},
		{map[string]string{"AVISO_URL": "http://127.0.0.1/"}, "AVISO_EVENT_TYPE"},
		{minimal(map[string]string{"AVISO_URL": "ftp://x/"}), "AVISO_URL"},
		{minimal(map[string]string{"AVISO_IDENTIFIER": "{not json"}), "AVISO_IDENTIFIER"},
		{minimal(map[string]string{"AVISO_IDENTIFIER": "[1,2]"}), "AVISO_IDENTIFIER"},
		{minimal(map[string]string{"AVISO_FROM_ID": "5", "AVISO_FROM_DATE": "2026-01-01T00:00:00Z"}), "AVISO_FROM_ID and AVISO_FROM_DATE"},
		{minimal(map[string]string{"AVISO_FROM_ID": "-3"}), "AVISO_FROM_ID"},
		{minimal(map[string]string{"AVISO_MODE": "tail"}), "AVISO_MODE"},
		{minimal(map[string]string{"AVISO_HEARTBEAT_INTERVAL": "soon"}), "AVISO_HEARTBEAT_INTERVAL"},
		{minimal(map[string]string{"AVISO_MAX_EVENT_SIZE": "huge"}), "AVISO_MAX_EVENT_SIZE"},
		{minimal(map[string]string{"AVISO_TOKEN": "a", "AVISO_TOKEN_FILE": tokenFile}), "AVISO_TOKEN and AVISO_TOKEN_FILE"},
		{minimal(map[string]string{"AVISO_TOKEN_FILE": filepath.Join(dir, "missing")}), "AVISO_TOKEN_FILE"},
		{minimal(map[string]string{"AVISO_URL": "http://aviso.example.int/", "AVISO_TOKEN": "secret"}), "AVISO_ALLOW_PLAINTEXT_AUTH"},
		{minimal(map[string]string{"AVISO_USERNAME": "u"}), "AVISO_PASSWORD"},
		{minimal(map[string]string{"SINK": "redis"}), "SINK"},
		{minimal(map[string]string{"SINK_FORMAT": "xml"}), "SINK_FORMAT"},
		{minimal(map[string]string{"SINK": "jetstream", "NATS_SUBJECT": "aviso.{nope}"}), "NATS_SUBJECT"},
		{minimal(map[string]string{"SINK": "jetstream", "NATS_MAX_PENDING": "lots"}), "NATS_MAX_PENDING"},
		{minimal(map[string]string{"SINK": "jetstream", "NATS_STREAM_CREATE": "true"}), "NATS_STREAM"},
		{minimal(map[string]string{"SINK": "jetstream", "BRIDGE_DLQ_SUBJECT": "dlq.{x}"}), "BRIDGE_DLQ_SUBJECT"},
		{minimal(map[string]string{"SINK": "kafka"}), "KAFKA_BROKERS"},
		{minimal(map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k:9092", "KAFKA_TOPIC": "t.{bad}"}), "KAFKA_TOPIC"},
		{minimal(map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k:9092", "KAFKA_KEY": "{bad}"}), "KAFKA_KEY"},
		{minimal(map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k:9092", "KAFKA_ACKS": "none"}), "KAFKA_ACKS"},
		{minimal(map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k:9092", "KAFKA_COMPRESSION": "brotli"}), "KAFKA_COMPRESSION"},
		{minimal(map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k:9092", "KAFKA_SASL_MECHANISM": "GSSAPI"}), "KAFKA_SASL_MECHANISM"},
		{minimal(map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k:9092", "KAFKA_SASL_MECHANISM": "PLAIN"}), "KAFKA_USERNAME"},
		{minimal(map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k:9092", "KAFKA_BATCH_TIMEOUT": "fast"}), "KAFKA_BATCH_TIMEOUT"},
		{minimal(map[string]string{"CHECKPOINT_STORE": "redis"}), "CHECKPOINT_STORE"},
		{minimal(map[string]string{"CHECKPOINT_KEY": "abc"}), "CHECKPOINT_KEY"},
		{minimal(map[string]string{"SINK": "jetstream", "CHECKPOINT_STORE": "nats-kv", "NATS_KV_BUCKET": "a.b"}), "NATS_KV_BUCKET: "},
		{minimal(map[string]string{"CHECKPOINT_INTERVAL": "0s"}), "CHECKPOINT_INTERVAL"},
		{minimal(map[string]string{"BRIDGE_MAX_IN_FLIGHT": "0"}), "BRIDGE_MAX_IN_FLIGHT"},
		{minimal(map[string]string{"BRIDGE_ON_REJECT": "ignore"}), "BRIDGE_ON_REJECT"},
		{minimal(map[string]string{"BRIDGE_HTTP_ADDR": "8080"}), "BRIDGE_HTTP_ADDR"},
		{minimal(map[string]string{"BRIDGE_SHUTDOWN_TIMEOUT": "forever"}), "BRIDGE_SHUTDOWN_TIMEOUT"},
		{minimal(map[string]string{"LOG_LEVEL": "trace"}), "LOG_LEVEL"},
		{minimal(map[string]string{"LOG_FORMAT": "xml"}), "LOG_FORMAT"},
	}
	for _, tc := range cases {
		_, err := load(t, tc.env)
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%v: err = %v, want a *ConfigError", tc.env, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %q does not name %s", tc.env, err, tc.want)
		}
	}
}

// What the sink and store libraries accept, config accepts: the library's
// Validate decides (KAFKA_ACKS was refused by cmd for values the Kafka sink
// takes).
func TestLibraryDecidesWhatIsValid(t *testing.T) {
	kafka := map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k:9092"}
	for _, tc := range []struct {
		name, variable, value string
		ok                    bool
	}{
		{"acks -1", "KAFKA_ACKS", "-1", true},
		{"acks ONE", "KAFKA_ACKS", "ONE", true},
		{"acks none", "KAFKA_ACKS", "none", false},
		{"compression ZSTD", "KAFKA_COMPRESSION", "ZSTD", true},
		{"compression brotli", "KAFKA_COMPRESSION", "brotli", false},
	} {
		env := minimal(kafka)
		env[tc.variable] = tc.value
		_, err := load(t, env)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.variable)) {
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.variable)
		}
	}
}

func TestPlaintextAuthAllowedToLoopbackOrWhenAsked(t *testing.T) {
	for _, env := range []map[string]string{
		minimal(map[string]string{"AVISO_URL": "http://127.0.0.1:8000/", "AVISO_TOKEN": "secret"}),
		minimal(map[string]string{"AVISO_URL": "http://localhost:8000/", "AVISO_TOKEN": "secret"}),
		minimal(map[string]string{"AVISO_URL": "https://aviso.example.int/", "AVISO_TOKEN": "secret"}),
		minimal(map[string]string{"AVISO_URL": "http://aviso.example.int/", "AVISO_TOKEN": "secret", "AVISO_ALLOW_PLAINTEXT_AUTH": "true"}),
	} {
		if _, err := load(t, env); err != nil {
			t.Errorf("%v: %v", env, err)
		}
	}
}

func TestEmptyValueMeansDefault(t *testing.T) {
	c, err := load(t, minimal(map[string]string{"SINK": "", "NATS_SUBJECT": " ", "BRIDGE_HTTP_ADDR": ""}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Sink != "stdout" || c.NATS.Subject != "aviso.{event_type}" {
		t.Errorf("empty values did not fall back to defaults: SINK=%q NATS_SUBJECT=%q", c.Sink, c.NATS.Subject)
	}
	if c.Bridge.HTTPAddr != "" {
		t.Errorf("empty BRIDGE_HTTP_ADDR must disable the endpoints, got %q", c.Bridge.HTTPAddr)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"8MiB": 8 << 20, "512KiB": 512 << 10, "1048576": 1 << 20, "2MB": 2e6, "1 GiB": 1 << 30} {
		got, err := parseByteSize(in)
		if err != nil || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "MiB", "1.5MiB", "8XB"} {
		if _, err := parseByteSize(in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

var secretEnv = map[string]string{
	"AVISO_URL":            "https://aviso.example.int/",
	"AVISO_EVENT_TYPE":     "mars",
	"AVISO_USERNAME":       "alice",
	"AVISO_PASSWORD":       "aviso-pass-9f2c",
	"SINK":                 "kafka",
	"KAFKA_BROKERS":        "k:9092",
	"KAFKA_SASL_MECHANISM": "PLAIN",
	"KAFKA_USERNAME":       "bob",
	"KAFKA_PASSWORD":       "kafka-pass-77ab",
	"NATS_TOKEN":           "nats-token-31de",
	"NATS_PASSWORD":        "nats-pass-5510",
}

func TestConfigCommandRedactsSecrets(t *testing.T) {
	var out, errb bytes.Buffer
	code := realMain([]string{"config"}, &out, &errb, envconfig.MapLookuper(secretEnv))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, s := range []string{"aviso-pass-9f2c", "kafka-pass-77ab", "nats-token-31de", "nats-pass-5510"} {
		if strings.Contains(out.String(), s) {
			t.Errorf("config printed the secret %q", s)
		}
	}
	for _, want := range []string{"AVISO_PASSWORD=[redacted]", "KAFKA_PASSWORD=[redacted]", "AVISO_USERNAME=alice", "SINK=kafka", "BRIDGE_MAX_IN_FLIGHT=256"} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("config output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestLoggerScrubsSecrets(t *testing.T) {
	c, err := load(t, secretEnv)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log := newLogger(&buf, "debug", format, c.secretValues())
		log.Info("msg with aviso-pass-9f2c inside", "error", errors.New("dial: token nats-token-31de refused"),
			"url", "https://alice:aviso-pass-9f2c@aviso.example.int/", slog.Group("g", "p", "kafka-pass-77ab"))
		log.With("k", "nats-pass-5510").Warn("w")
		for _, s := range c.secretValues() {
			if strings.Contains(buf.String(), s) {
				t.Errorf("%s log contains secret %q: %s", format, s, buf.String())
			}
		}
		if !strings.Contains(buf.String(), "[redacted]") {
			t.Errorf("%s log: nothing redacted: %s", format, buf.String())
		}
	}
}

func TestEveryVariableIsListed(t *testing.T) {
	c, err := load(t, minimal(nil))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, v := range variables(c) {
		if names[v.Name] {
			t.Errorf("variable %s listed twice", v.Name)
		}
		names[v.Name] = true
	}
	// The variables interface.md names (section 2) must all be read.
	for _, n := range strings.Fields(`AVISO_URL AVISO_EVENT_TYPE AVISO_IDENTIFIER AVISO_FROM_ID AVISO_FROM_DATE AVISO_MODE
		AVISO_TOKEN AVISO_TOKEN_FILE AVISO_USERNAME AVISO_PASSWORD AVISO_PASSWORD_FILE AVISO_CA_FILE
		AVISO_INSECURE_SKIP_VERIFY AVISO_HEARTBEAT_INTERVAL AVISO_IDLE_TIMEOUT AVISO_MAX_EVENT_SIZE AVISO_ALLOW_PLAINTEXT_AUTH
		SINK SINK_FORMAT NATS_URL NATS_SUBJECT NATS_STREAM NATS_STREAM_CREATE NATS_STREAM_SUBJECTS NATS_MAX_PENDING
		NATS_CREDS_FILE NATS_NKEY_SEED_FILE NATS_TOKEN NATS_TOKEN_FILE NATS_USER NATS_PASSWORD NATS_PASSWORD_FILE
		NATS_TLS_CA_FILE NATS_TLS_CERT_FILE NATS_TLS_KEY_FILE KAFKA_BROKERS KAFKA_TOPIC KAFKA_KEY KAFKA_ACKS
		KAFKA_BATCH_SIZE KAFKA_BATCH_TIMEOUT KAFKA_COMPRESSION KAFKA_SASL_MECHANISM KAFKA_USERNAME KAFKA_PASSWORD
		KAFKA_PASSWORD_FILE KAFKA_TLS KAFKA_TLS_CA_FILE KAFKA_TLS_CERT_FILE KAFKA_TLS_KEY_FILE CHECKPOINT_STORE
		CHECKPOINT_FILE CHECKPOINT_KEY CHECKPOINT_INTERVAL NATS_KV_BUCKET KAFKA_CHECKPOINT_TOPIC BRIDGE_MAX_IN_FLIGHT
		BRIDGE_ON_REJECT BRIDGE_DLQ_SUBJECT BRIDGE_DLQ_TOPIC BRIDGE_SHUTDOWN_TIMEOUT BRIDGE_HTTP_ADDR BRIDGE_READY_STALL
		LOG_LEVEL LOG_FORMAT`) {
		if !names[n] {
			t.Errorf("interface.md variable %s is not read", n)
		}
	}
}

// The choices and sequences are decoded at load, into the values run uses.
func TestTypedValuesAtLoad(t *testing.T) {
	c, err := load(t, minimal(map[string]string{"SINK": " jetstream ", "CHECKPOINT_STORE": "none", "AVISO_MODE": "replay",
		"AVISO_FROM_ID": " 7", "AVISO_TO_ID": "9", "BRIDGE_ON_REJECT": "dlq"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Sink != sinkJetStream || c.Checkpoint.Store != storeNone || aviso.Mode(c.Aviso.Mode) != aviso.Replay ||
		bridge.RejectPolicy(c.Bridge.OnReject) != bridge.RejectDLQ {
		t.Errorf("choices: %q %q %v %q", c.Sink, c.Checkpoint.Store, c.Aviso.Mode, c.Bridge.OnReject)
	}
	if p := c.Aviso.FromID.ptr(); p == nil || *p != 7 {
		t.Errorf("AVISO_FROM_ID: %v", p)
	}
	if p := c.Aviso.ToID.ptr(); p == nil || *p != 9 {
		t.Errorf("AVISO_TO_ID: %v", p)
	}
	if c.Aviso.FromDate != "" || c.Aviso.ToDate != "" {
		t.Error("dates set")
	}
	unset, err := load(t, minimal(nil))
	if err != nil {
		t.Fatal(err)
	}
	if unset.Aviso.FromID.ptr() != nil || unset.Aviso.ToID.ptr() != nil {
		t.Error("unset sequences are not nil")
	}
}
