package integration

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// TestVersionCommand: `aviso-bridge version` prints version, commit and Go
// version and exits 0.
func TestVersionCommand(t *testing.T) {
	p := startBridge(t, "version", "", env{"BRIDGE_HTTP_ADDR": ""}, "version")
	if code := p.Wait(startupWait); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	out := strings.Join(p.Stdout.Lines(), "\n")
	re := regexp.MustCompile(`^aviso-bridge \S+ \(commit \S+, ` + regexp.QuoteMeta(runtime.Version()) + `, linux/\w+\)$`)
	if !re.MatchString(out) {
		t.Errorf("version output %q does not match %v", out, re)
	}
}

// TestConfigCommand: `aviso-bridge config` prints the effective
// configuration (defaults filled in, secrets redacted) and exits 0; no
// secret appears on stdout or stderr.
func TestConfigCommand(t *testing.T) {
	dir := t.TempDir()
	passFile := filepath.Join(dir, "kafka-password")
	if err := os.WriteFile(passFile, []byte("file-secret-kafka-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets := []string{"tok-5ecret-aviso", "pw-5ecret-nats", "tok-5ecret-nats", "file-secret-kafka-pw"}
	e := env{
		"AVISO_URL":                "http://127.0.0.1:1/aviso/",
		"AVISO_EVENT_TYPE":         "mars",
		"AVISO_TOKEN":              secrets[0],
		"AVISO_HEARTBEAT_INTERVAL": "10s",
		"SINK":                     "kafka",
		"KAFKA_BROKERS":            "127.0.0.1:1",
		"KAFKA_SASL_MECHANISM":     "PLAIN",
		"KAFKA_USERNAME":           "bridge",
		"KAFKA_PASSWORD_FILE":      passFile,
		"NATS_USER":                "bridge",
		"NATS_PASSWORD":            secrets[1],
		"NATS_TOKEN":               secrets[2],
		"BRIDGE_HTTP_ADDR":         "",
	}
	p := startBridge(t, "config", dir, e, "config")
	if code := p.Wait(startupWait); code != 0 {
		t.Fatalf("exit code %d, want 0; stderr %q", code, p.Stderr.Lines())
	}
	out := strings.Join(p.Stdout.Lines(), "\n")
	for _, want := range []string{
		"AVISO_URL=http://127.0.0.1:1/aviso/",
		"AVISO_EVENT_TYPE=mars",
		"AVISO_TOKEN=[redacted]",
		"NATS_PASSWORD=[redacted]",
		"NATS_TOKEN=[redacted]",
		"KAFKA_PASSWORD_FILE=" + passFile,
		"SINK=kafka",
		"CHECKPOINT_FILE=data/checkpoint.json", // defaults are shown
		"CHECKPOINT_STORE=file",
		"BRIDGE_MAX_IN_FLIGHT=256",
		"BRIDGE_ON_REJECT=fail",
		"AVISO_IDLE_TIMEOUT=40s", // effective: max(3 x 10s, 10s + 30s)
	} {
		if !containsLine(out, want) {
			t.Errorf("config output lacks line %q:\n%s", want, out)
		}
	}
	all := out + "\n" + strings.Join(p.Stderr.Lines(), "\n")
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("secret %q printed by `config`", s)
		}
	}
}

func containsLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

// TestConfigErrorsExit2: a configuration error exits 2 with a message naming
// the environment variable to fix, for `run` (one JSON log line on stderr)
// and `config`; so do configuration errors only the server can reveal
// (unknown event type: 400).
func TestConfigErrorsExit2(t *testing.T) {
	aviso := avisotest.NewServer(t, avisotest.WithEventTypes(eventType))
	base := env{"AVISO_URL": aviso.URL, "AVISO_EVENT_TYPE": eventType, "BRIDGE_HTTP_ADDR": ""}
	cases := []struct {
		name     string
		env      env
		variable string
		server   bool // only the server can tell: `config` accepts it
	}{
		{"missing AVISO_URL", base.With("AVISO_URL", ""), "AVISO_URL", false},
		{"missing AVISO_EVENT_TYPE", base.With("AVISO_EVENT_TYPE", ""), "AVISO_EVENT_TYPE", false},
		{"AVISO_URL not http", base.With("AVISO_URL", "ftp://x"), "AVISO_URL", false},
		{"identifier not an object", base.With("AVISO_IDENTIFIER", "[1]"), "AVISO_IDENTIFIER", false},
		{"FROM_ID and FROM_DATE", base.With("AVISO_FROM_ID", "1", "AVISO_FROM_DATE", "2026-01-01T00:00:00Z"), "AVISO_FROM_DATE", false},
		{"bad duration", base.With("AVISO_HEARTBEAT_INTERVAL", "soon"), "AVISO_HEARTBEAT_INTERVAL", false},
		{"bad integer", base.With("BRIDGE_MAX_IN_FLIGHT", "lots"), "BRIDGE_MAX_IN_FLIGHT", false},
		{"bad mode", base.With("AVISO_MODE", "tail"), "AVISO_MODE", false},
		{"unknown sink", base.With("SINK", "redis"), "SINK", false},
		{"unknown reject policy", base.With("BRIDGE_ON_REJECT", "explode"), "BRIDGE_ON_REJECT", false},
		{"unknown placeholder", base.With("SINK", "jetstream", "NATS_SUBJECT", "aviso.{nope}"), "NATS_SUBJECT", false},
		{"kafka without brokers", base.With("SINK", "kafka"), "KAFKA_BROKERS", false},
		{"token over plain http", base.With("AVISO_URL", "http://aviso.example.int", "AVISO_TOKEN", "t0ken-value"), "AVISO_ALLOW_PLAINTEXT_AUTH", false},
		{"unknown store", base.With("CHECKPOINT_STORE", "redis"), "CHECKPOINT_STORE", false},
		{"unknown event type (server 400)", base.With("AVISO_EVENT_TYPE", "nope", "CHECKPOINT_STORE", "none"), "AVISO_EVENT_TYPE", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startBridge(t, "run", "", tc.env)
			if code := p.Wait(startupWait); code != 2 {
				t.Fatalf("run: exit code %d, want 2", code)
			}
			r := p.WaitLog(time.Second, "bridge.config.invalid", func(r logRecord) bool { return r.Msg() == "bridge.config.invalid" })
			if msg := r.Str("error"); !strings.Contains(msg, tc.variable) {
				t.Errorf("run: error %q does not name %s", msg, tc.variable)
			}
			if r.Str("level") != "ERROR" {
				t.Errorf("run: level %q, want ERROR", r.Str("level"))
			}
			p.Logs() // every stderr line is JSON

			c := startBridge(t, "config", "", tc.env, "config")
			code := c.Wait(startupWait)
			if tc.server {
				if code != 0 {
					t.Errorf("config: exit code %d, want 0 (only the server rejects this)", code)
				}
				return
			}
			if code != 2 {
				t.Fatalf("config: exit code %d, want 2", code)
			}
			if msg := strings.Join(c.Stderr.Lines(), "\n"); !strings.Contains(msg, tc.variable) {
				t.Errorf("config: message %q does not name %s", msg, tc.variable)
			}
		})
	}
}

// TestHealthcheckCommand: `aviso-bridge healthcheck` exits 0 when /readyz on
// BRIDGE_HTTP_ADDR answers 200, and 1 when no bridge listens, when the
// bridge is not ready (aviso unreachable), or when BRIDGE_HTTP_ADDR is empty.
func TestHealthcheckCommand(t *testing.T) {
	aviso := avisotest.NewServer(t)
	healthcheck := func(t *testing.T, addr string) (int, string) {
		t.Helper()
		p := startBridge(t, "healthcheck", "", env{"BRIDGE_HTTP_ADDR": addr}, "healthcheck")
		code := p.Wait(startupWait)
		return code, strings.Join(p.Stdout.Lines(), "\n")
	}

	t.Run("nothing listening", func(t *testing.T) {
		if code, out := healthcheck(t, freeAddr(t)); code != 1 {
			t.Errorf("exit code %d (%q), want 1", code, out)
		}
	})
	t.Run("endpoints disabled", func(t *testing.T) {
		if code, out := healthcheck(t, ""); code != 1 {
			t.Errorf("exit code %d (%q), want 1", code, out)
		}
	})
	t.Run("ready", func(t *testing.T) {
		dir := t.TempDir()
		b := startBridge(t, "bridge", dir, avisoEnv(aviso, dir))
		b.WaitReady(startupWait)
		// Listening on all interfaces: the healthcheck dials loopback.
		_, port, _ := net.SplitHostPort(b.HTTPAddr)
		if code, out := healthcheck(t, ":"+port); code != 0 {
			t.Errorf("exit code %d (%q), want 0", code, out)
		}
		b.Signal(syscall.SIGTERM)
		if code := b.Wait(startupWait); code != 0 {
			t.Errorf("bridge exit code %d after SIGTERM, want 0", code)
		}
	})
	t.Run("not ready", func(t *testing.T) {
		dir := t.TempDir()
		b := startBridge(t, "bridge", dir, avisoEnv(aviso, dir).With("AVISO_URL", "http://"+freeAddr(t)))
		b.WaitHTTP(startupWait, "/healthz", "alive", func(code int, _ []byte) bool { return code == http.StatusOK })
		code, out := healthcheck(t, b.HTTPAddr)
		if code != 1 {
			t.Errorf("exit code %d, want 1", code)
		}
		if !strings.Contains(out, "aviso_stream") {
			t.Errorf("healthcheck output %q does not name the failing condition aviso_stream", out)
		}
	})
}

// TestReadyz: /readyz is 503 with a JSON body naming the failing condition
// while aviso is unreachable, and 200 once the stream is open; /healthz is
// 200 throughout.
func TestReadyz(t *testing.T) {
	// An address nothing listens on yet; avisotest cannot take a given
	// port, so the bridge first points at nothing, then at a live server.
	dir := t.TempDir()
	dead := "http://" + freeAddr(t)
	b := startBridge(t, "unreachable", dir, env{"AVISO_URL": dead, "AVISO_EVENT_TYPE": eventType, "CHECKPOINT_FILE": filepath.Join(dir, "cp.json")})
	b.WaitHTTP(startupWait, "/healthz", "alive", func(code int, _ []byte) bool { return code == http.StatusOK })
	code, body := b.WaitHTTP(startupWait, "/readyz", "503", func(code int, _ []byte) bool { return code == http.StatusServiceUnavailable })
	var rep struct {
		Ready   bool              `json:"ready"`
		Failing map[string]string `json:"failing"`
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("/readyz %d body %q is not JSON: %v", code, body, err)
	}
	if rep.Ready || rep.Failing["aviso_stream"] == "" {
		t.Errorf("/readyz body %s: want ready=false and a reason under failing.aviso_stream", body)
	}
	if len(rep.Failing) != 1 {
		t.Errorf("/readyz body %s: only aviso_stream should fail (the stdout sink is fine)", body)
	}
	b.Signal(syscall.SIGTERM)
	if code := b.Wait(startupWait); code != 0 {
		t.Errorf("exit code %d after SIGTERM while never connected, want 0", code)
	}

	aviso := avisotest.NewServer(t)
	b = startBridge(t, "streaming", dir, env{"AVISO_URL": aviso.URL, "AVISO_EVENT_TYPE": eventType, "CHECKPOINT_FILE": filepath.Join(dir, "cp.json")})
	code, body = b.WaitHTTP(startupWait, "/readyz", "200", func(code int, _ []byte) bool { return code == http.StatusOK })
	rep.Ready, rep.Failing = false, nil
	if err := json.Unmarshal(body, &rep); err != nil || !rep.Ready || len(rep.Failing) != 0 {
		t.Errorf("/readyz %d body %q: want {\"ready\":true}", code, body)
	}
	if c, _, err := httpGet(t.Context(), b.HTTPAddr, "/healthz"); err != nil || c != http.StatusOK {
		t.Errorf("/healthz: %d %v", c, err)
	}
}

// TestCheckpointKeyHeld: a second bridge on the same CHECKPOINT_FILE (same
// key) exits 1 naming the file, and the first keeps running.
func TestCheckpointKeyHeld(t *testing.T) {
	aviso := avisotest.NewServer(t)
	dir := t.TempDir()
	e := avisoEnv(aviso, dir)
	first := startBridge(t, "first", dir, e)
	first.WaitReady(startupWait)
	second := startBridge(t, "second", dir, e)
	if code := second.Wait(startupWait); code != 1 {
		t.Fatalf("second bridge: exit code %d, want 1", code)
	}
	r := second.WaitEvent(time.Second, "bridge.failed")
	if msg := r.Str("error"); !strings.Contains(msg, "CHECKPOINT_FILE") || !strings.Contains(msg, "held by another bridge") {
		t.Errorf("second bridge: error %q should name CHECKPOINT_FILE and say the key is held", msg)
	}
	if first.Exited() {
		t.Fatalf("first bridge exited")
	}
	if code, _, err := httpGet(t.Context(), first.HTTPAddr, "/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("first bridge /readyz: %d %v", code, err)
	}
	first.Signal(syscall.SIGTERM)
	if code := first.Wait(startupWait); code != 0 {
		t.Errorf("first bridge exit code %d after SIGTERM, want 0", code)
	}
	// Once the first is gone the key is free again.
	third := startBridge(t, "third", dir, e)
	third.WaitReady(startupWait)
}

// TestStdoutDefaults: with only AVISO_URL and AVISO_EVENT_TYPE set, the
// bridge watches live and writes one line per notification to stdout, the
// CloudEvent JSON byte for byte as aviso sent it, keeps its checkpoint in
// data/checkpoint.json under its working directory, and exits 0 on SIGTERM.
func TestStdoutDefaults(t *testing.T) {
	aviso := avisotest.NewServer(t)
	publish(aviso, 5) // history: a live-only start must not deliver it
	dir := t.TempDir()
	e := env{"AVISO_URL": aviso.URL, "AVISO_EVENT_TYPE": eventType}
	if l, err := net.Listen("tcp", ":8080"); err == nil {
		l.Close()
	} else {
		// The default :8080 is taken on this machine; disabling the
		// endpoints is the only other way to keep the defaults.
		t.Logf("port 8080 is busy (%v): setting BRIDGE_HTTP_ADDR= (empty)", err)
		e = e.With("BRIDGE_HTTP_ADDR", "")
		e["BRIDGE_HTTP_ADDR"] = ""
	}
	p := startBridge(t, "stdout", dir, e)
	if _, err := aviso.WaitRequests(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	p.WaitEvent(startupWait, "aviso.connection.opened")
	seqs := publish(aviso, 200)
	if !eventually(startupWait, func() bool { return len(p.Stdout.Lines()) >= len(seqs) || p.Exited() }) {
		t.Fatalf("stdout: %d of %d lines", len(p.Stdout.Lines()), len(seqs))
	}
	want := cloudEvents(t, aviso)
	got := p.Stdout.Lines()
	var ids []uint64
	for i, line := range got {
		var ce struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(line), &ce); err != nil {
			t.Fatalf("stdout line %d is not a CloudEvent: %q", i, line)
		}
		s := seqOfID(t, ce.ID)
		ids = append(ids, s)
		if !bytes.Equal([]byte(line), want[s]) {
			t.Errorf("stdout line %d differs from the CloudEvent aviso sent:\n got %s\nwant %s", i, line, want[s])
		}
	}
	requireComplete(t, "stdout", ids, seqs, 0)

	p.Signal(syscall.SIGTERM)
	if code := p.Wait(startupWait); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	if len(p.Stdout.Lines()) != len(seqs) {
		t.Errorf("stdout has %d lines after stop, want %d", len(p.Stdout.Lines()), len(seqs))
	}
	cp, ok := checkpointSeq(t, filepath.Join(dir, "data", "checkpoint.json"))
	if !ok || cp != seqs[len(seqs)-1] {
		t.Errorf("data/checkpoint.json: sequence %d (found %v), want %d", cp, ok, seqs[len(seqs)-1])
	}
}
