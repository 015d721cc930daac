package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-envconfig"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

// authRecorder is an HTTP server that records the Authorization header of
// every request and answers with handler.
type authRecorder struct {
	*httptest.Server
	mu    sync.Mutex
	auths []string
}

func newAuthRecorder(t *testing.T, handler http.HandlerFunc) *authRecorder {
	t.Helper()
	r := &authRecorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.auths = append(r.auths, req.Header.Get("Authorization"))
		r.mu.Unlock()
		handler(w, req)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *authRecorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.auths...)
}

// Credentials follow a 307/308 only to the same scheme, host and port; a
// redirect elsewhere is refused with an error naming the target, and the
// target never sees the Authorization header.
func TestRedirectKeepsCredentialsOnOrigin(t *testing.T) {
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			other := newAuthRecorder(t, func(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) })
			front := newAuthRecorder(t, func(w http.ResponseWriter, r *http.Request) {
				switch {
				case strings.HasPrefix(r.URL.Path, "/elsewhere/"): // another port of the same host
					http.Redirect(w, r, other.URL+r.URL.Path, code)
				case strings.HasPrefix(r.URL.Path, "/same/"):
					http.Redirect(w, r, "/moved"+r.URL.Path, code)
				default:
					w.WriteHeader(http.StatusNotFound)
				}
			})
			for _, tc := range []struct {
				base       string
				wantRefuse bool
			}{{front.URL + "/elsewhere/", true}, {front.URL + "/same/", false}} {
				cfg := &Config{Aviso: AvisoConfig{URL: tc.base, Token: "tok-redirect-1234", MaxEventSize: 1 << 20, IdleTimeout: time.Minute}}
				c, err := avisoClient(cfg)
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Connect(context.Background(), aviso.Watch, aviso.Request{EventType: "mars"})
				if err == nil {
					t.Fatalf("%s: connected", tc.base)
				}
				refused := strings.Contains(err.Error(), "refusing to follow the redirect to "+other.URL)
				if refused != tc.wantRefuse {
					t.Errorf("%s: refused=%v, want %v: %v", tc.base, refused, tc.wantRefuse, err)
				}
				if strings.Contains(err.Error(), "tok-redirect-1234") {
					t.Errorf("error carries the token: %v", err)
				}
			}
			for _, a := range other.seen() {
				if a != "" {
					t.Errorf("the other origin received Authorization %q", a)
				}
			}
			// The same-origin redirect carried the credentials.
			got := front.seen()
			if len(got) < 3 || got[len(got)-1] != "Bearer tok-redirect-1234" {
				t.Errorf("same-origin redirect: Authorization headers seen %q", got)
			}
		})
	}
}

func TestRedirectOrigin(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"https://h/x", "https://h:443/y", true},
		{"https://h/x", "http://h/x", false},
		{"https://h/x", "https://h:8443/x", false},
		{"https://h/x", "https://g/x", false},
		{"http://H:80/x", "http://h/y", true},
	} {
		a, _ := http.NewRequest(http.MethodPost, tc.a, nil)
		b, _ := http.NewRequest(http.MethodPost, tc.b, nil)
		if got := sameOrigin(a.URL, b.URL); got != tc.same {
			t.Errorf("sameOrigin(%s, %s) = %v", tc.a, tc.b, got)
		}
		err := redirectPolicy(true)(b, []*http.Request{a})
		if (err == nil) != tc.same {
			t.Errorf("%s -> %s with credentials: %v", tc.a, tc.b, err)
		}
		if err := redirectPolicy(false)(b, []*http.Request{a}); err != nil {
			t.Errorf("%s -> %s without credentials: %v", tc.a, tc.b, err)
		}
	}
}

// A user and password inside AVISO_URL are basic credentials: taken out of
// the URL, under the plaintext rule, in conflict with the other credential
// variables, and sent to the server.
func TestAvisoURLCredentials(t *testing.T) {
	c, err := load(t, minimal(map[string]string{"AVISO_URL": "https://alice:pw%2F7781@aviso.example.int:8443/aviso/"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Aviso.URL != "https://aviso.example.int:8443/aviso/" {
		t.Errorf("AVISO_URL kept as %q", c.Aviso.URL)
	}
	if c.avisoURLUser != "alice" || c.avisoURLPassword != "pw/7781" {
		t.Errorf("credentials %q %q", c.avisoURLUser, c.avisoURLPassword)
	}
	out := c.redacted()
	if strings.Contains(out, "alice") || strings.Contains(out, "7781") || !strings.Contains(out, "AVISO_URL=https://[redacted]@aviso.example.int:8443/aviso/\n") {
		t.Errorf("config output:\n%s", out)
	}
	key, _ := bridge.CheckpointKey("https://aviso.example.int:8443/aviso/", "mars", []byte("{}"))
	if k, _ := checkpointKey(c); k != key {
		t.Errorf("checkpoint key changed by URL credentials")
	}

	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"AVISO_URL": "http://alice:pw-1@aviso.example.int/"}, "AVISO_ALLOW_PLAINTEXT_AUTH"},
		{map[string]string{"AVISO_URL": "https://alice:pw-1@aviso.example.int/", "AVISO_USERNAME": "bob", "AVISO_PASSWORD": "x"}, "AVISO_USERNAME"},
		{map[string]string{"AVISO_URL": "https://alice:pw-1@aviso.example.int/", "AVISO_TOKEN": "t"}, "AVISO_TOKEN"},
		{map[string]string{"AVISO_URL": "https://alice@aviso.example.int/"}, "without a password"},
		{map[string]string{"AVISO_URL": "https://:pw-1@aviso.example.int/"}, "without a user name"},
	} {
		var out, errb bytes.Buffer
		code := realMain([]string{"config"}, &out, &errb, envconfig.MapLookuper(minimal(tc.env)))
		if code != exitConfig || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 naming %s", tc.env, code, errb.String(), tc.want)
		}
		if strings.Contains(errb.String()+out.String(), "pw-1") {
			t.Errorf("%v: the password was printed: %s", tc.env, errb.String())
		}
	}
	if _, err := load(t, minimal(map[string]string{"AVISO_URL": "http://alice:pw-1@aviso.example.int/", "AVISO_ALLOW_PLAINTEXT_AUTH": "true"})); err != nil {
		t.Errorf("allowed plaintext: %v", err)
	}

	// The credentials reach the server as basic auth.
	rec := newAuthRecorder(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotFound) })
	u := strings.Replace(rec.URL, "http://", "http://alice:pw-1@", 1)
	c, err = load(t, minimal(map[string]string{"AVISO_URL": u}))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := avisoClient(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Connect(context.Background(), aviso.Watch, aviso.Request{EventType: "mars"}); err == nil {
		t.Fatal("connected to a 404")
	}
	if got := rec.seen(); len(got) != 1 || got[0] != "Basic YWxpY2U6cHctMQ==" {
		t.Errorf("Authorization sent: %q", got)
	}
}

// secretFixture writes a file holding content and returns its path.
func secretFixture(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// closedAddr is a loopback host:port nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Every secret variable, every secret *_FILE's contents and the user info
// of AVISO_URL and NATS_URL stay out of `config` and out of the logs of a
// run that fails to reach its brokers.
func TestSecretsNeverPrinted(t *testing.T) {
	dir := t.TempDir()
	dead := closedAddr(t)
	host, port, _ := net.SplitHostPort(dead)
	creds := "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiSECRETJWT9c1\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSUASECRETSEEDQ4N3\n------END USER NKEY SEED------\n"
	secrets := []string{
		"url-user-a1", "url-pass-a2", "nats-url-pass-a3", "nats-url-token-a4", "nats-tokfile-a5", "kafka-pwfile-a6",
		"aviso-tokfile-b1", "nats-pass-b2", "kafka-pass-b3", "nats-key-b4",
		"aviso-pwfile-c1", "nats-pwfile-c2", "SECRETJWT9c1", "SUASECRETSEEDQ4N3",
		"aviso-token-d1", "nats-token-d2", "nats-seed-d3", "kafka-key-d4", "aviso-pass-e1",
	}
	envs := []map[string]string{
		{
			"AVISO_URL": "https://url-user-a1:url-pass-a2@" + dead + "/", "SINK": "jetstream",
			"NATS_URL":         "nats://nuser:nats-url-pass-a3@" + dead + ",nats://nats-url-token-a4@" + net.JoinHostPort(host, port),
			"NATS_TOKEN_FILE":  secretFixture(t, dir, "nats-token", "nats-tokfile-a5\n"),
			"CHECKPOINT_STORE": "kafka", "KAFKA_BROKERS": dead, "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_USERNAME": "ku",
			"KAFKA_PASSWORD_FILE": secretFixture(t, dir, "kafka-pw", "kafka-pwfile-a6"),
		},
		{
			"AVISO_URL": "https://" + dead + "/", "AVISO_TOKEN_FILE": secretFixture(t, dir, "aviso-token", "aviso-tokfile-b1"),
			"SINK": "kafka", "KAFKA_BROKERS": dead, "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_USERNAME": "ku", "KAFKA_PASSWORD": "kafka-pass-b3",
			"CHECKPOINT_STORE": "nats-kv", "NATS_URL": "nats://" + dead, "NATS_USER": "nu", "NATS_PASSWORD": "nats-pass-b2",
			"NATS_TLS_CERT_FILE": secretFixture(t, dir, "nats-cert", "not a certificate"),
			"NATS_TLS_KEY_FILE":  secretFixture(t, dir, "nats-key", "-----BEGIN PRIVATE KEY-----\nnats-key-b4\n-----END PRIVATE KEY-----\n"),
		},
		{
			"AVISO_URL": "https://" + dead + "/", "AVISO_USERNAME": "au", "AVISO_PASSWORD_FILE": secretFixture(t, dir, "aviso-pw", "aviso-pwfile-c1"),
			"SINK": "nats", "NATS_URL": "nats://" + dead, "NATS_CREDS_FILE": secretFixture(t, dir, "nats.creds", creds),
		},
		{
			"AVISO_URL": "https://" + dead + "/", "AVISO_TOKEN": "aviso-token-d1",
			"SINK": "nats", "NATS_URL": "nats://" + dead, "NATS_TOKEN": "nats-token-d2",
		},
		{
			"AVISO_URL": "https://" + dead + "/", "SINK": "jetstream", "NATS_URL": "nats://" + dead,
			"NATS_NKEY_SEED_FILE": secretFixture(t, dir, "seed", "nats-seed-d3\n"),
			"CHECKPOINT_STORE":    "kafka", "KAFKA_BROKERS": dead, "KAFKA_TLS": "true",
			"KAFKA_TLS_CERT_FILE": secretFixture(t, dir, "kafka-cert", "not a certificate"),
			"KAFKA_TLS_KEY_FILE":  secretFixture(t, dir, "kafka-key", "kafka-key-d4"),
		},
		{
			"AVISO_URL": "https://" + dead + "/", "AVISO_USERNAME": "au", "AVISO_PASSWORD": "aviso-pass-e1",
			"SINK": "nats", "NATS_URL": "nats://" + dead, "NATS_USER": "nu", "NATS_PASSWORD_FILE": secretFixture(t, dir, "nats-pw", "nats-pwfile-c2"),
		},
	}
	for i, e := range envs {
		e["AVISO_EVENT_TYPE"] = "mars"
		e["CHECKPOINT_FILE"] = filepath.Join(dir, fmt.Sprintf("cp%d.json", i))
		e["BRIDGE_HTTP_ADDR"] = ""
		e["LOG_LEVEL"] = "debug"
		var out, errb bytes.Buffer
		configCode := realMain([]string{"config"}, &out, &errb, envconfig.MapLookuper(e))
		var logs syncBuffer
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() { done <- cmdRun(ctx, nil, envconfig.MapLookuper(e), io.Discard, &logs) }()
		// Let it try to reach its broker (or fail) before stopping it.
		deadline := time.After(20 * time.Second)
		tick := time.NewTicker(10 * time.Millisecond)
		exited := false
	wait:
		for !strings.Contains(logs.String(), "retrying") {
			select {
			case code := <-done:
				t.Logf("env %d: config exit %d, run exit %d", i, configCode, code)
				exited = true
				break wait
			case <-deadline:
				t.Fatalf("env %d: neither a start-up retry nor an exit: %s", i, logs.String())
			case <-tick.C:
			}
		}
		tick.Stop()
		cancel()
		if !exited {
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("env %d: run did not stop", i)
			}
		}
		all := out.String() + errb.String() + logs.String()
		for _, s := range secrets {
			if strings.Contains(all, s) {
				t.Errorf("env %d: %q printed:\nconfig:\n%s\nlogs:\n%s", i, s, out.String()+errb.String(), logs.String())
			}
		}
		if configCode == exitOK && !strings.Contains(logs.String(), "bridge.starting") {
			t.Errorf("env %d: the run logged nothing: %s", i, logs.String())
		}
	}
}

func TestSecretParts(t *testing.T) {
	got := secretParts("-----BEGIN X-----\nabcdefgh12\nshort\n-----END X-----\n")
	want := []string{"-----BEGIN X-----\nabcdefgh12\nshort\n-----END X-----", "abcdefgh12"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("secretParts = %q, want %q", got, want)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:p@h:4222/x": "https://[redacted]@h:4222/x",
		"https://tok@h/":       "https://[redacted]@h/",
		"https://h/path@x":     "https://h/path@x",
		"https://a:b/c@h/":     "https://[redacted]@h/",
		"https://h:443/":       "https://h:443/",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := urlSecrets("nats://a:p-1@h1, nats://tok-2@h2,h3"); fmt.Sprint(got) != "[p-1 tok-2]" {
		t.Errorf("urlSecrets = %q", got)
	}
	c, err := load(t, minimal(map[string]string{"SINK": "jetstream", "NATS_URL": "nats://a:pw-9x@h1:4222,nats://tok-8y@h2:4222"}))
	if err != nil {
		t.Fatal(err)
	}
	out := c.redacted()
	if strings.Contains(out, "pw-9x") || strings.Contains(out, "tok-8y") || !strings.Contains(out, "NATS_URL=nats://a:REDACTED@h1:4222,nats://REDACTED@h2:4222\n") {
		t.Errorf("config output:\n%s", out)
	}
}

// NATS tokens/passwords over plain nats:// and Kafka SASL PLAIN without TLS
// to a non-loopback host are warned about (in the run's log and by config).
func TestPlaintextCredentialWarnings(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string // event, "" for none
	}{
		{map[string]string{"SINK": "jetstream", "NATS_URL": "nats://nats.example.int:4222", "NATS_TOKEN": "t"}, "nats.auth.plaintext"},
		{map[string]string{"SINK": "jetstream", "NATS_URL": "nats://u:p@nats.example.int:4222"}, "nats.auth.plaintext"},
		{map[string]string{"SINK": "stdout", "CHECKPOINT_STORE": "nats-kv", "NATS_URL": "nats.example.int:4222", "NATS_USER": "u", "NATS_PASSWORD": "p"}, "nats.auth.plaintext"},
		{map[string]string{"SINK": "jetstream", "NATS_URL": "tls://nats.example.int:4222", "NATS_TOKEN": "t"}, ""},
		{map[string]string{"SINK": "jetstream", "NATS_URL": "nats://127.0.0.1:4222", "NATS_TOKEN": "t"}, ""},
		{map[string]string{"SINK": "jetstream", "NATS_URL": "nats://nats.example.int:4222"}, ""},
		{map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k.example.int:9092", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_USERNAME": "u", "KAFKA_PASSWORD": "p"}, "kafka.sasl.plaintext"},
		{map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k.example.int:9092", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_USERNAME": "u", "KAFKA_PASSWORD": "p", "KAFKA_TLS": "true"}, ""},
		{map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "localhost:9092", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_USERNAME": "u", "KAFKA_PASSWORD": "p"}, ""},
		{map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k.example.int:9092", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_USERNAME": "u", "KAFKA_PASSWORD": "p"}, ""},
	} {
		c, err := load(t, minimal(tc.env))
		if err != nil {
			t.Fatalf("%v: %v", tc.env, err)
		}
		ws := c.securityWarnings()
		switch {
		case tc.want == "" && len(ws) != 0:
			t.Errorf("%v: warned %v", tc.env, ws)
		case tc.want != "" && (len(ws) != 1 || ws[0].Event != tc.want):
			t.Errorf("%v: warnings %v, want %s", tc.env, ws, tc.want)
		}
		var out, errb bytes.Buffer
		realMain([]string{"config"}, &out, &errb, envconfig.MapLookuper(minimal(tc.env)))
		if tc.want != "" && !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: config did not warn: %q", tc.env, errb.String())
		}
	}
}

// `config` refuses what `run` refuses, and every configuration problem is
// exit 2 from both (a missing NATS credentials file was exit 1 at run).
func TestConfigValidatesWhatRunValidates(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	nats := map[string]string{"SINK": "jetstream", "NATS_URL": "nats://" + closedAddr(t)}
	with := func(a, b map[string]string) map[string]string {
		out := minimal(a)
		for k, v := range b {
			out[k] = v
		}
		return out
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{with(nats, map[string]string{"NATS_CREDS_FILE": missing}), "NATS_CREDS_FILE"},
		{with(nats, map[string]string{"NATS_NKEY_SEED_FILE": missing}), "NATS_NKEY_SEED_FILE"},
		{with(nats, map[string]string{"NATS_USER": "u", "NATS_PASSWORD_FILE": missing}), "NATS_PASSWORD_FILE"},
		{with(nats, map[string]string{"NATS_TLS_CA_FILE": missing}), "NATS_TLS_CA_FILE"},
		{with(nats, map[string]string{"NATS_TLS_CA_FILE": secretFixture(t, dir, "nats-ca", "no pem")}), "NATS_TLS_CA_FILE"},
		{with(nats, map[string]string{"NATS_TLS_CERT_FILE": secretFixture(t, dir, "nats-cert", "no pem"), "NATS_TLS_KEY_FILE": secretFixture(t, dir, "nats-key", "no pem")}), "NATS_TLS_KEY_FILE"},
		{with(nats, map[string]string{"NATS_STREAM": "a.b"}), "NATS_STREAM"},
		{with(nats, map[string]string{"NATS_USER": "u", "NATS_TOKEN": "t"}), "NATS_USER"},
		{minimal(map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k", "CHECKPOINT_FILE": filepath.Join(dir, "cp.json")}), "KAFKA_BROKERS"},
		{minimal(map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k:9092", "KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": missing}), "KAFKA_TLS_CA_FILE"},
		{minimal(map[string]string{"AVISO_CA_FILE": secretFixture(t, dir, "ca.pem", "no pem here")}), "AVISO_CA_FILE"},
		{minimal(map[string]string{"AVISO_PASSWORD_FILE": missing, "AVISO_USERNAME": "u"}), "AVISO_PASSWORD_FILE"},
		{minimal(map[string]string{"AVISO_TO_ID": "9"}), "AVISO_MODE=replay"},
		{minimal(map[string]string{"AVISO_TO_DATE": "2026-01-01T00:00:00Z"}), "AVISO_MODE=replay"},
		{minimal(map[string]string{"AVISO_MODE": "replay", "AVISO_TO_ID": "x"}), "AVISO_TO_ID"},
		{minimal(map[string]string{"AVISO_MODE": "replay", "AVISO_FROM_ID": "9", "AVISO_TO_ID": "3"}), "AVISO_TO_ID"},
		{minimal(map[string]string{"AVISO_MODE": "replay", "AVISO_TO_ID": "3", "AVISO_TO_DATE": "2026-01-01T00:00:00Z"}), "AVISO_TO_DATE"},
		{minimal(map[string]string{"BRIDGE_MAX_IN_FLIGHT_BYTES": "0"}), "BRIDGE_MAX_IN_FLIGHT_BYTES"},
		{minimal(map[string]string{"BRIDGE_MAX_IN_FLIGHT_BYTES": "lots"}), "BRIDGE_MAX_IN_FLIGHT_BYTES"},
	} {
		tc.env["BRIDGE_HTTP_ADDR"] = ""
		if _, ok := tc.env["CHECKPOINT_FILE"]; !ok {
			tc.env["CHECKPOINT_FILE"] = filepath.Join(dir, "cp.json")
		}
		var out, errb bytes.Buffer
		if code := realMain([]string{"config"}, &out, &errb, envconfig.MapLookuper(tc.env)); code != exitConfig || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("config %v: exit %d %q, want 2 naming %s", tc.env, code, errb.String(), tc.want)
		}
		var logs syncBuffer
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		code := cmdRun(ctx, nil, envconfig.MapLookuper(tc.env), io.Discard, &logs)
		cancel()
		if code != exitConfig || !strings.Contains(logs.String(), tc.want) {
			t.Errorf("run %v: exit %d %q, want 2 naming %s", tc.env, code, logs.String(), tc.want)
		}
	}
	c, err := load(t, minimal(map[string]string{"AVISO_MODE": "replay", "AVISO_FROM_ID": "3", "AVISO_TO_ID": "9"}))
	if err != nil || c.Aviso.ToID != "9" {
		t.Errorf("replay with AVISO_TO_ID: %v", err)
	}
	if c, err := load(t, minimal(map[string]string{"BRIDGE_MAX_IN_FLIGHT_BYTES": "16MiB"})); err != nil || c.Bridge.MaxInFlightBytes != 16<<20 {
		t.Errorf("BRIDGE_MAX_IN_FLIGHT_BYTES=16MiB: %v", err)
	}
	if c, err := load(t, minimal(nil)); err != nil || c.Bridge.MaxInFlightBytes != 64<<20 {
		t.Errorf("BRIDGE_MAX_IN_FLIGHT_BYTES default: %v %v", c.Bridge.MaxInFlightBytes, err)
	}
}

// No message names one variable twice ("CHECKPOINT_FILE: CHECKPOINT_FILE
// /x: ..."), whichever layer added the name.
func TestNoDoubledVariableNames(t *testing.T) {
	dir := t.TempDir()
	blocker := secretFixture(t, dir, "blocker", "x")
	var msgs []string
	_, err := openStore(context.Background(), &Config{Checkpoint: CheckpointConfig{Store: "file", File: filepath.Join(blocker, "cp.json")}}, strings.Repeat("a", 64), lease.Probe, slog.New(slog.DiscardHandler), nil)
	if err == nil {
		t.Fatal("opened a checkpoint file below a regular file")
	}
	msgs = append(msgs, err.Error())
	for _, env := range []map[string]string{
		{"SINK": "jetstream", "NATS_URL": "ftp://x", "NATS_STREAM": "a.b", "NATS_SUBJECT": "a.{x}"},
		{"SINK": "kafka", "KAFKA_BROKERS": "k:9092", "KAFKA_TOPIC": "t t", "KAFKA_CHECKPOINT_TOPIC": "bad topic", "CHECKPOINT_STORE": "kafka"},
		{"CHECKPOINT_FILE": filepath.Join(blocker, "cp.json"), "AVISO_TOKEN_FILE": filepath.Join(dir, "missing")},
		{"AVISO_MODE": "replay", "AVISO_TO_ID": "x", "BRIDGE_MAX_IN_FLIGHT_BYTES": "x"},
		{"AVISO_HEARTBEAT_INTERVAL": "x"},
	} {
		if _, err := load(t, minimal(env)); err != nil {
			msgs = append(msgs, strings.Split(err.Error(), "\n")...)
		}
	}
	name := regexp.MustCompile(`\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b`)
	for _, m := range msgs {
		seen := map[string]bool{}
		for _, n := range name.FindAllString(m, -1) {
			if seen[n] {
				t.Errorf("%q names %s twice", m, n)
			}
			seen[n] = true
		}
	}
}

func TestResumeFromIDAtLastSequence(t *testing.T) {
	if got := resumeFromID(41); got != uint64(42) {
		t.Errorf("resumeFromID(41) = %v", got)
	}
	if got := fmt.Sprint(resumeFromID(math.MaxUint64)); got == "0" || !strings.Contains(got, "last possible sequence") {
		t.Errorf("resumeFromID(max) = %v", got)
	}
}

// Durations are logged as strings, from any package's log call.
func TestDurationsLoggedAsStrings(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		newLogger(&buf, "info", format, []string{"s3cret-value"}).Info("x", "timeout", 20*time.Second, slog.Group("g", "d", 1500*time.Millisecond))
		if !strings.Contains(buf.String(), "20s") || !strings.Contains(buf.String(), "1.5s") || strings.Contains(buf.String(), "20000000000") {
			t.Errorf("%s: %s", format, buf.String())
		}
	}
}

// The endpoints bound reading, writing and idling, not just the headers:
// an idle keep-alive connection is closed.
func TestHTTPServerTimeouts(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler(), defaultHTTPTimeouts)
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Fatalf("timeouts not all set: %+v", defaultHTTPTimeouts)
	}
	addr := closedAddr(t)
	stop, err := serveHTTP(addr, newHTTPHandler(prometheus.NewRegistry(), nil), slog.New(slog.DiscardHandler), httpTimeouts{ReadHeader: time.Second, Read: time.Second, Write: time.Second, Idle: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(context.Background()) })
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	b, err := io.ReadAll(conn) // the response, then EOF when the idle connection is closed
	if err != nil {
		t.Fatalf("idle connection not closed within %v: %v (read %q)", time.Since(start), err, b)
	}
	if !strings.Contains(string(b), "200 OK") {
		t.Errorf("response %q", b)
	}
}

// failingStore fails every commit while fail is set.
type failingStore struct {
	bridge.Store
	mu   sync.Mutex
	fail bool
}

func (s *failingStore) Commit(ctx context.Context, cp bridge.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("disk full")
	}
	return nil
}

// /readyz says "starting: connecting to ..." while the bridge starts, and
// 503 while checkpoint commits keep failing (any store).
func TestReadinessWhileStartingAndWhileCommitsFail(t *testing.T) {
	ready := &readyState{}
	conds := ready.conditions(time.Minute)
	ready.starting("connecting to the kafka sink")
	rep := evaluate(conds)
	if rep.Ready || rep.Failing["starting"] != "starting: connecting to the kafka sink" {
		t.Errorf("starting: %+v", rep)
	}
	fs := &failingStore{fail: true}
	st := &trackedStore{Store: fs}
	ready.running(nil, nil, nil, st)
	if rep := evaluate(conds); !rep.Ready {
		t.Errorf("running, no commit yet: %+v", rep)
	}
	if err := st.Commit(context.Background(), bridge.Checkpoint{Sequence: 3}); err == nil {
		t.Fatal("commit did not fail")
	}
	rep = evaluate(conds)
	if rep.Ready || !strings.Contains(rep.Failing["checkpoint_store"], "disk full") {
		t.Errorf("commits failing: %+v", rep)
	}
	fs.mu.Lock()
	fs.fail = false
	fs.mu.Unlock()
	if err := st.Commit(context.Background(), bridge.Checkpoint{Sequence: 4}); err != nil {
		t.Fatal(err)
	}
	if rep := evaluate(conds); !rep.Ready {
		t.Errorf("commits recovered: %+v", rep)
	}
}

// While the bridge waits for its broker at start-up, /healthz is 200 and
// /readyz 503 naming what it waits for; a stop then is a clean exit.
func TestEndpointsServedWhileWaitingForTheSink(t *testing.T) {
	addr := closedAddr(t)
	cfg, err := load(t, minimal(map[string]string{
		"SINK": "kafka", "KAFKA_BROKERS": closedAddr(t), "CHECKPOINT_FILE": filepath.Join(t.TempDir(), "cp.json"),
		"BRIDGE_HTTP_ADDR": addr,
	}))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runBridge(ctx, cfg, newLogger(&logs, "info", "json", nil), io.Discard, nil) }()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "bridge.start.retrying") {
		if time.Now().After(deadline) {
			t.Fatalf("no start-up retry logged: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while starting: %d %s", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting: connecting to the kafka sink") {
		t.Errorf("/readyz while starting: %d %s", code, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stop while waiting for the broker: %v (want a clean stop)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("runBridge did not stop")
	}
	if !strings.Contains(logs.String(), "bridge.start.interrupted") {
		t.Errorf("logs lack bridge.start.interrupted: %s", logs.String())
	}
}

// A replay with AVISO_TO_ID stops there; a checkpoint file holding only
// other keys is warned about (naming them) before starting from
// AVISO_FROM_ID.
func TestReplayToIDAndOtherKeysWarning(t *testing.T) {
	srv := avisotest.NewServer(t)
	for i := 0; i < 8; i++ {
		srv.Publish("mars", map[string]string{"class": "od"}, map[string]any{"i": i})
	}
	cpFile := filepath.Join(t.TempDir(), "cp.json")
	other := strings.Repeat("b", 64)
	st, err := checkpoint.OpenFile(cpFile, other)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(context.Background(), bridge.Checkpoint{Sequence: 7, EventID: "mars@7", UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	cfg, err := load(t, map[string]string{
		"AVISO_URL": srv.URL, "AVISO_EVENT_TYPE": "mars", "AVISO_FROM_ID": "2", "AVISO_MODE": "replay", "AVISO_TO_ID": "4",
		"CHECKPOINT_FILE": cpFile, "BRIDGE_HTTP_ADDR": "",
	})
	if err != nil {
		t.Fatal(err)
	}
	var out, logs syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := runBridge(ctx, cfg, newLogger(&logs, "info", "json", nil), &out, nil); err != nil {
		t.Fatalf("replay: %v\n%s", err, logs.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"mars@2"`) || !strings.Contains(lines[2], `"mars@4"`) {
		t.Errorf("replay 2..4 wrote:\n%s", out.String())
	}
	if !strings.Contains(logs.String(), `"msg":"bridge.checkpoint.other_keys"`) || !strings.Contains(logs.String(), other) {
		t.Errorf("no other-keys warning naming %s:\n%s", other, logs.String())
	}
}

// The production binary does not link the testing package (the demo uses
// avisotest without it).
func TestBinaryDoesNotLinkTesting(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "testing" {
			t.Fatal("cmd/aviso-bridge depends on package testing")
		}
	}
}
