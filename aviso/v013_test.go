package aviso_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// TestBoundedReplayRequest: to_id / to_date are sent in replay mode as
// aviso-server 0.13 expects, and replay_started's end_sequence / to_date are
// decoded (nil / "" from a 0.7.1 server).
func TestBoundedReplayRequest(t *testing.T) {
	tests := []struct {
		name    string
		version avisotest.Version
		req     aviso.Request
		body    string
		want    []string
		endSeq  *uint64
		toDate  string
	}{
		{"to_id", avisotest.V013, aviso.Request{FromID: ptr[uint64](2), ToID: ptr[uint64](3)},
			`{"event_type":"mars","identifier":{},"from_id":"2","to_id":"3"}`,
			[]string{"notification mars 2", "notification mars 3", "replay_completed", "closing end_of_stream", "EOF"}, ptr[uint64](3), ""},
		{"to_date", avisotest.V013, aviso.Request{FromID: ptr[uint64](0), ToDate: "2020-01-01T00:00:00Z"},
			`{"event_type":"mars","identifier":{},"from_id":"0","to_date":"2020-01-01T00:00:00Z"}`,
			[]string{"replay_completed", "closing end_of_stream", "EOF"}, ptr[uint64](0), "2020-01-01T00:00:00Z"},
		{"no end under 0.13", avisotest.V013, aviso.Request{FromID: ptr[uint64](4)},
			`{"event_type":"mars","identifier":{},"from_id":"4"}`,
			[]string{"notification mars 4", "replay_completed", "closing end_of_stream", "EOF"}, ptr[uint64](4), ""},
		{"0.7.1", avisotest.V071, aviso.Request{FromID: ptr[uint64](4)},
			`{"event_type":"mars","identifier":{},"from_id":"4"}`,
			[]string{"notification mars 4", "replay_completed", "closing end_of_stream", "EOF"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := avisotest.NewServer(t, avisotest.WithVersion(tt.version))
			for range 4 {
				s.Publish("mars", nil, nil)
			}
			st := mustConnect(t, &aviso.Client{BaseURL: s.URL}, aviso.Replay, tt.req)
			if got := string(s.Requests()[0].Body); got != tt.body {
				t.Errorf("body %s, want %s", got, tt.body)
			}
			o := st.Opening
			if (o.EndSequence == nil) != (tt.endSeq == nil) || (o.EndSequence != nil && *o.EndSequence != *tt.endSeq) || o.ToDate != tt.toDate {
				t.Errorf("replay_started EndSequence %v ToDate %q, want %v %q", o.EndSequence, o.ToDate, tt.endSeq, tt.toDate)
			}
			if got := collect(t, st, 20); !slices.Equal(got, tt.want) {
				t.Errorf("frames %q, want %q", got, tt.want)
			}
		})
	}
}

// TestBoundedReplayRequestRefused: the client refuses an end point in watch
// mode, and both end points at once.
func TestBoundedReplayRequestRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		mode aviso.Mode
		req  aviso.Request
		want string
	}{
		{"to_id on watch", aviso.Watch, aviso.Request{EventType: "mars", FromID: ptr[uint64](1), ToID: ptr[uint64](5)}, "only valid in replay mode"},
		{"to_date on watch", aviso.Watch, aviso.Request{EventType: "mars", ToDate: "2026-01-01T00:00:00Z"}, "only valid in replay mode"},
		{"both ends", aviso.Replay, aviso.Request{EventType: "mars", FromID: ptr[uint64](1), ToID: ptr[uint64](5), ToDate: "2026-01-01T00:00:00Z"}, "both to_id and to_date"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := (&aviso.Client{BaseURL: "http://127.0.0.1:1"}).Connect(context.Background(), tt.mode, tt.req)
			if !errors.Is(err, aviso.ErrInvalidRequest) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Connect: %v, want ErrInvalidRequest mentioning %q", err, tt.want)
			}
		})
	}
}

// TestHTTPError400Fields: a 0.13 400 answer's code and message are on the
// HTTPError, for the supervisor to report.
func TestHTTPError400Fields(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithVersion(avisotest.V013), avisotest.WithSchema("mars", "class"))
	tests := []struct {
		mode          aviso.Mode
		req           aviso.Request
		code, message string
	}{
		{aviso.Watch, aviso.Request{Identifier: json.RawMessage(`{"severtiy":"4"}`)}, "INVALID_WATCH_REQUEST", "Unknown field 'severtiy' provided for watch operation"},
		{aviso.Replay, aviso.Request{FromID: ptr[uint64](5), ToID: ptr[uint64](4)}, "INVALID_REPLAY_REQUEST", "to_id (4) must not be lower than from_id (5)"},
	}
	for _, tt := range tests {
		_, err := connect(t, &aviso.Client{BaseURL: s.URL}, tt.mode, tt.req)
		var he *aviso.HTTPError
		if !errors.As(err, &he) {
			t.Fatalf("Connect: %v, want *HTTPError", err)
		}
		if he.Status != 400 || he.Code != tt.code || he.Message != tt.message || !he.ConfigError() || he.RequestID == "" {
			t.Errorf("HTTPError %+v", he)
		}
		if !strings.Contains(err.Error(), tt.message) || !strings.Contains(err.Error(), tt.code) {
			t.Errorf("Error() %q lacks the code or the message", err)
		}
	}
}

// TestFrames013: poison error frames (with sequence), the terminal
// stream_processing_failed (without), the 0.13 cap, and identifiers with
// array and number values, as served by avisotest in 0.13 mode.
func TestFrames013(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithVersion(avisotest.V013), avisotest.WithReplayLimit(2))
	polygon := [][]float64{{52.5, 13.4}, {52.6, 13.5}, {52.5, 13.4}}
	s.PublishJSON("mars", map[string]any{"polygon": polygon, "step": 12}, nil)
	s.PublishPoison("mars", nil, "")
	s.PublishJSON("mars", map[string]any{"point_cloud": [][]int{{1, 2}}, "step": 6.5}, nil)
	s.Publish("mars", nil, nil)

	st := mustConnect(t, &aviso.Client{BaseURL: s.URL}, aviso.Replay, aviso.Request{FromID: ptr[uint64](1)})
	var got []string
	var idents []string
	for {
		f, err := st.Next()
		if err != nil {
			got = append(got, errSummary(err))
			break
		}
		got = append(got, summary(f))
		if f.Kind == aviso.KindNotification {
			idents = append(idents, string(f.Notification.Identifier))
		}
		if f.Kind == aviso.KindServerError && (f.Message != "Failed to create CloudEvent for notification with sequence 2" || f.RequestID == "" || f.Topic != "mars") {
			t.Errorf("poison frame %+v", f)
		}
	}
	want := []string{"notification mars 1", "server_error CloudEvent creation failed seq=2", "notification mars 3", "replay_limit_reached 2", "closing end_of_stream", "EOF"}
	if !slices.Equal(got, want) {
		t.Errorf("frames %q, want %q", got, want)
	}
	wantIdents := []string{`{"polygon":[[52.5,13.4],[52.6,13.5],[52.5,13.4]],"step":12}`, `{"point_cloud":[[1,2]],"step":6.5}`}
	if !slices.Equal(idents, wantIdents) {
		t.Errorf("identifiers %q, want %q", idents, wantIdents)
	}

	s.Fault(avisotest.ErrorFrame{After: 1})
	st = mustConnect(t, &aviso.Client{BaseURL: s.URL}, aviso.Watch, aviso.Request{FromID: ptr[uint64](1)})
	got = collect(t, st, 10)
	want = []string{"heartbeat", "notification mars 1", "server_error stream_processing_failed", "closing end_of_stream", "EOF"}
	if !slices.Equal(got, want) {
		t.Errorf("failed batch: %q, want %q", got, want)
	}
}

// TestIdentifierJSONKept: the identifier of a notification is kept as the
// server's raw JSON whatever its value types.
func TestIdentifierJSONKept(t *testing.T) {
	for _, ident := range []string{`{"polygon":[[52.5,13.4],[52.6,13.5]]}`, `{"n":-1.5e3,"b":true,"s":"x"}`, `{"nested":{"a":[1,{"b":null}]}}`} {
		n, err := aviso.ParseCloudEvent([]byte(`{"data":{"identifier":` + ident + `,"payload":null},"id":"mars@7","type":"int.ecmwf.aviso.mars"}`))
		if err != nil || !bytes.Equal(n.Identifier, []byte(ident)) {
			t.Errorf("%s: %v %s", ident, err, n.Identifier)
		}
	}
}

// TestReplayStartedEndMembers: end_sequence and to_date null, absent or set.
func TestReplayStartedEndMembers(t *testing.T) {
	for _, tt := range []struct {
		members string
		endSeq  string
		toDate  string
	}{
		{``, "nil", ""},
		{`"end_sequence":null,"to_date":null,`, "nil", ""},
		{`"end_sequence":18446744073709551615,"to_date":"2026-01-02T00:00:00Z",`, "18446744073709551615", "2026-01-02T00:00:00Z"},
	} {
		url := rawServer(t, rawResp{chunks: []string{"event: replay-control\ndata: " +
			`{"batch_size":100,` + tt.members + `"from_date":null,"from_sequence":1,"request_id":"r","timestamp":"2026-03-04T10:00:00Z","topic":"mars","type":"replay_started"}` + "\n\n"}})
		o := mustConnect(t, &aviso.Client{BaseURL: url}, aviso.Replay, aviso.Request{FromID: ptr[uint64](1)}).Opening
		got := "nil"
		if o.EndSequence != nil {
			got = strconv.FormatUint(*o.EndSequence, 10)
		}
		if o.Kind != aviso.KindReplayStarted || got != tt.endSeq || o.ToDate != tt.toDate {
			t.Errorf("%s: EndSequence %s ToDate %q", tt.members, got, o.ToDate)
		}
	}
}
