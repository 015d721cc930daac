package aviso_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// TestOpening covers Part B section 6.2: which opening frame confirms a
// connection and what a wrong one gives.
func TestOpening(t *testing.T) {
	errFrame := "event: error\ndata: " + `{"error":"stream_processing_failed","message":"boom","request_id":"r-err","topic":"mars"}` + "\n\n"
	tests := []struct {
		name    string
		chunks  []string
		ctype   string
		cursor  bool
		want    aviso.FrameKind // expected opening; 0: a ProtocolError (unless anomaly)
		wantMsg string          // substring of the ProtocolError
		wantRID string
		anomaly string // substring of Stream.Anomaly: the stream is accepted
	}{
		{name: "6.2.19 live-only happy path", chunks: []string{liveOpening, heartbeatFrame}, want: aviso.KindConnectionEstablished},
		{name: "heartbeats and comments before the opening are skipped",
			chunks: []string{heartbeatFrame, ": hi\n\n", "event: future\ndata: {}\n\n", replayOpening}, cursor: true, want: aviso.KindReplayStarted},
		// Part A: the bridge tolerates (and reports) a wrong or missing
		// opening rather than reconnecting forever without delivering.
		{name: "6.2.20 cursor answered with connection_established", chunks: []string{liveOpening, notifFrame("mars@1")}, cursor: true,
			want: aviso.KindConnectionEstablished, anomaly: "opened with connection_established where the request called for replay_started"},
		{name: "live-only answered with replay_started", chunks: []string{replayOpening, notifFrame("mars@1")},
			want: aviso.KindReplayStarted, anomaly: "opened with replay_started where the request called for connection_established"},
		{name: "notification first", chunks: []string{notifFrame("mars@1")},
			anomaly: "no opening frame (connection_established expected) before the first notification frame"},
		{name: "non-JSON opening", chunks: []string{"event: live-notification\ndata: nope\n\n"}, wantMsg: "invalid frame where the connection_established opening was expected"},
		{name: "6.2.22 text/html", ctype: "text/html", chunks: []string{"<html>"}, wantMsg: `Content-Type "text/html"`, wantRID: "hdr-rid"},
		{name: "6.2.22 charset parameter accepted", ctype: "text/event-stream; charset=utf-8", chunks: []string{liveOpening}, want: aviso.KindConnectionEstablished},
		{name: "6.2.22 media type case-insensitive", ctype: "Text/Event-Stream", chunks: []string{liveOpening}, want: aviso.KindConnectionEstablished},
		{name: "6.2.23 error frame before the opening", chunks: []string{errFrame}, wantMsg: "error frame before the opening: boom", wantRID: "r-err"},
		{name: "6.2.24 connection-closing before the opening", chunks: []string{closingFrame("server_shutdown")},
			wantMsg: "stream closed before opening confirmation", wantRID: "r-close"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := rawServer(t, rawResp{chunks: tt.chunks, ctype: tt.ctype})
			req := aviso.Request{}
			if tt.cursor {
				req.FromID = ptr[uint64](1)
			}
			st, err := connect(t, &aviso.Client{BaseURL: url}, aviso.Watch, req)
			if tt.want != 0 || tt.anomaly != "" {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				if st.Opening.Kind != tt.want || st.RequestID != "hdr-rid" {
					t.Errorf("opening %v, request id %q; want %v, hdr-rid", st.Opening.Kind, st.RequestID, tt.want)
				}
				if !strings.Contains(st.Anomaly, tt.anomaly) || (tt.anomaly == "") != (st.Anomaly == "") {
					t.Errorf("Anomaly %q, want %q", st.Anomaly, tt.anomaly)
				}
				if tt.anomaly != "" { // the notification is delivered, not lost
					if f, err := st.Next(); err != nil || f.Kind != aviso.KindNotification || f.Notification.Sequence != 1 {
						t.Errorf("first frame after the opening: %v %v", f.Kind, err)
					}
				}
				return
			}
			var pe *aviso.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("Connect error = %v, want a ProtocolError", err)
			}
			if !strings.Contains(pe.Message, tt.wantMsg) || (tt.wantRID != "" && pe.RequestID != tt.wantRID) {
				t.Errorf("ProtocolError %q (request id %q), want message containing %q, request id %q", pe.Message, pe.RequestID, tt.wantMsg, tt.wantRID)
			}
			if wrongType := tt.ctype == "text/html"; errors.Is(err, aviso.ErrNotEventStream) != wrongType || (pe.Frame == nil) != wrongType {
				t.Errorf("ErrNotEventStream %v, Frame %v", errors.Is(err, aviso.ErrNotEventStream), pe.Frame)
			}
		})
	}
}

// TestOpeningFields: the opening frames carry what the supervisor pins the
// start to.
func TestOpeningFields(t *testing.T) {
	url := rawServer(t, rawResp{chunks: []string{liveOpening}}, rawResp{chunks: []string{
		"event: replay-control\ndata: " + `{"batch_size":100,"from_date":"2026-01-01T00:00:00Z","from_sequence":null,"request_id":"r2","timestamp":"2026-03-04T10:00:00Z","topic":"mars","type":"replay_started"}` + "\n\n"}})
	st := mustConnect(t, &aviso.Client{BaseURL: url}, aviso.Watch, aviso.Request{})
	o := st.Opening
	if o.Timestamp != "2026-03-04T10:00:00Z" || o.RequestID != "r-open" || o.Topic != "mars" || o.WillCloseIn != time.Hour || o.Event != "live-notification" {
		t.Errorf("connection_established = %+v", o)
	}
	st = mustConnect(t, &aviso.Client{BaseURL: url}, aviso.Watch, aviso.Request{FromDate: "2026-01-01T00:00:00Z"})
	o = st.Opening
	if o.Kind != aviso.KindReplayStarted || o.FromDate != "2026-01-01T00:00:00Z" || o.FromSequence != nil || o.BatchSize != 100 || o.RequestID != "r2" {
		t.Errorf("replay_started = %+v", o)
	}
}

// TestOpeningDeadline: 6.2.21 and 6.6.59, the opening deadline covers the
// response headers and the opening frame.
func TestOpeningDeadline(t *testing.T) {
	tests := []struct {
		name  string
		fault avisotest.Fault
		want  string
	}{
		{"6.6.59 headers late", avisotest.Stall{BeforeHeaders: true}, "no response headers"},
		{"6.2.21 headers then nothing", avisotest.Stall{BeforeOpening: true}, "no connection_established opening frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := avisotest.NewServer(t)
			s.Fault(tt.fault)
			_, err := connect(t, &aviso.Client{BaseURL: s.URL, OpeningTimeout: 200 * time.Millisecond}, aviso.Watch, aviso.Request{})
			var pe *aviso.ProtocolError
			if !errors.As(err, &pe) || !strings.Contains(pe.Message, tt.want) || !errors.Is(err, aviso.ErrOpeningTimeout) {
				t.Fatalf("Connect: %v, want a ProtocolError (ErrOpeningTimeout) containing %q", err, tt.want)
			}
		})
	}
	t.Run("6.2.21 only heartbeats", func(t *testing.T) {
		url := tickingServer(t, 20*time.Millisecond, slicesRepeat(heartbeatFrame, 50)...)
		_, err := connect(t, &aviso.Client{BaseURL: url, OpeningTimeout: 200 * time.Millisecond}, aviso.Watch, aviso.Request{})
		var pe *aviso.ProtocolError
		if !errors.As(err, &pe) || !strings.Contains(pe.Message, "opening deadline") || !errors.Is(err, aviso.ErrOpeningTimeout) {
			t.Fatalf("Connect: %v, want an opening-deadline ProtocolError", err)
		}
	})
	t.Run("deadline stops once the opening arrives", func(t *testing.T) {
		s := avisotest.NewServer(t, avisotest.WithHeartbeat(50*time.Millisecond))
		st := mustConnect(t, &aviso.Client{BaseURL: s.URL, OpeningTimeout: 100 * time.Millisecond}, aviso.Watch, aviso.Request{})
		for range 5 { // 250 ms, well past the opening deadline
			if f, err := st.Next(); err != nil || f.Kind != aviso.KindHeartbeat {
				t.Fatalf("Next = %v, %v", f.Kind, err)
			}
		}
	})
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// TestHTTPStatus covers Part B section 6.6: the classification of non-200
// answers and the fields an operator needs.
func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		name      string
		status    avisotest.Status
		class     string // unauthorized, throttled, server, config
		retry     time.Duration
		hasRetry  bool
		code, msg string
	}{
		{"6.6.51 503 Retry-After 2", avisotest.Status{Code: 503, RetryAfter: "2"}, "throttled", 2 * time.Second, true, "SERVICE_UNAVAILABLE", "Authentication service is unavailable"},
		{"6.6.51 Retry-After 0", avisotest.Status{Code: 503, RetryAfter: "0"}, "throttled", 0, true, "SERVICE_UNAVAILABLE", ""},
		{"6.6.51 Retry-After capped", avisotest.Status{Code: 429, RetryAfter: "86400"}, "throttled", 300 * time.Second, true, "", ""},
		{"6.6.51 past HTTP-date", avisotest.Status{Code: 503, RetryAfter: "Wed, 21 Oct 2015 07:28:00 GMT"}, "throttled", 0, false, "SERVICE_UNAVAILABLE", ""},
		{"6.6.51 garbage", avisotest.Status{Code: 503, RetryAfter: "soon"}, "throttled", 0, false, "SERVICE_UNAVAILABLE", ""},
		{"6.6.52 429 without Retry-After", avisotest.Status{Code: 429}, "throttled", 0, false, "", ""},
		{"6.6.53 500 ignores Retry-After", avisotest.Status{Code: 500, RetryAfter: "2"}, "server", 0, false, "INTERNAL_ERROR", "Internal server error"},
		{"6.6.53 502", avisotest.Status{Code: 502, Body: "bad gateway", ContentType: "text/plain"}, "server", 0, false, "", ""},
		{"6.6.53 504", avisotest.Status{Code: 504}, "server", 0, false, "", ""},
		{"6.6.55 401", avisotest.Status{Code: 401}, "unauthorized", 0, false, "UNAUTHORIZED", "Authentication is required for this stream"},
		{"6.6.56 403", avisotest.Status{Code: 403}, "config", 0, false, "FORBIDDEN", ""},
		{"6.6.56 404", avisotest.Status{Code: 404}, "config", 0, false, "", ""},
		{"6.6.56 405", avisotest.Status{Code: 405}, "config", 0, false, "", ""},
		{"6.6.56 413", avisotest.Status{Code: 413}, "config", 0, false, "", ""},
		{"6.6.57 204", avisotest.Status{Code: 204}, "config", 0, false, "", ""},
		{"6.6.57 206", avisotest.Status{Code: 206}, "config", 0, false, "", ""},
		{"3xx not followed", avisotest.Status{Code: 304}, "config", 0, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := avisotest.NewServer(t)
			s.Fault(tt.status)
			_, err := connect(t, &aviso.Client{BaseURL: s.URL}, aviso.Watch, aviso.Request{})
			var he *aviso.HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("Connect: %v, want an HTTPError", err)
			}
			class := map[bool]string{he.Unauthorized(): "unauthorized", he.Throttled(): "throttled", he.ServerError(): "server", he.ConfigError(): "config"}
			if len(class) != 2 || class[true] != tt.class {
				t.Errorf("class %v, want exactly %q", class, tt.class)
			}
			if he.Status != tt.status.Code || he.RetryAfter != tt.retry || he.HasRetryAfter != tt.hasRetry {
				t.Errorf("status %d retry %v/%v, want %d %v/%v", he.Status, he.RetryAfter, he.HasRetryAfter, tt.status.Code, tt.retry, tt.hasRetry)
			}
			if he.Code != tt.code || (tt.msg != "" && he.Message != tt.msg) {
				t.Errorf("code %q message %q, want %q %q", he.Code, he.Message, tt.code, tt.msg)
			}
			reqs := s.Requests()
			if he.HeaderRequestID == "" || he.HeaderRequestID != reqs[0].RequestID {
				t.Errorf("X-Request-ID %q, want %q", he.HeaderRequestID, reqs[0].RequestID)
			}
			if tt.code != "" && he.RequestID != he.HeaderRequestID {
				t.Errorf("body request_id %q, want %q", he.RequestID, he.HeaderRequestID)
			}
			if tt.status.Code == 401 && (len(he.WWWAuthenticate) != 1 || he.WWWAuthenticate[0] != "Bearer") {
				t.Errorf("WWW-Authenticate = %q", he.WWWAuthenticate)
			}
			if !strings.Contains(he.Error(), s.URL+"/api/v1/watch") || !strings.Contains(he.Error(), he.HeaderRequestID) {
				t.Errorf("Error() = %q lacks the URL or request id", he.Error())
			}
		})
	}
}

// TestRetryAfterHTTPDate: 6.6.51, a future HTTP-date gives about the time
// until it.
func TestRetryAfterHTTPDate(t *testing.T) {
	s := avisotest.NewServer(t)
	s.Fault(avisotest.Status{Code: 503, RetryAfter: time.Now().Add(61 * time.Second).UTC().Format(http.TimeFormat)})
	_, err := connect(t, &aviso.Client{BaseURL: s.URL}, aviso.Watch, aviso.Request{})
	var he *aviso.HTTPError
	if !errors.As(err, &he) || !he.HasRetryAfter || he.RetryAfter < 50*time.Second || he.RetryAfter > 61*time.Second {
		t.Fatalf("Connect: %v, want Retry-After of about 60s", err)
	}
}

// TestConfigErrors: 6.6.56 with real aviso bodies: the error carries code,
// message, details and both request ids.
func TestConfigErrors(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithEventTypes("mars", "dissemination"))
	c := &aviso.Client{BaseURL: s.URL}
	tests := []struct {
		name    string
		req     aviso.Request
		code    string
		details string
	}{
		{"unknown event type", aviso.Request{EventType: "nope"}, "UNKNOWN_EVENT_TYPE", ""},
		{"bad constraint", aviso.Request{EventType: "mars", Identifier: json.RawMessage(`{"step":{"gt":1,"lt":5}}`)}, "INVALID_WATCH_REQUEST",
			`identifier "step": a constraint object needs exactly one operator, got 2`},
		{"bad from_date", aviso.Request{EventType: "mars", FromDate: "2025-06-09"}, "INVALID_WATCH_REQUEST", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := connect(t, c, aviso.Watch, tt.req)
			var he *aviso.HTTPError
			if !errors.As(err, &he) || !he.ConfigError() || he.Status != 400 {
				t.Fatalf("Connect: %v, want a 400 config error", err)
			}
			if he.Code != tt.code || he.Message == "" || he.RequestID == "" || he.RequestID != he.HeaderRequestID {
				t.Errorf("HTTPError %+v", he)
			}
			if tt.details != "" && he.Details != tt.details {
				t.Errorf("details %q, want %q", he.Details, tt.details)
			}
			if !strings.Contains(err.Error(), tt.code) || !strings.Contains(err.Error(), he.RequestID) {
				t.Errorf("Error() = %q", err)
			}
		})
	}
}

// TestTransportErrors: 6.6.58, a refused connection is a TransportError.
func TestTransportErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = connect(t, &aviso.Client{BaseURL: "http://" + addr}, aviso.Watch, aviso.Request{})
	var te *aviso.TransportError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Connect: %v, want a TransportError naming %s", err, addr)
	}

	// A body that ends before the opening is a (retryable) transport error.
	url := rawServer(t, rawResp{chunks: []string{heartbeatFrame}})
	_, err = connect(t, &aviso.Client{BaseURL: url}, aviso.Watch, aviso.Request{})
	if !errors.As(err, &te) {
		t.Fatalf("EOF before the opening: %v, want a TransportError", err)
	}
}

// TestRequest: the request line, headers and body.
func TestRequest(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		base     string // appended to the server URL
		mode     aviso.Mode
		req      aviso.Request
		creds    aviso.Credentials
		path     string
		body     string
		auth     string
		userAgnt string
	}{
		{name: "live-only watch", mode: aviso.Watch, req: aviso.Request{EventType: "mars"},
			path: "/aviso/api/v1/watch", body: `{"event_type":"mars","identifier":{}}`, userAgnt: "aviso-bridge"},
		{name: "base path with trailing slash, from_id as a string", base: "/", mode: aviso.Watch,
			req:  aviso.Request{EventType: "mars", FromID: ptr[uint64](42), Identifier: json.RawMessage(` {"class":"od","step":{"gte":6},"n":4,"x":"<&>"} `)},
			path: "/aviso/api/v1/watch", body: `{"event_type":"mars","identifier":{"class":"od","step":{"gte":6},"n":4,"x":"<&>"},"from_id":"42"}`,
			creds: aviso.BearerToken("tok"), auth: "Bearer tok"},
		{name: "replay from_date, basic auth from a file", mode: aviso.Replay,
			req:  aviso.Request{EventType: "mars", FromDate: "2026-01-01T00:00:00Z"},
			path: "/aviso/api/v1/replay", body: `{"event_type":"mars","identifier":{},"from_date":"2026-01-01T00:00:00Z"}`,
			creds: aviso.BasicAuthFile("me", pw), auth: "Basic " + base64.StdEncoding.EncodeToString([]byte("me:s3cret"))},
		{name: "from_id 0", mode: aviso.Replay, req: aviso.Request{EventType: "mars", FromID: ptr[uint64](0)},
			path: "/aviso/api/v1/replay", body: `{"event_type":"mars","identifier":{},"from_id":"0"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := avisotest.NewServer(t, avisotest.WithBasePath("/aviso"))
			c := &aviso.Client{BaseURL: s.URL + tt.base, Credentials: tt.creds, UserAgent: tt.userAgnt}
			if tt.userAgnt == "" {
				c.UserAgent = "aviso-bridge/1.2.3"
			}
			mustConnect(t, c, tt.mode, tt.req)
			r := s.Requests()[0]
			if r.Method != http.MethodPost || r.Path != tt.path || string(r.Body) != tt.body {
				t.Errorf("request %s %s %s\nwant POST %s %s", r.Method, r.Path, r.Body, tt.path, tt.body)
			}
			h := r.Header
			if h.Get("Content-Type") != "application/json" || h.Get("Accept") != "text/event-stream" || h.Get("Authorization") != tt.auth ||
				h.Get("User-Agent") != c.UserAgent || h.Get("Last-Event-ID") != "" {
				t.Errorf("headers %v", h)
			}
		})
	}
}

// TestInvalidRequest: requests the client refuses to send.
func TestInvalidRequest(t *testing.T) {
	tests := []struct {
		name string
		base string
		mode aviso.Mode
		req  aviso.Request
	}{
		{"both cursors", "http://127.0.0.1:1", aviso.Watch, aviso.Request{EventType: "mars", FromID: ptr[uint64](1), FromDate: "2026-01-01T00:00:00Z"}},
		{"replay without a start", "http://127.0.0.1:1", aviso.Replay, aviso.Request{EventType: "mars"}},
		{"identifier not an object", "http://127.0.0.1:1", aviso.Watch, aviso.Request{EventType: "mars", Identifier: json.RawMessage(`["a"]`)}},
		{"identifier not JSON", "http://127.0.0.1:1", aviso.Watch, aviso.Request{EventType: "mars", Identifier: json.RawMessage(`{a}`)}},
		{"no event type", "http://127.0.0.1:1", aviso.Watch, aviso.Request{}},
		{"base URL without scheme", "127.0.0.1:1", aviso.Watch, aviso.Request{EventType: "mars"}},
		{"base URL ftp", "ftp://host/", aviso.Watch, aviso.Request{EventType: "mars"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := (&aviso.Client{BaseURL: tt.base}).Connect(context.Background(), tt.mode, tt.req)
			if !errors.Is(err, aviso.ErrInvalidRequest) {
				t.Errorf("Connect: %v, want ErrInvalidRequest", err)
			}
		})
	}
}

// TestCredentials: 6.6.54 at the connection level, a 401 and a token file
// that Refresh re-reads.
func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	serverTok, clientTok := filepath.Join(dir, "server"), filepath.Join(dir, "client")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(serverTok, "new\n")
	write(clientTok, "old\n")
	s := avisotest.NewServer(t, avisotest.WithTokenFile(serverTok))
	creds := aviso.BearerTokenFile(clientTok)
	c := &aviso.Client{BaseURL: s.URL, Credentials: creds}

	_, err := connect(t, c, aviso.Watch, aviso.Request{})
	var he *aviso.HTTPError
	if !errors.As(err, &he) || !he.Unauthorized() || he.Code != "UNAUTHORIZED" || he.Message != "Invalid or expired token" {
		t.Fatalf("Connect with a stale token: %v, want 401 UNAUTHORIZED", err)
	}
	write(clientTok, "new\n") // the secret rotates
	if _, err := connect(t, c, aviso.Watch, aviso.Request{}); !errors.As(err, &he) {
		t.Fatalf("before Refresh the cached token is sent: %v", err)
	}
	if err := creds.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustConnect(t, c, aviso.Watch, aviso.Request{})
	if got := s.Requests()[2].Header.Get("Authorization"); got != "Bearer new" {
		t.Errorf("Authorization %q", got)
	}

	// Without credentials: 401 with the body and X-Request-ID.
	_, err = connect(t, &aviso.Client{BaseURL: s.URL}, aviso.Watch, aviso.Request{})
	if !errors.As(err, &he) || he.Message != "Authorization header is required" || he.HeaderRequestID == "" {
		t.Errorf("no credentials: %v", err)
	}

	// An unreadable or empty file is ErrCredentials, naming the file.
	for _, p := range []string{filepath.Join(dir, "missing"), filepath.Join(dir, "empty")} {
		write(filepath.Join(dir, "empty"), " \n")
		_, err = connect(t, &aviso.Client{BaseURL: s.URL, Credentials: aviso.BearerTokenFile(p)}, aviso.Watch, aviso.Request{})
		if !errors.Is(err, aviso.ErrCredentials) || !strings.Contains(err.Error(), p) {
			t.Errorf("token file %s: %v, want ErrCredentials naming the file", p, err)
		}
	}
}

// TestCredentialsRedacted: secrets never appear in formatted output.
func TestCredentialsRedacted(t *testing.T) {
	for _, c := range []aviso.Credentials{aviso.BearerToken("s3cret"), aviso.BasicAuth("u", "s3cret"), aviso.BearerTokenFile("/run/s3cret-path")} {
		for _, s := range []string{fmtV(c), fmtGoV(c)} {
			if strings.Contains(s, "s3cret\"") || strings.Contains(s, "Bearer s3cret") || strings.Contains(s, base64.StdEncoding.EncodeToString([]byte("u:s3cret"))) {
				t.Errorf("formatted credentials leak the secret: %s", s)
			}
		}
	}
}

// TestIdleBudget: the default budget formula (Part B 5.7).
func TestIdleBudget(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		30 * time.Second: 90 * time.Second, 60 * time.Second: 180 * time.Second, 10 * time.Second: 40 * time.Second,
		5 * time.Second: 35 * time.Second, time.Second: 31 * time.Second, 0: 30 * time.Second, -time.Second: 30 * time.Second,
		1 << 62: 4294967295 * time.Second,
	} {
		if got := aviso.IdleBudget(in); got != want {
			t.Errorf("IdleBudget(%v) = %v, want %v", in, got, want)
		}
	}
}

func fmtV(v any) string   { return fmt.Sprintf("%v %+v %s", v, v, v) }
func fmtGoV(v any) string { return fmt.Sprintf("%#v", v) }
