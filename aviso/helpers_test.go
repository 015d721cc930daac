package aviso_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// Wire snippets in aviso-server 0.7.1's format.
const (
	liveOpening = "event: live-notification\ndata: " +
		`{"connection_will_close_in_seconds":3600,"request_id":"r-open","timestamp":"2026-03-04T10:00:00Z","topic":"mars","type":"connection_established"}` + "\n\n"
	replayOpening = "event: replay-control\ndata: " +
		`{"batch_size":100,"from_date":null,"from_sequence":1,"request_id":"r-open","timestamp":"2026-03-04T10:00:00Z","topic":"mars","type":"replay_started"}` + "\n\n"
	heartbeatFrame = "event: heartbeat\ndata: " + `{"timestamp":"2026-03-04T10:00:00Z","topic":"mars"}` + "\n\n"
)

func ceJSON(id, identifier, payload string) string {
	return `{"data":{"identifier":` + identifier + `,"payload":` + payload + `},"datacontenttype":"application/json",` +
		`"dataschema":"http://localhost/schema/mars","id":"` + id + `","source":"http://localhost","specversion":"1.0",` +
		`"time":"2026-03-04T10:00:00.123Z","type":"int.ecmwf.aviso.mars"}`
}

func notifFrame(id string) string {
	return "event: live-notification\ndata: " + ceJSON(id, `{"class":"od"}`, "null") + "\n\n"
}

func closingFrame(reason string) string {
	return "event: connection-closing\ndata: " + `{"message":"m","reason":"` + reason + `","request_id":"r-close","timestamp":"2026-03-04T10:00:01Z","topic":"mars"}` + "\n\n"
}

// rawResp is one scripted HTTP answer of rawServer.
type rawResp struct {
	status int         // 0: 200
	ctype  string      // "": text/event-stream
	header http.Header // extra headers
	chunks []string    // body chunks, each flushed separately
	hold   bool        // keep the body open after the chunks until the client leaves
	abort  bool        // drop the connection after the chunks (no final chunk)
}

// rawServer answers successive requests with resps in order (the last one
// repeats), writing the chunks byte for byte.
func rawServer(t *testing.T, resps ...rawResp) string {
	t.Helper()
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		resp := resps[min(n, len(resps)-1)]
		n++
		mu.Unlock()
		for k, vs := range resp.header {
			w.Header()[k] = vs
		}
		w.Header().Set("Content-Type", cmp(resp.ctype, "text/event-stream"))
		w.Header().Set("X-Request-ID", "hdr-rid")
		w.WriteHeader(cmp(resp.status, http.StatusOK))
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		for _, c := range resp.chunks {
			if _, err := io.WriteString(w, c); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		if resp.abort {
			panic(http.ErrAbortHandler)
		}
		if resp.hold {
			<-r.Context().Done()
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(srv.CloseClientConnections) // runs first: frees held handlers
	return srv.URL
}

// tickingServer writes one chunk per tick (the first at once), then ends
// the body.
func tickingServer(t *testing.T, every time.Duration, chunks ...string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i, c := range chunks {
			if i > 0 {
				select {
				case <-tick.C:
				case <-r.Context().Done():
					return
				}
			}
			if _, err := io.WriteString(w, c); err != nil || rc.Flush() != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// replayBytes returns the raw body of a /replay of everything.
func replayBytes(t *testing.T, s *avisotest.Server) string {
	t.Helper()
	resp, err := http.Post(s.URL+"/api/v1/replay", "application/json",
		strings.NewReader(`{"event_type":"mars","identifier":{},"from_id":"0"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func cmp[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func ptr[T any](v T) *T { return &v }

// connect opens a connection with test-friendly timeouts.
func connect(t *testing.T, c *aviso.Client, mode aviso.Mode, req aviso.Request) (*aviso.Stream, error) {
	t.Helper()
	if c.OpeningTimeout == 0 {
		c.OpeningTimeout = 5 * time.Second
	}
	if req.EventType == "" {
		req.EventType = "mars"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	st, err := c.Connect(ctx, mode, req)
	if st != nil {
		t.Cleanup(func() { st.Close() })
	}
	return st, err
}

func mustConnect(t *testing.T, c *aviso.Client, mode aviso.Mode, req aviso.Request) *aviso.Stream {
	t.Helper()
	st, err := connect(t, c, mode, req)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return st
}

// summary is a compact description of a frame for table comparisons.
func summary(f aviso.Frame) string {
	switch f.Kind {
	case aviso.KindNotification:
		return fmt.Sprintf("notification %s %d", f.Notification.EventType, f.Notification.Sequence)
	case aviso.KindReplayLimitReached:
		if !f.HasMaxAllowed {
			return "replay_limit_reached -"
		}
		return fmt.Sprintf("replay_limit_reached %d", f.MaxAllowed)
	case aviso.KindServerError:
		s := "server_error " + f.ErrorCode
		if f.HasSequence {
			s += fmt.Sprintf(" seq=%d", f.Sequence)
		}
		return s
	case aviso.KindClosing:
		return "closing " + f.Reason
	}
	return f.Kind.String()
}

// errSummary names a terminal Next error.
func errSummary(err error) string {
	var te *aviso.TransportError
	switch {
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, aviso.ErrIdleTimeout):
		return "idle"
	case errors.Is(err, aviso.ErrEventTooLarge):
		return "too_large"
	case errors.Is(err, aviso.ErrClosed):
		return "closed"
	case errors.As(err, &te):
		return "transport"
	}
	return err.Error()
}

// collect reads frames until an error (or until max frames) and returns
// their summaries, the error last.
func collect(t *testing.T, st *aviso.Stream, limit int) []string {
	t.Helper()
	var out []string
	for range limit {
		f, err := st.Next()
		if err != nil {
			return append(out, errSummary(err))
		}
		out = append(out, summary(f))
	}
	return out
}

// nextFrame returns the next frame that is not a heartbeat.
func nextFrame(t *testing.T, st *aviso.Stream) aviso.Frame {
	t.Helper()
	for {
		f, err := st.Next()
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if f.Kind != aviso.KindHeartbeat {
			return f
		}
	}
}

// collectUntil reads frames, skipping heartbeats, until one whose summary
// is last.
func collectUntil(t *testing.T, st *aviso.Stream, last string) []string {
	t.Helper()
	var out []string
	for !slices.Contains(out, last) {
		out = append(out, summary(nextFrame(t, st)))
	}
	return out
}

func splitEvery(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
