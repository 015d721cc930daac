package avisotest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// frames summarises every SSE event of a finite body: "replay mars@1",
// "replay-control replay_started", "heartbeat", "error stream_processing_failed",
// "error CloudEvent creation failed 3", "connection-closing end_of_stream".
func frames(t *testing.T, body string) []string {
	t.Helper()
	var out []string
	for _, block := range strings.Split(body, "\n\n") {
		if block == "" {
			continue
		}
		var ev, data string
		for _, line := range strings.Split(block, "\n") {
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				ev = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				data = v
			}
		}
		out = append(out, summary(t, ev, data))
	}
	return out
}

func summary(t *testing.T, ev, data string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		t.Fatalf("event %s: data %q: %v", ev, data, err)
	}
	switch {
	case m["id"] != nil:
		return ev + " " + m["id"].(string)
	case m["type"] != nil:
		return ev + " " + m["type"].(string)
	case m["reason"] != nil:
		return ev + " " + m["reason"].(string)
	case m["error"] != nil && m["sequence"] != nil:
		return fmt.Sprintf("%s %s %v", ev, m["error"], m["sequence"])
	case m["error"] != nil:
		return ev + " " + m["error"].(string)
	}
	return ev
}

// dataOf returns the data of the first event of body whose data contains
// marker.
func dataOf(body, marker string) string {
	for _, line := range strings.Split(body, "\n") {
		if d, ok := strings.CutPrefix(line, "data: "); ok && strings.Contains(d, marker) {
			return d
		}
	}
	return ""
}

func seqs(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s mars@%d", prefix, i))
	}
	return out
}

func cat(parts ...[]string) []string { return slices.Concat(parts...) }

// TestReplayLimitByVersion: the cap counts delivered notifications after
// filtering (poison not counted), fires only when one more follows, and under
// 0.13 ends the stream on /replay and /watch alike.
func TestReplayLimitByVersion(t *testing.T) {
	rd := map[string]string{"class": "rd"}
	closing := []string{"connection-closing end_of_stream"}
	limited := []string{"replay-control notification_replay_limit_reached"}
	tests := []struct {
		name    string
		version avisotest.Version
		publish func(s *avisotest.Server)
		path    string
		filter  string
		want    []string
	}{
		{"0.13 replay exactly the cap", avisotest.V013, func(s *avisotest.Server) { publishN(s, 3) }, "/api/v1/replay", `{}`,
			cat([]string{"replay-control replay_started"}, seqs("replay", 1, 3), []string{"replay-control replay_completed"}, closing)},
		{"0.13 replay one more", avisotest.V013, func(s *avisotest.Server) { publishN(s, 4) }, "/api/v1/replay", `{}`,
			cat([]string{"replay-control replay_started"}, seqs("replay", 1, 3), limited, closing)},
		{"0.13 watch one more", avisotest.V013, func(s *avisotest.Server) { publishN(s, 5) }, "/api/v1/watch", `{}`,
			cat([]string{"replay-control replay_started", "heartbeat"}, seqs("replay", 1, 3), limited, closing)},
		{"0.7.1 replay one more", avisotest.V071, func(s *avisotest.Server) { publishN(s, 4) }, "/api/v1/replay", `{}`,
			cat([]string{"replay-control replay_started"}, seqs("replay", 1, 3), limited, []string{"replay-control replay_completed"}, closing)},
		{"0.13 counted after filtering", avisotest.V013, func(s *avisotest.Server) {
			for range 3 {
				s.Publish("mars", od, nil)
				s.Publish("mars", rd, nil)
			}
		}, "/api/v1/replay", `{"class":"od"}`,
			[]string{"replay-control replay_started", "replay mars@1", "replay mars@3", "replay mars@5", "replay-control replay_completed", "connection-closing end_of_stream"}},
		{"0.13 poison not counted", avisotest.V013, func(s *avisotest.Server) {
			publishN(s, 2)
			s.PublishPoison("mars", od, "")
			publishN(s, 1)
			s.PublishPoison("mars", od, "")
		}, "/api/v1/replay", `{}`,
			[]string{"replay-control replay_started", "replay mars@1", "replay mars@2", "error CloudEvent creation failed 3", "replay mars@4",
				"error CloudEvent creation failed 5", "replay-control replay_completed", "connection-closing end_of_stream"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := avisotest.NewServer(t, avisotest.WithVersion(tt.version), avisotest.WithReplayLimit(3), avisotest.WithClock(fixedClock))
			tt.publish(s)
			resp, body := post(t, s, tt.path, `{"event_type":"mars","identifier":`+tt.filter+`,"from_id":"1"}`)
			if got := frames(t, body); resp.StatusCode != 200 || !slices.Equal(got, tt.want) {
				t.Fatalf("HTTP %d\n got %q\nwant %q", resp.StatusCode, got, tt.want)
			}
			if d := dataOf(body, "notification_replay_limit_reached"); d != "" {
				want := `{"max_allowed":3,"message":"Historical replay limited to 3 messages. Additional historical messages may be available but were not retrieved.","timestamp":"2026-03-04T10:00:00Z","topic":"mars","type":"notification_replay_limit_reached"}`
				if d != want {
					t.Errorf("limit frame %s", d)
				}
			}
		})
	}

	// A 0.13 watch whose replay fits the cap goes live; under 0.7.1 a watch
	// that hits it goes live too.
	for _, v := range []avisotest.Version{avisotest.V013, avisotest.V071} {
		s := avisotest.NewServer(t, avisotest.WithVersion(v), avisotest.WithReplayLimit(3))
		n := 3
		if v == avisotest.V071 {
			n = 5
		}
		publishN(s, n)
		r := openStream(t, s, "/api/v1/watch", replayAllBody)
		r.until(t, "replay_completed")
		s.Publish("mars", od, nil)
		if ev, id := r.next(t); ev != "live-notification" || id != fmt.Sprintf("mars@%d", n+1) {
			t.Errorf("%v: after replay_completed: %s %s", v, ev, id)
		}
	}
}

// TestBoundedReplay: to_id / to_date under 0.13, the end fixed when the
// request is accepted, and replay_started's end_sequence and to_date.
func TestBoundedReplay(t *testing.T) {
	var mu sync.Mutex
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := avisotest.NewServer(t, avisotest.WithVersion(avisotest.V013), avisotest.WithClock(clock), avisotest.WithReplayLimit(3))
	for range 10 {
		mu.Lock()
		now = now.Add(time.Hour)
		mu.Unlock()
		s.Publish("mars", od, nil)
	}
	at := func(seq int) string { return start.Add(time.Duration(seq) * time.Hour).Format(time.RFC3339) }
	tests := []struct {
		cursor      string
		want        []string
		endSequence string
		toDate      string
	}{
		{`"from_id":"1","to_id":"2"`, seqs("replay", 1, 2), "2", "null"},
		{`"from_id":"4","to_id":"4"`, seqs("replay", 4, 4), "4", "null"},
		{`"from_id":"8","to_id":"100"`, seqs("replay", 8, 10), "10", "null"},
		{`"from_id":"1","to_date":"` + at(2) + `"`, seqs("replay", 1, 2), "2", `"` + at(2) + `"`},
		{`"from_date":"` + at(3) + `","to_date":"` + at(5) + `"`, seqs("replay", 3, 5), "5", `"` + at(5) + `"`},
		{`"from_id":"1","to_date":"2025-01-01T00:00:00Z"`, nil, "0", `"2025-01-01T00:00:00Z"`},
		{`"from_id":"9","to_date":"10000000000"`, seqs("replay", 9, 10), "10", `"2286-11-20T17:46:40Z"`},
		{`"from_id":"10"`, seqs("replay", 10, 10), "10", "null"},
	}
	for _, tt := range tests {
		resp, body := post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{},`+tt.cursor+`}`)
		want := cat([]string{"replay-control replay_started"}, tt.want, []string{"replay-control replay_completed", "connection-closing end_of_stream"})
		if got := frames(t, body); resp.StatusCode != 200 || !slices.Equal(got, want) {
			t.Errorf("%s: HTTP %d\n got %q\nwant %q", tt.cursor, resp.StatusCode, got, want)
		}
		started := dataOf(body, "replay_started")
		if !strings.Contains(started, `"end_sequence":`+tt.endSequence+`,`) || !strings.Contains(started, `"to_date":`+tt.toDate+`,`) {
			t.Errorf("%s: replay_started %s, want end_sequence %s, to_date %s", tt.cursor, started, tt.endSequence, tt.toDate)
		}
	}
	// The cap counts inside the window: exactly 3 completes, 4 is cut.
	_, body := post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{},"from_id":"2","to_id":"4"}`)
	if got := frames(t, body); !slices.Contains(got, "replay-control replay_completed") {
		t.Errorf("window of exactly the cap: %q", got)
	}
	_, body = post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{},"from_id":"2","to_id":"5"}`)
	if got := frames(t, body); !slices.Contains(got, "replay-control notification_replay_limit_reached") {
		t.Errorf("window of the cap + 1: %q", got)
	}
}

// TestReplayEndFixedAtAcceptance: notifications published during a replay
// are not replayed under 0.13 (the end is fixed), and are under 0.7.1 (it
// follows the tail).
func TestReplayEndFixedAtAcceptance(t *testing.T) {
	for _, tt := range []struct {
		version avisotest.Version
		want    int
	}{{avisotest.V013, 20}, {avisotest.V071, 30}} {
		t.Run(tt.version.String(), func(t *testing.T) {
			s := avisotest.NewServer(t, avisotest.WithVersion(tt.version), avisotest.WithReplayBatch(2, 5*time.Millisecond))
			publishN(s, 20)
			r := openStream(t, s, "/api/v1/replay", replayAllBody)
			if _, err := s.WaitRequests(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			publishN(s, 10) // the replay needs 10 batches of 5 ms for the first 20
			got := r.until(t, "replay_completed")
			if n := len(got) - 2; n != tt.want {
				t.Errorf("replayed %d notifications, want %d: %q", n, tt.want, got)
			}
		})
	}
}

// TestExactSeam: under 0.13 a notification published during the replay of a
// watch arrives once, as live; under 0.7.1 it arrives twice (replay and live).
func TestExactSeam(t *testing.T) {
	for _, v := range []avisotest.Version{avisotest.V013, avisotest.V071} {
		t.Run(v.String(), func(t *testing.T) {
			s := avisotest.NewServer(t, avisotest.WithVersion(v), avisotest.WithReplayBatch(5, 20*time.Millisecond))
			publishN(s, 50)
			r := openStream(t, s, "/api/v1/watch", replayAllBody)
			if _, err := s.WaitRequests(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			publishN(s, 10) // the replay needs 10 batches of 20 ms for the first 50
			seen := map[string]int{}
			replayed := 0
			for {
				ev, id := r.next(t)
				if id == "" {
					continue
				}
				seen[id]++
				if ev == "replay" {
					replayed++
				} else if id == "mars@60" {
					break // the last live one
				}
			}
			dups := 0
			for _, n := range seen {
				dups += n - 1
			}
			switch {
			case v == avisotest.V013 && (dups != 0 || replayed != 50 || len(seen) != 60):
				t.Errorf("0.13: %d duplicates, %d replayed, %d distinct", dups, replayed, len(seen))
			case v == avisotest.V071 && (dups == 0 || len(seen) != 60):
				t.Errorf("0.7.1: %d duplicates (want some), %d distinct", dups, len(seen))
			}
		})
	}
}

// TestEndPointAndSchemaErrors: the 0.13 400 answers, and their 0.7.1
// counterparts.
func TestEndPointAndSchemaErrors(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	const rp, wt = "/api/v1/replay", "/api/v1/watch"
	tests := []struct {
		name    string
		version avisotest.Version
		path    string
		body    string // after {"event_type":"mars",
		status  int
		code    string
		message string // exact message
	}{
		{"both ends", avisotest.V013, rp, `"identifier":{},"from_id":"1","to_id":"5","to_date":"2026-01-01T00:00:00Z"}`, 400, "INVALID_REPLAY_REQUEST",
			"Cannot specify both to_id and to_date. Please provide only one replay end parameter. Use to_id for a sequence-based end or to_date for a time-based end."},
		{"to_id below from_id", avisotest.V013, rp, `"identifier":{},"from_id":"5","to_id":"4"}`, 400, "INVALID_REPLAY_REQUEST",
			"to_id (4) must not be lower than from_id (5)"},
		{"to_date before from_date", avisotest.V013, rp, `"identifier":{},"from_date":"2026-01-02T00:00:00Z","to_date":"2026-01-01T00:00:00Z"}`, 400, "INVALID_REPLAY_REQUEST",
			"to_date (2026-01-01T00:00:00+00:00) must not be earlier than from_date (2026-01-02T00:00:00+00:00)"},
		{"to_id not an integer", avisotest.V013, rp, `"identifier":{},"from_id":"1","to_id":"soon"}`, 400, "INVALID_REPLAY_REQUEST",
			`to_id must be a valid positive integer, got "soon"`},
		{"negative to_id", avisotest.V013, rp, `"identifier":{},"from_id":"1","to_id":"-3"}`, 400, "INVALID_REPLAY_REQUEST",
			`to_id must be a valid positive integer, got "-3"`},
		{"empty to_id", avisotest.V013, rp, `"identifier":{},"from_id":"1","to_id":""}`, 400, "INVALID_REPLAY_REQUEST", "to_id cannot be empty"},
		{"bad to_date", avisotest.V013, rp, `"identifier":{},"from_id":"1","to_date":"yesterday"}`, 400, "INVALID_REPLAY_REQUEST",
			`to_date must be a valid datetime/timestamp, got "yesterday"`},
		{"to_id without a start", avisotest.V013, rp, `"identifier":{},"to_id":"5"}`, 400, "INVALID_REPLAY_REQUEST",
			"Replay endpoint requires either from_id or from_date parameter. Use /watch for live-only notifications."},
		{"to_id on watch", avisotest.V013, wt, `"identifier":{},"from_id":"1","to_id":"5"}`, 400, "INVALID_WATCH_REQUEST",
			"to_id and to_date are only supported for the replay endpoint, not /watch"},
		{"to_date on watch", avisotest.V013, wt, `"identifier":{},"to_date":"2026-01-01T00:00:00Z"}`, 400, "INVALID_WATCH_REQUEST",
			"to_id and to_date are only supported for the replay endpoint, not /watch"},
		{"to_date on notification", avisotest.V013, "/api/v1/notification", `"identifier":{},"to_date":"2026-01-01T00:00:00Z"}`, 400, "INVALID_NOTIFICATION_REQUEST",
			"to_id and to_date are only supported for the replay endpoint, not /notification"},
		{"to_id under 0.7.1", avisotest.V071, rp, `"identifier":{},"from_id":"1","to_id":"5"}`, 400, "UNKNOWN_FIELD", "Unknown field in request body"},
		{"unknown key on watch", avisotest.V013, wt, `"identifier":{"class":"od","severtiy":"4"}}`, 400, "INVALID_WATCH_REQUEST",
			"Unknown field 'severtiy' provided for watch operation"},
		{"unknown key on replay", avisotest.V013, rp, `"identifier":{"severtiy":{"gte":4}},"from_id":"1"}`, 400, "INVALID_REPLAY_REQUEST",
			"Unknown field 'severtiy' provided for replay operation"},
		{"unknown key ignored by 0.7.1", avisotest.V071, rp, `"identifier":{"class":"od","severtiy":"4"},"from_id":"1"}`, 200, "", ""},
		{"unknown key of a schema-less type", avisotest.V013, rp, `"identifier":{"severtiy":"4"},"from_id":"1"}`, 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eventType := "mars"
			if strings.Contains(tt.name, "schema-less") {
				eventType = "diss"
			}
			s := avisotest.NewServer(t, avisotest.WithVersion(tt.version), avisotest.WithSchema("mars", "class", "date", "severity"))
			publishN(s, 2)
			body := strings.Replace(`{"event_type":"mars",`+tt.body, "mars", eventType, 1)
			resp, got := post(t, s, tt.path, body)
			if resp.StatusCode != tt.status {
				t.Fatalf("HTTP %d, want %d: %s", resp.StatusCode, tt.status, got)
			}
			if tt.status == 200 {
				if tt.version == avisotest.V071 && len(ids(got)) != 2 {
					t.Errorf("the ignored key filtered: %s", got)
				}
				return
			}
			var e map[string]string
			if err := json.Unmarshal([]byte(got), &e); err != nil {
				t.Fatal(err)
			}
			if e["code"] != tt.code || e["message"] != tt.message {
				t.Errorf("code %q message %q\nwant %q %q", e["code"], e["message"], tt.code, tt.message)
			}
		})
	}

	// Authentication is checked first.
	s := avisotest.NewServer(t, avisotest.WithVersion(avisotest.V013), avisotest.WithSchema("mars", "class"), avisotest.WithTokenFile(token))
	if resp, body := post(t, s, wt, `{"event_type":"mars","identifier":{"severtiy":"4"}}`); resp.StatusCode != 401 {
		t.Errorf("unknown key without credentials: HTTP %d %s", resp.StatusCode, body)
	}
}

// TestReady: GET /ready under 0.13 (no auth), absent under 0.7.1.
func TestReady(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	get := func(s *avisotest.Server) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/ready", nil)
		resp, body := do(t, s.Client(), req)
		return resp.StatusCode, body
	}
	s := avisotest.NewServer(t, avisotest.WithVersion(avisotest.V013), avisotest.WithTokenFile(token), avisotest.WithBasePath("/aviso"))
	if code, body := get(s); code != 200 || body != `{"status":"ready","backend_connected":true}` {
		t.Errorf("ready: %d %s", code, body)
	}
	s.SetBackendConnected(false)
	if code, body := get(s); code != 503 || body != `{"status":"not_ready","backend_connected":false}` {
		t.Errorf("backend down: %d %s", code, body)
	}
	s.SetBackendConnected(true)
	if code, _ := get(s); code != 200 {
		t.Errorf("backend back: %d", code)
	}
	if code, body := get(avisotest.NewServer(t)); code != 404 {
		t.Errorf("0.7.1 /ready: %d %s", code, body)
	}
}

// TestFailedBatchByVersion: a failed replay batch ends a 0.13 stream with
// end_of_stream (no replay_completed, no live part) on both endpoints.
func TestFailedBatchByVersion(t *testing.T) {
	for _, path := range []string{"/api/v1/replay", "/api/v1/watch"} {
		s := avisotest.NewServer(t, avisotest.WithVersion(avisotest.V013), avisotest.WithClock(fixedClock))
		publishN(s, 3)
		s.Fault(avisotest.ErrorFrame{After: 1})
		_, body := post(t, s, path, replayAllBody)
		want := []string{"replay-control replay_started", "replay mars@1", "error stream_processing_failed", "connection-closing end_of_stream"}
		if path == "/api/v1/watch" {
			want = slices.Insert(want, 1, "heartbeat")
		}
		if got := frames(t, body); !slices.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", path, got, want)
		}
		if d := dataOf(body, "stream_processing_failed"); d != `{"error":"stream_processing_failed","message":"Failed to fetch replay batch","request_id":"RID","topic":"mars"}` {
			t.Errorf("%s: error frame %s", path, d)
		}
	}
}

// TestPoison: a poison notification is the same error frame on every replay
// that covers it and live, in both versions, and occupies its sequence.
func TestPoison(t *testing.T) {
	for _, v := range []avisotest.Version{avisotest.V071, avisotest.V013} {
		t.Run(v.String(), func(t *testing.T) {
			s := avisotest.NewServer(t, avisotest.WithVersion(v), avisotest.WithReplayBatch(2, 0))
			publishN(s, 1)
			if seq := s.PublishPoison("mars", od, ""); seq != 2 {
				t.Errorf("poison sequence %d", seq)
			}
			s.PublishPoison("mars", od, "stored polygon does not parse")
			s.PublishPoison("mars", map[string]string{"class": "rd"}, "")
			publishN(s, 1)
			want := []string{"replay-control replay_started", "replay mars@1", "error CloudEvent creation failed 2", "error CloudEvent creation failed 3",
				"replay mars@5", "replay-control replay_completed", "connection-closing end_of_stream"}
			for range 2 {
				_, body := post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{"class":"od"},"from_id":"1"}`)
				if got := frames(t, body); !slices.Equal(got, want) {
					t.Errorf("replay:\n got %q\nwant %q", got, want)
				}
				if d := dataOf(body, `"sequence":2`); d != `{"error":"CloudEvent creation failed","message":"Failed to create CloudEvent for notification with sequence 2","request_id":"RID","sequence":2,"topic":"mars.od"}` {
					t.Errorf("error frame %s", d)
				}
				if d := dataOf(body, `"sequence":3`); !strings.Contains(d, `"message":"stored polygon does not parse"`) {
					t.Errorf("error frame %s", d)
				}
			}
			if s.LastSequence("mars") != 5 {
				t.Errorf("LastSequence %d", s.LastSequence("mars"))
			}
			r := openStream(t, s, "/api/v1/watch", `{"event_type":"mars","identifier":{}}`)
			if _, err := s.WaitRequests(context.Background(), 3); err != nil {
				t.Fatal(err)
			}
			s.PublishPoison("mars", od, "")
			publishN(s, 1)
			if got := r.until(t, "mars@7"); !slices.Equal(got, []string{"live-notification", "heartbeat", "error", "live-notification mars@7"}) {
				t.Errorf("live: %q", got)
			}
		})
	}
}

// TestPublishJSON: numbers and polygons round-trip; filters compare scalar
// values by their text.
func TestPublishJSON(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithVersion(avisotest.V013), avisotest.WithClock(fixedClock))
	polygon := [][]float64{{52.5, 13.4}, {52.6, 13.5}, {52.5, 13.6}, {52.5, 13.4}}
	s.PublishJSON("mars", map[string]any{"polygon": polygon, "step": 12, "class": "od"}, map[string]any{"b": 1, "a": "<x>"})
	s.PublishJSON("mars", map[string]any{"step": 6.5, "class": "rd"}, nil)
	s.PublishJSON("mars", map[string]any{"point_cloud": json.RawMessage(`[[1, 2], [3, 4]]`)}, nil)
	_, body := post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{"step":{"gte":12}},"from_id":"1"}`)
	want := `{"data":{"identifier":{"class":"od","polygon":[[52.5,13.4],[52.6,13.5],[52.5,13.6],[52.5,13.4]],"step":12},"payload":{"a":"<x>","b":1}},`
	if got := ids(body); !slices.Equal(got, []string{"mars@1"}) || !strings.Contains(body, want) {
		t.Errorf("gte 12: %q\n%s", got, body)
	}
	_, body = post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{"step":"6.5"},"from_id":"1"}`)
	if got := ids(body); !slices.Equal(got, []string{"mars@2"}) || !strings.Contains(body, `"identifier":{"class":"rd","step":6.5}`) {
		t.Errorf("step 6.5: %q\n%s", got, body)
	}
	_, body = post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{},"from_id":"3"}`)
	if !strings.Contains(body, `"identifier":{"point_cloud":[[1,2],[3,4]]}`) {
		t.Errorf("point cloud: %s", body)
	}
}

type fakeTB struct {
	cleanups []func()
	fatal    string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Cleanup(fn func())                 { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.fatal = fmt.Sprintf(format, args...) }

// TestNewServerTB: NewServer works with any TB (the testing-free interface)
// and the package does not link testing.
func TestNewServerTB(t *testing.T) {
	var _ avisotest.TB = t
	f := &fakeTB{}
	s := avisotest.NewServer(f)
	if len(f.cleanups) != 1 || f.fatal != "" {
		t.Fatalf("cleanups %d, fatal %q", len(f.cleanups), f.fatal)
	}
	f.cleanups[0]()
	if resp, err := s.Client().Get(s.URL + "/health"); err == nil {
		resp.Body.Close()
		t.Errorf("server still serving after the cleanup")
	}
	f = &fakeTB{}
	if avisotest.NewServer(f, avisotest.WithHeartbeat(0)); !strings.Contains(f.fatal, "heartbeat") {
		t.Errorf("bad option: fatal %q", f.fatal)
	}

	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list dependencies")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if slices.Contains(strings.Fields(string(out)), "testing") {
		t.Errorf("avisotest links package testing")
	}
}

// TestRequestEndRecorded: Request carries to_id and to_date as sent.
func TestRequestEndRecorded(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithVersion(avisotest.V013))
	post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{},"from_id":"1","to_id":"7"}`)
	post(t, s, "/api/v1/replay", `{"event_type":"mars","identifier":{},"from_id":"1","to_date":"2026-01-01T00:00:00Z"}`)
	r := s.Requests()
	if !r[0].HasToID || r[0].ToID != "7" || r[0].ToDate != "" || r[1].HasToID || r[1].ToDate != "2026-01-01T00:00:00Z" {
		t.Errorf("requests %+v", r)
	}
}
