package aviso_test

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/aviso"
)

// TestParseEventID: 6.5.45 and 6.5.46.
func TestParseEventID(t *testing.T) {
	ok := []struct {
		id  string
		typ string
		seq uint64
	}{
		{"mars@5", "mars", 5},
		{"weird@type@7", "weird@type", 7},
		{"mars@0", "mars", 0},
		{"mars@18446744073709551615", "mars", math.MaxUint64},
		{"mars@007", "mars", 7},
		{"a b@1", "a b", 1},
	}
	for _, tt := range ok {
		typ, seq, err := aviso.ParseEventID(tt.id)
		if err != nil || typ != tt.typ || seq != tt.seq {
			t.Errorf("ParseEventID(%q) = %q, %d, %v; want %q, %d", tt.id, typ, seq, err, tt.typ, tt.seq)
		}
	}
	for _, id := range []string{"mars", "mars@abc", "@7", "mars@-1", "mars@18446744073709551616", "mars@", "mars@+7", "mars@ 7", "mars@7 ", "", "@"} {
		if _, _, err := aviso.ParseEventID(id); !errors.Is(err, aviso.ErrMalformed) || !strings.Contains(err.Error(), id) {
			t.Errorf("ParseEventID(%q) error = %v, want ErrMalformed naming the id", id, err)
		}
	}
}

// TestMalformedNotifications: 6.5.45 and 6.5.49 on a stream. Part A.4: each
// malformed frame is a non-fatal KindDecodeError carrying the raw frame, and
// the stream goes on.
func TestMalformedNotifications(t *testing.T) {
	cases := []struct{ data, why string }{
		{ceJSON("mars", "{}", "null"), `has no '@'`},
		{ceJSON("mars@abc", "{}", "null"), "not a decimal number"},
		{ceJSON("@7", "{}", "null"), "empty event type"},
		{ceJSON("mars@-1", "{}", "null"), "not a decimal number"},
		{ceJSON("mars@18446744073709551616", "{}", "null"), "out of range"},
		{`{"id":"mars@1","type":"int.ecmwf.aviso.mars"}`, "has no data"},
		{`{"data":null,"id":"mars@1"}`, "has no data"},
		{`{"data":"x","id":"mars@1"}`, "data is not a JSON object"},
		{`{"data":{"payload":1},"id":"mars@1"}`, "has no data.identifier"},
		{`{"data":{"identifier":["a"]},"id":"mars@1"}`, "data.identifier is not a JSON object"},
		{`{"data":{"identifier":"a"},"id":"mars@1"}`, "data.identifier is not a JSON object"},
		{`{"data":{"identifier":{}}}`, "has no id"},
		{`{"data":{"identifier":{}},"id":7}`, "id is not a JSON string"},
		{`{"data":{"identifier":{}},"id":"mars@1","time":5}`, "time is not a JSON string"},
		{`not json`, "invalid JSON"},
		{`{"data":{"identifier":{}},"id":"mars@1"`, "invalid JSON"},
		{`{"data":{"identifier":{}},"id":"mars@1"} x`, "invalid JSON"},
		{`{"data":{"identifier":{"a":01}},"id":"mars@1"}`, "invalid JSON"},
		{`["mars@1"]`, "not a JSON object"},
	}
	chunks := []string{liveOpening}
	for _, c := range cases {
		chunks = append(chunks, "event: live-notification\ndata: "+c.data+"\n\n")
	}
	chunks = append(chunks, notifFrame("mars@9"))
	url := rawServer(t, rawResp{chunks: chunks})
	st := mustConnect(t, &aviso.Client{BaseURL: url}, aviso.Watch, aviso.Request{})
	for _, c := range cases {
		f := nextFrame(t, st)
		if f.Kind != aviso.KindDecodeError || f.Event != "live-notification" || string(f.Raw) != c.data ||
			!errors.Is(f.Err, aviso.ErrMalformed) || !strings.Contains(f.Err.Error(), c.why) {
			t.Errorf("%s: got %v %q (err %v), want a decode error mentioning %q", c.data, f.Kind, f.Raw, f.Err, c.why)
		}
	}
	if f := nextFrame(t, st); summary(f) != "notification mars 9" {
		t.Errorf("stream did not continue: %s", summary(f))
	}
}

// TestCloudEventContent: 6.5.46-6.5.48 and 6.2.25, accepted variants are
// delivered with their bytes preserved.
func TestCloudEventContent(t *testing.T) {
	cases := []struct {
		name, ident, payload string
		id                   string
		typ                  string
		seq                  uint64
	}{
		{"6.5.46 @ inside the event type", `{}`, `null`, "weird@type@7", "weird@type", 7},
		{"6.5.47 payload null", `{}`, `null`, "mars@1", "mars", 1},
		{"6.5.47 payload string", `{}`, `"forecast complete"`, "mars@2", "mars", 2},
		{"6.5.47 payload number", `{}`, `42`, "mars@3", "mars", 3},
		{"6.5.47 payload bool", `{}`, `true`, "mars@4", "mars", 4},
		{"6.5.47 payload array", `{}`, `["a","b"]`, "mars@5", "mars", 5},
		{"6.5.47 payload object", `{}`, `{"note":"ok"}`, "mars@6", "mars", 6},
		{"6.5.48 numeric-looking strings", `{"severity":"4","step":"012"}`, `null`, "mars@7", "mars", 7},
		{"6.5.48 polygon", `{"polygon":"(52.5,13.4,52.6,13.5,52.5,13.4)"}`, `null`, "mars@8", "mars", 8},
		{"6.5.48 point cloud", `{"points":[[52.5,13.4],[1e3,-0.5]]}`, `null`, "mars@9", "mars", 9},
		{"6.2.25 payload mentions connection_established", `{}`, `{"t":"connection_established","type":"connection_established"}`, "mars@10", "mars", 10},
		{"6.5.50 largest sequence", `{}`, `null`, "mars@18446744073709551615", "mars", math.MaxUint64},
		{"escapes and whitespace", "{ \"a\\\"b\" : \"\\u00e9\\n\" }", ` { "k" : [ 1 , 2 ] } `, "mars@11", "mars", 11},
	}
	chunks := []string{liveOpening}
	for _, c := range cases {
		chunks = append(chunks, "event: replay\ndata: "+ceJSON(c.id, c.ident, c.payload)+"\n\n")
	}
	noPayload := `{"data":{"identifier":{"a":"b"}},"id":"mars@12"}`
	chunks = append(chunks, "event: live-notification\ndata: "+noPayload+"\n\n")
	url := rawServer(t, rawResp{chunks: chunks})
	st := mustConnect(t, &aviso.Client{BaseURL: url}, aviso.Watch, aviso.Request{})
	for _, c := range cases {
		f := nextFrame(t, st)
		n := f.Notification
		if f.Kind != aviso.KindNotification {
			t.Errorf("%s: %v (%v)", c.name, f.Kind, f.Err)
			continue
		}
		wantData := `{"identifier":` + c.ident + `,"payload":` + c.payload + `}`
		if n.ID != c.id || n.EventType != c.typ || n.Sequence != c.seq || string(n.Identifier) != c.ident ||
			string(n.Data) != wantData || string(n.CloudEvent) != ceJSON(c.id, c.ident, c.payload) || !bytes.Equal(f.Raw, n.CloudEvent) {
			t.Errorf("%s: %+v", c.name, n)
		}
	}
	// 6.5.47: no payload key at all.
	if f := nextFrame(t, st); f.Kind != aviso.KindNotification || string(f.Notification.Data) != `{"identifier":{"a":"b"}}` ||
		f.Notification.Source != "" || f.Notification.Sequence != 12 {
		t.Errorf("without payload: %+v", f)
	}
}

// TestControlFrameDiscrimination: 6.2.25, only the top-level type makes a
// live-notification or replay event a connection_established control frame.
func TestControlFrameDiscrimination(t *testing.T) {
	ctl := `{"connection_will_close_in_seconds":60,"request_id":"r9","timestamp":"2026-03-04T10:00:00Z","topic":"mars","type":"connection_established"}`
	url := rawServer(t, rawResp{chunks: []string{liveOpening,
		"event: replay\ndata: " + ctl + "\n\n",
		"event: live-notification\ndata: " + ctl + "\n\n",
		"event: live-notification\ndata: " + ceJSON("mars@1", `{"type":"connection_established"}`, `"connection_established"`) + "\n\n",
	}})
	st := mustConnect(t, &aviso.Client{BaseURL: url}, aviso.Watch, aviso.Request{})
	for _, want := range []string{"connection_established", "connection_established", "notification mars 1"} {
		f := nextFrame(t, st)
		if summary(f) != want {
			t.Errorf("frame %s, want %s", summary(f), want)
		}
		if f.Kind == aviso.KindConnectionEstablished && (f.RequestID != "r9" || f.WillCloseIn.Seconds() != 60) {
			t.Errorf("control frame %+v", f)
		}
	}
}

// TestParseCloudEventCopies: ParseCloudEvent never aliases its input.
func TestParseCloudEventCopies(t *testing.T) {
	raw := []byte(ceJSON("mars@5", `{"class":"od"}`, `"x"`))
	n, err := aviso.ParseCloudEvent(raw)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		raw[i] = ' '
	}
	if n.ID != "mars@5" || n.Source != "http://localhost" || string(n.Identifier) != `{"class":"od"}` || !strings.HasPrefix(string(n.CloudEvent), `{"data"`) {
		t.Errorf("result changed with the input: %+v", n)
	}
}
