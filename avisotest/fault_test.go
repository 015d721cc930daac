package avisotest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

const replayAllBody = `{"event_type":"mars","identifier":{},"from_id":"1"}`

func publishN(s *avisotest.Server, n int) {
	for range n {
		s.Publish("mars", od, nil)
	}
}

// TestFaultStatus: Status answers like a proxy; Repeat and the queue order.
func TestFaultStatus(t *testing.T) {
	s := avisotest.NewServer(t)
	s.Fault(avisotest.Repeat(2, avisotest.Status{Code: 503, RetryAfter: "7"})...)
	s.Fault(avisotest.Status{Code: 429, Body: "slow down", ContentType: "text/plain", Header: http.Header{"X-Proxy": {"p"}}})
	s.Fault(avisotest.Status{Code: 200, ContentType: "text/html", Body: "<html>portal</html>"})
	for i, want := range []struct {
		status     int
		retryAfter string
		body       string
	}{
		{503, "7", `{"code":"SERVICE_UNAVAILABLE","error":"service_unavailable","message":"Authentication service is unavailable","request_id":"RID"}`},
		{503, "7", ""},
		{429, "", "slow down"},
		{200, "", "<html>portal</html>"},
	} {
		resp, body := post(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{}}`)
		if resp.StatusCode != want.status || resp.Header.Get("Retry-After") != want.retryAfter || (want.body != "" && body != want.body) {
			t.Errorf("request %d: %d Retry-After %q body %q", i, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if i == 2 && (resp.Header.Get("X-Proxy") != "p" || resp.Header.Get("Content-Type") != "text/plain") {
			t.Errorf("headers %v", resp.Header)
		}
	}
	// The queue is empty: a normal stream.
	publishN(s, 1)
	if _, body := post(t, s, "/api/v1/replay", replayAllBody); len(ids(body)) != 1 {
		t.Errorf("after the queue: %s", body)
	}
}

// TestFaultEvery: FaultEvery applies to every connection until cleared;
// queued faults go first.
func TestFaultEvery(t *testing.T) {
	s := avisotest.NewServer(t)
	publishN(s, 5)
	s.FaultEvery(avisotest.CloseWith{Reason: "max_duration_reached", After: 2})
	s.Fault(avisotest.CloseWith{Reason: "server_shutdown", After: 1})
	for _, want := range []struct {
		n      int
		reason string
	}{{1, "server_shutdown"}, {2, "max_duration_reached"}, {2, "max_duration_reached"}} {
		_, body := post(t, s, "/api/v1/replay", replayAllBody)
		last := body[strings.LastIndex(body, "event: "):]
		if len(ids(body)) != want.n || !strings.HasPrefix(last, "event: connection-closing\n") ||
			!strings.Contains(last, `"reason":"`+want.reason+`"`) || strings.Contains(body, "replay_completed") {
			t.Errorf("want %d notifications then %s:\n%s", want.n, want.reason, body)
		}
	}
	s.FaultEvery(nil)
	if _, body := post(t, s, "/api/v1/replay", replayAllBody); len(ids(body)) != 5 {
		t.Errorf("after FaultEvery(nil): %s", body)
	}
}

// TestFaultCloseWithAnyReason: CloseWith sends any reason, with aviso's
// message for the known ones.
func TestFaultCloseWithAnyReason(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithClock(fixedClock))
	s.Fault(avisotest.CloseWith{Reason: "maintenance"}, avisotest.CloseWith{Reason: "end_of_stream", Message: "custom"})
	_, body := post(t, s, "/api/v1/replay", replayAllBody)
	if !strings.HasSuffix(body, "event: connection-closing\ndata: "+`{"message":"","reason":"maintenance","request_id":"RID","timestamp":"2026-03-04T10:00:00Z","topic":"mars"}`+"\n\n") {
		t.Errorf("maintenance: %s", body)
	}
	if _, body = post(t, s, "/api/v1/replay", replayAllBody); !strings.Contains(body, `{"message":"custom","reason":"end_of_stream"`) {
		t.Errorf("custom message: %s", body)
	}
}

// TestFaultCutMidFrame: a dropped connection (unexpected EOF) or a body
// ended cleanly after half a frame.
func TestFaultCutMidFrame(t *testing.T) {
	s := avisotest.NewServer(t)
	publishN(s, 3)
	for _, graceful := range []bool{false, true} {
		s.Fault(avisotest.CutMidFrame{After: 1, Graceful: graceful})
		resp, err := s.Client().Post(s.URL+"/api/v1/replay", "application/json", strings.NewReader(replayAllBody))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if graceful != (err == nil) {
			t.Errorf("graceful=%v: read error %v", graceful, err)
		}
		body := string(b)
		if len(ids(body)) != 1 || !strings.Contains(body, "event: replay\ndata: {\"data\"") || strings.HasSuffix(body, "\n\n") {
			t.Errorf("graceful=%v: body %q", graceful, body)
		}
	}
}

// TestFaultStall: Stall pauses the stream (no heartbeats either), then it
// goes on; BeforeHeaders delays the status line.
func TestFaultStall(t *testing.T) {
	const pause = 150 * time.Millisecond
	s := avisotest.NewServer(t, avisotest.WithHeartbeat(10*time.Millisecond))
	publishN(s, 2)
	s.Fault(avisotest.Stall{After: 1, For: pause})
	r := openStream(t, s, "/api/v1/watch", replayAllBody)
	r.until(t, "mars@1")
	start := time.Now()
	ev, id := r.next(t)
	if el := time.Since(start); el < pause-20*time.Millisecond || ev != "replay" || id != "mars@2" {
		t.Errorf("after %v: %s %s, want replay mars@2 after the %v stall", el, ev, id, pause)
	}

	s.Fault(avisotest.Stall{BeforeHeaders: true, For: pause})
	start = time.Now()
	resp, _ := post(t, s, "/api/v1/replay", replayAllBody)
	if el := time.Since(start); el < pause || resp.StatusCode != 200 {
		t.Errorf("headers after %v (status %d), want >= %v", el, resp.StatusCode, pause)
	}
}

// TestFaultErrorFrame: stream_processing_failed ends a replay (then
// replay_completed and end_of_stream on /replay), continues a live stream;
// CreationFailed replaces one notification.
func TestFaultErrorFrame(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithClock(fixedClock))
	publishN(s, 3)
	s.Fault(avisotest.ErrorFrame{After: 1})
	_, body := post(t, s, "/api/v1/replay", replayAllBody)
	wantTail := "event: error\ndata: " + `{"error":"stream_processing_failed","message":"Failed to fetch replay batch","request_id":"RID","topic":"mars"}` + "\n\n" +
		"event: replay-control\ndata: " + `{"timestamp":"2026-03-04T10:00:00Z","topic":"mars","type":"replay_completed"}` + "\n\n" +
		"event: connection-closing\ndata: "
	if len(ids(body)) != 1 || !strings.Contains(body, wantTail) {
		t.Errorf("replay error: %s", body)
	}

	s.Fault(avisotest.ErrorFrame{After: 2, CreationFailed: true})
	_, body = post(t, s, "/api/v1/replay", replayAllBody)
	want := "event: error\ndata: " + `{"error":"CloudEvent creation failed","message":"Failed to create CloudEvent for notification with sequence 3","request_id":"RID","sequence":3,"topic":"mars"}` + "\n\n"
	if !slices.Equal(ids(body), []string{"mars@1", "mars@2"}) || !strings.Contains(body, want) || !strings.Contains(body, "replay_completed") {
		t.Errorf("creation failed: %s", body)
	}

	s.Fault(avisotest.ErrorFrame{After: 1, Message: "live trouble"})
	r := openStream(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{}}`)
	if _, err := s.WaitRequests(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	publishN(s, 2)
	if got := r.until(t, "mars@5"); !slices.Equal(got, []string{"live-notification", "heartbeat", "live-notification mars@4", "error", "live-notification mars@5"}) {
		t.Errorf("live error: %q", got)
	}
}

// TestFaultMalformed: Malformed writes its frame verbatim.
func TestFaultMalformed(t *testing.T) {
	s := avisotest.NewServer(t)
	publishN(s, 2)
	s.Fault(avisotest.Combine(avisotest.Malformed{After: 1, Data: `{"id":"mars"}`}, avisotest.Malformed{After: 2, Event: "replay", Data: "no json"}))
	_, body := post(t, s, "/api/v1/replay", replayAllBody)
	i1 := strings.Index(body, "event: live-notification\ndata: {\"id\":\"mars\"}\n\n")
	i2 := strings.Index(body, "event: replay\ndata: no json\n\n")
	if i1 < 0 || i2 < i1 || len(ids(body)) != 3 {
		t.Errorf("body %s", body)
	}
}

// TestFaultTinyChunks: the body is the same, written in chunks of Size
// bytes (seen here in the chunked encoding on the wire).
func TestFaultTinyChunks(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithClock(fixedClock))
	publishN(s, 2)
	_, normal := post(t, s, "/api/v1/replay", replayAllBody)
	s.Fault(avisotest.TinyChunks{Size: 7})
	_, tiny := post(t, s, "/api/v1/replay", replayAllBody)
	if tiny != normal {
		t.Errorf("TinyChunks changed the body:\n%s\n%s", tiny, normal)
	}

	s.Fault(avisotest.TinyChunks{Size: 7})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/replay HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(replayAllBody), replayAllBody)
	raw, err := io.ReadAll(bufio.NewReader(conn))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(raw), "\r\n7\r\n"); n < len(normal)/7-1 {
		t.Errorf("%d chunks of 7 bytes for a %d-byte body", n, len(normal))
	}
}

// TestStreamsControl: CloseStreams, DropStreams and Close end open streams
// promptly, even a stalled one and one whose client does not read.
func TestStreamsControl(t *testing.T) {
	s := avisotest.NewServer(t)
	r := openStream(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{}}`)
	r.next(t)
	s.CloseStreams("server_shutdown")
	if got := r.until(t, "connection-closing"); !strings.Contains(r.data, `"reason":"server_shutdown"`) {
		t.Errorf("CloseStreams: %q %s", got, r.data)
	}

	s = avisotest.NewServer(t)
	s.Fault(avisotest.Stall{})
	stalled := openStream(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{}}`)
	for range 2000 {
		// 20 MB: more than loopback socket buffers absorb, so the unread
		// replay below stays blocked writing.
		s.PublishRaw("mars", nil, []byte(`"`+strings.Repeat("x", 10000)+`"`))
	}
	openStream(t, s, "/api/v1/replay", replayAllBody) // never read: the server blocks writing
	live := openStream(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{}}`)
	live.next(t)
	waitFor(t, func() bool { return s.OpenStreams() == 3 })
	start := time.Now()
	s.Close()
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Close took %v", el)
	}
	live.until(t, "connection-closing")
	if !strings.Contains(live.data, `"reason":"server_shutdown"`) {
		t.Errorf("live stream on Close: %s", live.data)
	}
	if _, err := io.ReadAll(stalled.br); err == nil {
		t.Errorf("stalled stream ended cleanly on Close, want a cut connection")
	}

	s = avisotest.NewServer(t)
	r = openStream(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{}}`)
	r.next(t)
	s.DropStreams()
	if _, err := io.ReadAll(r.br); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("DropStreams: %v, want an unexpected EOF", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
