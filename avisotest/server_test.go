package avisotest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

var (
	uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	idRe   = regexp.MustCompile(`"id":"([^"]+)"`)
	t0     = time.Date(2026, 3, 4, 10, 0, 0, 123456789, time.UTC)
	od     = map[string]string{"class": "od"}
)

func fixedClock() time.Time { return t0 }

// post sends body to path and returns the response with its whole body
// (for finite answers), the request id replaced by RID.
func post(t *testing.T, s *avisotest.Server, path, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return do(t, s.Client(), req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", req.URL, err)
	}
	rid := resp.Header.Get("X-Request-ID")
	if !uuidV4.MatchString(rid) {
		t.Errorf("X-Request-ID %q is not a UUID v4", rid)
	}
	return resp, strings.ReplaceAll(string(b), rid, "RID")
}

func ids(body string) []string {
	var out []string
	for _, m := range idRe.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

func replayAll(t *testing.T, s *avisotest.Server, eventType, identifier string) []string {
	t.Helper()
	resp, body := post(t, s, "/api/v1/replay", `{"event_type":"`+eventType+`","identifier":`+identifier+`,"from_id":"0"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("replay %s: %d %s", identifier, resp.StatusCode, body)
	}
	return ids(body)
}

const (
	ce1 = `{"data":{"identifier":{"class":"od","date":"20250706"},"payload":{"a":"<&>","z":1}},"datacontenttype":"application/json","dataschema":"http://localhost/schema/mars","id":"mars@1","source":"http://localhost","specversion":"1.0","time":"2026-03-04T10:00:00.123456789Z","type":"int.ecmwf.aviso.mars"}`
	ce2 = `{"data":{"identifier":{},"payload":null},"datacontenttype":"application/json","dataschema":"http://localhost/schema/mars","id":"mars@2","source":"http://localhost","specversion":"1.0","time":"2026-03-04T10:00:00.123456789Z","type":"int.ecmwf.aviso.mars"}`
)

// TestWireFormat: the bytes of each stream shape (protocol doc Part B 3.1-3.4).
func TestWireFormat(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithClock(fixedClock), avisotest.WithMaxDuration(100*time.Millisecond))
	s.Publish("mars", map[string]string{"date": "20250706", "class": "od"}, map[string]any{"z": 1, "a": "<&>"})
	s.Publish("mars", nil, "")

	resp, body := post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{},"from_id":"1"}`)
	want := "event: replay-control\ndata: " + `{"batch_size":100,"from_date":null,"from_sequence":1,"request_id":"RID","timestamp":"2026-03-04T10:00:00Z","topic":"mars","type":"replay_started"}` + "\n\n" +
		"event: replay\ndata: " + ce1 + "\n\n" +
		"event: replay\ndata: " + ce2 + "\n\n" +
		"event: replay-control\ndata: " + `{"timestamp":"2026-03-04T10:00:00Z","topic":"mars","type":"replay_completed"}` + "\n\n" +
		"event: connection-closing\ndata: " + `{"message":"Stream completed","reason":"end_of_stream","request_id":"RID","timestamp":"2026-03-04T10:00:00Z","topic":"mars"}` + "\n\n"
	if body != want {
		t.Errorf("/replay body\n%s\nwant\n%s", body, want)
	}
	for k, v := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive",
		"Access-Control-Allow-Origin": "*", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if !slices.Equal(resp.TransferEncoding, []string{"chunked"}) {
		t.Errorf("transfer encoding %v", resp.TransferEncoding)
	}

	_, body = post(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{"class":"od"}}`)
	want = "event: live-notification\ndata: " + `{"connection_will_close_in_seconds":0,"request_id":"RID","timestamp":"2026-03-04T10:00:00Z","topic":"mars.od","type":"connection_established"}` + "\n\n" +
		"event: heartbeat\ndata: " + `{"timestamp":"2026-03-04T10:00:00Z","topic":"mars.od"}` + "\n\n" +
		"event: connection-closing\ndata: " + `{"message":"Connection reached maximum duration","reason":"max_duration_reached","request_id":"RID","timestamp":"2026-03-04T10:00:00Z","topic":"mars.od"}` + "\n\n"
	if body != want {
		t.Errorf("live-only /watch body\n%s\nwant\n%s", body, want)
	}

	_, body = post(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{"class":"od","step":{"gt":1}},"from_date":"1740509903"}`)
	want = "event: replay-control\ndata: " + `{"batch_size":100,"from_date":"2025-02-25T18:58:23Z","from_sequence":null,"request_id":"RID","timestamp":"2026-03-04T10:00:00Z","topic":"mars.od.*","type":"replay_started"}` + "\n\n" +
		"event: heartbeat\ndata: " + `{"timestamp":"2026-03-04T10:00:00Z","topic":"mars.od.*"}` + "\n\n" +
		"event: replay-control\ndata: " + `{"timestamp":"2026-03-04T10:00:00Z","topic":"mars.od.*","type":"replay_completed"}` + "\n\n"
	if !strings.HasPrefix(body, want) || !strings.HasSuffix(body, `"reason":"max_duration_reached","request_id":"RID","timestamp":"2026-03-04T10:00:00Z","topic":"mars.od.*"}`+"\n\n") {
		t.Errorf("replay-then-live /watch body\n%s\nwant prefix\n%s", body, want)
	}
}

// TestCloudEventRendering: time precision (chrono's 0/3/6/9 digits),
// base_url, payload normalisation.
func TestCloudEventRendering(t *testing.T) {
	for ns, want := range map[int]string{0: `"time":"2026-03-04T10:00:00Z"`, 120000000: `"time":"2026-03-04T10:00:00.120Z"`,
		123456000: `"time":"2026-03-04T10:00:00.123456Z"`, 5: `"time":"2026-03-04T10:00:00.000000005Z"`} {
		clock := func() time.Time { return time.Date(2026, 3, 4, 11, 0, 0, ns, time.FixedZone("CET", 3600)) }
		s := avisotest.NewServer(t, avisotest.WithClock(clock), avisotest.WithBaseURL("https://aviso.example/"))
		s.Publish("diss", nil, nil)
		_, body := post(t, s, "/api/v1/replay", `{"event_type":"diss","identifier":{},"from_id":"0"}`)
		if !strings.Contains(body, want) || !strings.Contains(body, `"dataschema":"https://aviso.example//schema/diss","id":"diss@1","source":"https://aviso.example/"`) {
			t.Errorf("nanos %d: %s", ns, body)
		}
	}
	s := avisotest.NewServer(t)
	payloads := []struct {
		publish func() uint64
		want    string
	}{
		{func() uint64 { return s.Publish("mars", nil, nil) }, `"payload":null`},
		{func() uint64 { return s.Publish("mars", nil, "") }, `"payload":null`},
		{func() uint64 { return s.Publish("mars", nil, json.RawMessage(`{"b": 1.50, "a": [true]}`)) }, `"payload":{"a":[true],"b":1.50}`},
		{func() uint64 { return s.Publish("mars", nil, 42) }, `"payload":42`},
		{func() uint64 { return s.PublishRaw("mars", nil, []byte(`{"b":1, "a":2}`)) }, `"payload":{"b":1, "a":2}}`},
		{func() uint64 { return s.PublishRaw("mars", nil, nil) }, `"payload":null`},
	}
	for _, p := range payloads {
		seq := p.publish()
		_, body := post(t, s, "/api/v1/replay", fmt.Sprintf(`{"event_type":"mars","identifier":{},"from_id":"%d"}`, seq))
		if !strings.Contains(body, p.want) {
			t.Errorf("seq %d: body lacks %s:\n%s", seq, p.want, body)
		}
	}
}

// TestErrorAnswers: status codes and JSON bodies of refused requests
// (protocol doc 2.6, 2.7, 2.9).
func TestErrorAnswers(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithEventTypes("mars", "dissemination"))
	tests := []struct {
		name, path, body string
		status           int
		code             string
		want             string // exact body, when set
	}{
		{"unknown event type", "/api/v1/watch", `{"event_type":"nope","identifier":{}}`, 400, "UNKNOWN_EVENT_TYPE",
			`{"code":"UNKNOWN_EVENT_TYPE","configured_event_types":["dissemination","mars"],"error":"unknown_event_type","message":"unknown event type 'nope'","request_id":"RID"}`},
		{"invalid JSON", "/api/v1/watch", `{"event_type":`, 400, "INVALID_JSON", ""},
		{"empty body", "/api/v1/watch", ``, 400, "INVALID_JSON", ""},
		{"unknown field", "/api/v1/watch", `{"event_type":"mars","identifier":{},"to_id":"5"}`, 400, "UNKNOWN_FIELD",
			`{"code":"UNKNOWN_FIELD","details":"unknown field ` + "`to_id`, expected one of `event_type`, `identifier`, `from_id`, `from_date`, `payload`" + `","error":"Invalid Replay Request","message":"Unknown field in request body","request_id":"RID"}`},
		{"from_id as a number", "/api/v1/watch", `{"event_type":"mars","identifier":{},"from_id":42}`, 400, "INVALID_REQUEST_SHAPE", ""},
		{"missing identifier", "/api/v1/watch", `{"event_type":"mars"}`, 400, "INVALID_REQUEST_SHAPE", ""},
		{"not an object", "/api/v1/replay", `["mars"]`, 400, "INVALID_REQUEST_SHAPE", ""},
		{"both cursors", "/api/v1/watch", `{"event_type":"mars","identifier":{},"from_id":"1","from_date":"2026-01-01T00:00:00Z"}`, 400, "INVALID_WATCH_REQUEST", ""},
		{"replay without a cursor", "/api/v1/replay", `{"event_type":"mars","identifier":{}}`, 400, "INVALID_REPLAY_REQUEST", ""},
		{"empty from_id", "/api/v1/watch", `{"event_type":"mars","identifier":{},"from_id":" "}`, 400, "INVALID_WATCH_REQUEST", ""},
		{"negative from_id", "/api/v1/replay", `{"event_type":"mars","identifier":{},"from_id":"-1"}`, 400, "INVALID_REPLAY_REQUEST", ""},
		{"date-only from_date", "/api/v1/watch", `{"event_type":"mars","identifier":{},"from_date":"2025-06-09"}`, 400, "INVALID_WATCH_REQUEST", ""},
		{"null identifier value", "/api/v1/watch", `{"event_type":"mars","identifier":{"a":null}}`, 400, "INVALID_WATCH_REQUEST", ""},
		{"array identifier value", "/api/v1/watch", `{"event_type":"mars","identifier":{"a":["x"]}}`, 400, "INVALID_WATCH_REQUEST", ""},
		{"two operators", "/api/v1/watch", `{"event_type":"mars","identifier":{"a":{"gt":1,"lt":3}}}`, 400, "INVALID_WATCH_REQUEST", ""},
		{"unknown operator", "/api/v1/watch", `{"event_type":"mars","identifier":{"a":{"near":1}}}`, 400, "INVALID_WATCH_REQUEST", ""},
		{"non-numeric gt", "/api/v1/watch", `{"event_type":"mars","identifier":{"a":{"gt":"x"}}}`, 400, "INVALID_WATCH_REQUEST", ""},
		{"unknown path", "/api/v1/nothing", `{}`, 404, "", ""},
		{"outside the base path", "/../x", `{}`, 404, "", ""},
		{"too large", "/api/v1/watch", `{"event_type":"mars","identifier":{"a":"` + strings.Repeat("x", 300<<10) + `"}}`, 413, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(t, s, tt.path, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if tt.want != "" && body != tt.want {
				t.Errorf("body\n%s\nwant\n%s", body, tt.want)
			}
			if tt.code == "" {
				if body != "" {
					t.Errorf("framework answer with a body: %q", body)
				}
				return
			}
			var e map[string]any
			if err := json.Unmarshal([]byte(body), &e); err != nil || e["code"] != tt.code || e["request_id"] != "RID" || e["message"] == "" {
				t.Errorf("body %s, want code %s", body, tt.code)
			}
			if resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			if keys := keysInOrder(t, body); !slices.IsSorted(keys) {
				t.Errorf("keys not in alphabetical order: %v", keys)
			}
		})
	}
	resp, err := s.Client().Get(s.URL + "/api/v1/watch")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || !uuidV4.MatchString(resp.Header.Get("X-Request-ID")) {
		t.Errorf("GET /api/v1/watch: %d %v", resp.StatusCode, resp.Header)
	}
}

// keysInOrder returns the top-level keys of a JSON object in wire order.
func keysInOrder(t *testing.T, body string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(body))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// TestAuth: WithTokenFile, re-read per request (protocol doc 2.8).
func TestAuth(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := avisotest.NewServer(t, avisotest.WithTokenFile(tok))
	try := func(auth string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/v1/replay", strings.NewReader(`{"event_type":"mars","identifier":{},"from_id":"1"}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return do(t, s.Client(), req)
	}
	resp, body := try("")
	if resp.StatusCode != 401 || resp.Header.Values("WWW-Authenticate")[0] != "Bearer" ||
		body != `{"code":"UNAUTHORIZED","error":"unauthorized","message":"Authorization header is required","request_id":"RID"}` {
		t.Errorf("no header: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if resp, _ := try("Bearer two"); resp.StatusCode != 401 {
		t.Errorf("wrong token: %d", resp.StatusCode)
	}
	if resp, _ := try("bearer one"); resp.StatusCode != 200 {
		t.Errorf("right token: %d", resp.StatusCode)
	}
	if err := os.WriteFile(tok, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if resp, _ := try("Bearer one"); resp.StatusCode != 401 {
		t.Errorf("rotated-out token: %d", resp.StatusCode)
	}
	if resp, _ := try("Bearer two"); resp.StatusCode != 200 {
		t.Errorf("rotated-in token: %d", resp.StatusCode)
	}
}

// TestFiltersAndSequences: identifier filters, per-event-type and global
// sequences.
func TestFiltersAndSequences(t *testing.T) {
	s := avisotest.NewServer(t)
	for _, id := range []map[string]string{
		{"class": "od", "step": "0"}, {"class": "rd", "step": "6"}, {"class": "od", "step": "12"},
		{"class": "od", "step": "12.0"}, {"class": "od"}, {"class": "e1", "step": "18"},
	} {
		s.Publish("mars", id, nil)
	}
	s.Publish("diss", od, nil)
	tests := []struct{ ident, want string }{
		{`{}`, "1 2 3 4 5 6"},
		{`{"class":"od"}`, "1 3 4 5"},
		{`{"class":"od","step":"12"}`, "3"},
		{`{"step":12}`, "3"},
		{`{"step":{"eq":12}}`, "3 4"},
		{`{"class":{"in":["rd","e1"]}}`, "2 6"},
		{`{"step":{"gt":6}}`, "3 4 6"},
		{`{"step":{"gte":6}}`, "2 3 4 6"},
		{`{"step":{"lt":6}}`, "1"},
		{`{"step":{"lte":6}}`, "1 2"},
		{`{"step":{"between":[6,12]}}`, "2 3 4"},
		{`{"class":"od","step":{"lt":"12"}}`, "1"},
		{`{"missing":"x"}`, ""},
	}
	for _, tt := range tests {
		var got []string
		for _, id := range replayAll(t, s, "mars", tt.ident) {
			got = append(got, strings.TrimPrefix(id, "mars@"))
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("filter %s: %v, want %s", tt.ident, got, tt.want)
		}
	}
	if got := replayAll(t, s, "diss", `{}`); !slices.Equal(got, []string{"diss@1"}) {
		t.Errorf("per-type sequence: %v", got)
	}
	if s.LastSequence("mars") != 6 || s.LastSequence("none") != 0 {
		t.Errorf("LastSequence = %d", s.LastSequence("mars"))
	}

	g := avisotest.NewServer(t, avisotest.WithGlobalSequence())
	g.Publish("mars", nil, nil)
	g.Publish("diss", nil, nil)
	g.Publish("mars", nil, nil)
	if got := replayAll(t, g, "mars", `{}`); !slices.Equal(got, []string{"mars@1", "mars@3"}) {
		t.Errorf("global sequence: %v", got)
	}
}

// TestReplayStart: from_id is inclusive; from_date in aviso's formats.
func TestReplayStart(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := avisotest.NewServer(t, avisotest.WithClock(clock))
	for range 3 {
		s.Publish("mars", nil, nil)
		mu.Lock()
		now = now.Add(time.Hour)
		mu.Unlock()
	}
	tests := []struct{ cursor, want string }{
		{`"from_id":"2"`, "mars@2 mars@3"},
		{`"from_id":"+3"`, "mars@3"},
		{`"from_id":"9"`, ""},
		{`"from_date":"2025-01-15T11:00:00Z"`, "mars@2 mars@3"},
		{`"from_date":"2025-01-15T12:00:00+01:00"`, "mars@2 mars@3"},
		{`"from_date":"2025-01-15 11:00:00.5+00:00"`, "mars@3"},
		{`"from_date":"2025-01-15T11:00:00"`, "mars@2 mars@3"},
		{`"from_date":" 2025-01-15 12:00:00 "`, "mars@3"},
		{`"from_date":"1736938800"`, "mars@2 mars@3"},
		{`"from_date":"1736942400000"`, "mars@3"},
	}
	for _, tt := range tests {
		resp, body := post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{},`+tt.cursor+`}`)
		if resp.StatusCode != 200 || strings.Join(ids(body), " ") != tt.want {
			t.Errorf("%s: %d %v, want %s", tt.cursor, resp.StatusCode, ids(body), tt.want)
		}
	}
}

// TestLiveDelivery: a live-only watch gets what is published after its
// request was recorded, and nothing from before.
func TestLiveDelivery(t *testing.T) {
	s := avisotest.NewServer(t)
	s.Publish("mars", od, nil)
	r := openStream(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{"class":"od"}}`)
	if _, err := s.WaitRequests(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	s.Publish("mars", map[string]string{"class": "rd"}, nil)
	s.Publish("mars", od, nil)
	if got := r.until(t, "mars@3"); !slices.Equal(got, []string{"live-notification", "heartbeat", "live-notification mars@3"}) {
		t.Errorf("events %q", got)
	}
	if s.OpenStreams() != 1 {
		t.Errorf("OpenStreams = %d", s.OpenStreams())
	}
}

// TestReplayThenLiveLosesNothing: notifications published while a watch
// replays reach it (as replay, live, or both: seam duplicates are legal).
func TestReplayThenLiveLosesNothing(t *testing.T) {
	const total = 3000
	s := avisotest.NewServer(t, avisotest.WithReplayBatch(50, time.Millisecond))
	for range total / 3 {
		s.Publish("mars", od, nil)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range total - total/3 {
			s.Publish("mars", od, nil)
		}
	}()
	r := openStream(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{},"from_id":"1"}`)
	<-done
	seen := map[string]bool{}
	var last = map[string]int{}
	for len(seen) < total {
		ev, id := r.next(t)
		if id == "" {
			continue
		}
		seq, _ := strconv.Atoi(strings.TrimPrefix(id, "mars@"))
		if seq <= last[ev] {
			t.Fatalf("%s went backwards: %d after %d", ev, seq, last[ev])
		}
		last[ev] = seq
		seen[id] = true
	}
}

// TestHeartbeatsAndBatches: heartbeats interleave with replay batches on
// /watch; /replay has none.
func TestHeartbeatsAndBatches(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithHeartbeat(10*time.Millisecond), avisotest.WithReplayBatch(2, 40*time.Millisecond),
		avisotest.WithMaxDuration(90*time.Second))
	for range 6 {
		s.Publish("mars", nil, nil)
	}
	r := openStream(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{},"from_id":"1"}`)
	got := r.until(t, "replay_completed")
	if got[0] != "replay-control" || got[1] != "heartbeat" {
		t.Fatalf("opening %q", got[:2])
	}
	between := 0
	for i := 2; i < len(got) && got[i] != "replay mars@6"; i++ {
		if got[i] == "heartbeat" {
			between++
		}
	}
	if between < 4 {
		t.Errorf("only %d heartbeats during a 120ms replay with a 10ms interval: %q", between, got)
	}
	if !strings.Contains(r.first, `"batch_size":2`) {
		t.Errorf("replay_started %s", r.first)
	}
	_, body := post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{},"from_id":"1"}`)
	if strings.Contains(body, "heartbeat") || len(ids(body)) != 6 {
		t.Errorf("/replay body %s", body)
	}
	w := openStream(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{}}`)
	w.next(t)
	if !strings.Contains(w.first, `"connection_will_close_in_seconds":90`) {
		t.Errorf("connection_established %s", w.first)
	}
}

// TestNotifyAndHealth: POST /api/v1/notification and GET /health.
func TestNotifyAndHealth(t *testing.T) {
	clock := func() time.Time { return time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC) }
	s := avisotest.NewServer(t, avisotest.WithClock(clock))
	resp, body := post(t, s, "/api/v1/notification", `{"event_type":"mars","identifier":{"severity":4,"ok":true,"region":"north"},"payload":{"b":2,"a":1}}`)
	if resp.StatusCode != 200 || body != `{"processed_at":"2026-03-04T10:00:00Z","request_id":"RID","status":"success"}` {
		t.Fatalf("notify: %d %s", resp.StatusCode, body)
	}
	_, body = post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{"severity":{"gte":4}},"from_id":"1"}`)
	if !strings.Contains(body, `{"data":{"identifier":{"ok":"true","region":"north","severity":"4"},"payload":{"a":1,"b":2}}`) {
		t.Errorf("stored notification: %s", body)
	}
	if resp, _ := post(t, s, "/api/v1/notification", `{"event_type":"mars","identifier":{"a":{"gt":1}}}`); resp.StatusCode != 400 {
		t.Errorf("constraint on notify: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/health", nil)
	if resp, body := do(t, s.Client(), req); resp.StatusCode != 200 || body != `{"status":"ok"}` {
		t.Errorf("health: %d %s", resp.StatusCode, body)
	}
}

// TestRequestsRecorded: Requests and WaitRequests.
func TestRequestsRecorded(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithBasePath("/aviso/"))
	post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{"a":"b"},"from_id":"7"}`)
	post(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{},"from_id":7,"from_date":"x"}`)
	reqs, err := s.WaitRequests(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/aviso/api/v1/replay" || r.EventType != "mars" || string(r.Identifier) != `{"a":"b"}` ||
		r.FromID != "7" || !r.HasFromID || !uuidV4.MatchString(r.RequestID) {
		t.Errorf("request %+v", r)
	}
	if r := reqs[1]; !r.HasFromID || r.FromID != "" || r.FromDate != "x" {
		t.Errorf("number from_id: %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if reqs, err := s.WaitRequests(ctx, 3); err == nil || len(reqs) != 2 {
		t.Errorf("WaitRequests(3) = %d, %v", len(reqs), err)
	}
}

// TestTLS: WithTLS serves HTTPS; Client trusts it.
func TestTLS(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithTLS())
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("URL %s", s.URL)
	}
	s.Publish("mars", nil, nil)
	if got := replayAll(t, s, "mars", `{}`); !slices.Equal(got, []string{"mars@1"}) {
		t.Errorf("replay over TLS: %v", got)
	}
}

// sseReader reads a stream event by event.
type sseReader struct {
	resp  *http.Response
	br    *bufio.Reader
	first string // data of the first event
	data  string // data of the last event
}

func openStream(t *testing.T, s *avisotest.Server, path, body string) *sseReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+path, strings.NewReader(body))
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("%s: HTTP %d", path, resp.StatusCode)
	}
	return &sseReader{resp: resp, br: bufio.NewReader(resp.Body)}
}

// next returns the event name and the CloudEvent id (if any) of the next
// event.
func (r *sseReader) next(t *testing.T) (event, id string) {
	t.Helper()
	var data string
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			r.data = data
			if r.first == "" {
				r.first = data
			}
			if m := idRe.FindStringSubmatch(data); m != nil && !strings.Contains(data, `"type":"connection_established"`) {
				return event, m[1]
			}
			return event, ""
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
}

// until returns the event summaries up to the one mentioning last.
func (r *sseReader) until(t *testing.T, last string) []string {
	t.Helper()
	var out []string
	for {
		ev, id := r.next(t)
		s := strings.TrimSpace(ev + " " + id)
		if ev == "replay-control" && strings.Contains(r.data, `"type":"replay_completed"`) {
			s = "replay_completed"
		}
		out = append(out, s)
		if strings.Contains(s, last) {
			return out
		}
	}
}
