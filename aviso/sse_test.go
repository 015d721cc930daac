package aviso_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// TestSSEParsing covers Part B section 6.1 (SSE parsing) against raw bytes.
func TestSSEParsing(t *testing.T) {
	n5 := notifFrame("mars@5")
	oneByte := splitEvery(liveOpening+heartbeatFrame+n5+notifFrame("mars@6")+closingFrame("end_of_stream"), 1)
	tests := []struct {
		name   string
		chunks []string
		want   []string
	}{
		{"6.1.1 chunk boundary inside a data line",
			[]string{liveOpening, n5[:60], n5[60:]},
			[]string{"notification mars 5", "EOF"}},
		{"6.1.2 chunk boundary between CR and LF",
			[]string{crlf(liveOpening), strings.TrimSuffix(crlf(n5), "\n\r\n"), "\n\r\n", crlf(notifFrame("mars@6"))},
			[]string{"notification mars 5", "notification mars 6", "EOF"}},
		{"6.1.3 one byte per chunk",
			oneByte,
			[]string{"heartbeat", "notification mars 5", "notification mars 6", "closing end_of_stream", "EOF"}},
		{"6.1.4 many events in one chunk",
			[]string{liveOpening + heartbeatFrame + n5 + notifFrame("mars@6") + closingFrame("max_duration_reached")},
			[]string{"heartbeat", "notification mars 5", "notification mars 6", "closing max_duration_reached", "EOF"}},
		{"6.1.5 CRLF line endings",
			[]string{crlf(liveOpening + heartbeatFrame + n5 + closingFrame("end_of_stream"))},
			[]string{"heartbeat", "notification mars 5", "closing end_of_stream", "EOF"}},
		{"6.1.6 lone CR line endings",
			[]string{strings.ReplaceAll(liveOpening+n5+closingFrame("end_of_stream"), "\n", "\r")},
			[]string{"notification mars 5", "closing end_of_stream", "EOF"}},
		{"6.1.7 comment lines",
			[]string{":keepalive\n\n", liveOpening, ":keepalive\n", n5, ": another\n\n"},
			[]string{"notification mars 5", "EOF"}},
		{"6.1.8 multi-line data",
			[]string{liveOpening, "event: connection-closing\ndata: {\"reason\":\ndata: \"max_duration_reached\"}\n\n"},
			[]string{"closing max_duration_reached", "EOF"}},
		{"6.1.9 data without a space and with two spaces",
			[]string{liveOpening, strings.Replace(n5, "data: ", "data:", 1), strings.Replace(notifFrame("mars@6"), "data: ", "data:  ", 1)},
			[]string{"notification mars 5", "notification mars 6", "EOF"}},
		{"6.1.10 UTF-8 BOM at stream start",
			[]string{"\xEF\xBB\xBF" + liveOpening, n5},
			[]string{"notification mars 5", "EOF"}},
		{"6.1.10 BOM split across chunks",
			[]string{"\xEF", "\xBB\xBF" + liveOpening[:10], liveOpening[10:] + n5},
			[]string{"notification mars 5", "EOF"}},
		{"6.1.11 id field ignored",
			[]string{liveOpening, "id: 99\n" + n5},
			[]string{"notification mars 5", "EOF"}},
		{"6.1.12 retry field ignored",
			[]string{liveOpening, "retry: 5000\n\n", "retry: 5000\n" + n5},
			[]string{"notification mars 5", "EOF"}},
		{"6.1.13 unknown event name",
			[]string{liveOpening, "event: future-thing\ndata: {\"a\":1}\n\n", n5},
			[]string{"notification mars 5", "EOF"}},
		{"6.1.14 event without an event line",
			[]string{liveOpening, "data: " + ceJSON("mars@4", "{}", "null") + "\n\n", n5},
			[]string{"notification mars 5", "EOF"}},
		{"6.1.15 event-name-only block",
			[]string{liveOpening, "event: heartbeat\n\n", "data: {\"timestamp\":\"x\"}\n\n", n5},
			[]string{"notification mars 5", "EOF"}},
		{"6.1.16 partial event at EOF",
			[]string{liveOpening, n5, strings.TrimSuffix(notifFrame("mars@6"), "\n")},
			[]string{"notification mars 5", "EOF"}},
		{"6.1.16 partial event line at EOF",
			[]string{liveOpening, n5, notifFrame("mars@6")[:50]},
			[]string{"notification mars 5", "EOF"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := rawServer(t, rawResp{chunks: tt.chunks})
			st := mustConnect(t, &aviso.Client{BaseURL: url}, aviso.Watch, aviso.Request{})
			if st.Opening.Kind != aviso.KindConnectionEstablished {
				t.Fatalf("opening = %v", st.Opening.Kind)
			}
			if got := collect(t, st, 100); !slices.Equal(got, tt.want) {
				t.Errorf("frames\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestSSECommentsKeepAlive: 6.1.7, any bytes (comments alone) restart the
// idle watchdog.
func TestSSECommentsKeepAlive(t *testing.T) {
	const idle = 150 * time.Millisecond
	chunks := append([]string{liveOpening}, slices.Repeat([]string{":keepalive\n"}, 15)...)
	url := tickingServer(t, 30*time.Millisecond, append(chunks, notifFrame("mars@5"))...)
	st := mustConnect(t, &aviso.Client{BaseURL: url, IdleTimeout: idle}, aviso.Watch, aviso.Request{})
	if got, want := collect(t, st, 10), []string{"notification mars 5", "EOF"}; !slices.Equal(got, want) {
		t.Errorf("frames %q, want %q (15 comments 30ms apart must keep a %s budget alive)", got, want, idle)
	}
}

// TestSSEOversizedEvent: 6.1.17, frames before the oversized event are
// delivered, then ErrEventTooLarge ends the stream; during the opening it
// is a ProtocolError.
func TestSSEOversizedEvent(t *testing.T) {
	big := "event: live-notification\ndata: " + ceJSON("mars@6", "{}", `"`+strings.Repeat("x", 10000)+`"`) + "\n\n"
	url := rawServer(t, rawResp{chunks: []string{liveOpening, notifFrame("mars@5") + big, notifFrame("mars@7")}})
	c := &aviso.Client{BaseURL: url, MaxEventSize: 4096}
	st := mustConnect(t, c, aviso.Watch, aviso.Request{})
	if got, want := collect(t, st, 10), []string{"notification mars 5", "too_large"}; !slices.Equal(got, want) {
		t.Errorf("frames %q, want %q", got, want)
	}
	_, err := st.Next()
	var tl *aviso.EventTooLargeError
	if !errors.As(err, &tl) {
		t.Fatalf("error is not sticky: %v", err)
	}
	if tl.ID != "mars@6" || !tl.HasSequence || tl.Sequence != 6 || tl.EventType != "mars" || tl.Limit != 4096 ||
		tl.RequestID != "hdr-rid" || !strings.HasSuffix(string(tl.Tail), `"type":"int.ecmwf.aviso.mars"}`+"\n\n") {
		t.Errorf("EventTooLargeError %+v", tl)
	}

	// CRLF framing; and an oversized event that never ends (no id recovered).
	for _, tt := range []struct {
		chunks []string
		id     string
	}{
		{[]string{crlf(liveOpening), crlf(big) + crlf(notifFrame("mars@7"))}, "mars@6"},
		{[]string{liveOpening, big[:len(big)-200]}, ""},
	} {
		url := rawServer(t, rawResp{chunks: tt.chunks})
		st := mustConnect(t, &aviso.Client{BaseURL: url, MaxEventSize: 4096}, aviso.Watch, aviso.Request{})
		if _, err := st.Next(); !errors.As(err, &tl) || tl.ID != tt.id || tl.HasSequence != (tt.id != "") {
			t.Errorf("want id %q: %v", tt.id, err)
		}
	}

	url = rawServer(t, rawResp{chunks: []string{heartbeatFrame, big}})
	_, err = connect(t, &aviso.Client{BaseURL: url, MaxEventSize: 4096}, aviso.Watch, aviso.Request{})
	var pe *aviso.ProtocolError
	if !errors.As(err, &pe) || !errors.Is(err, aviso.ErrEventTooLarge) {
		t.Errorf("oversized opening: %v, want a ProtocolError wrapping ErrEventTooLarge", err)
	}

	// The default limit (8 MiB) accepts a 1 MiB event.
	huge := "event: live-notification\ndata: " + ceJSON("mars@6", "{}", `"`+strings.Repeat("x", 1<<20)+`"`) + "\n\n"
	url = rawServer(t, rawResp{chunks: []string{liveOpening, huge}})
	st = mustConnect(t, &aviso.Client{BaseURL: url}, aviso.Watch, aviso.Request{})
	if got, want := collect(t, st, 10), []string{"notification mars 6", "EOF"}; !slices.Equal(got, want) {
		t.Errorf("1 MiB event: %q, want %q", got, want)
	}
}

// TestSSEInvalidUTF8: 6.1.18, invalid bytes inside a JSON string become
// U+FFFD and the notification is delivered; outside a string the frame is a
// decode error and the stream continues.
func TestSSEInvalidUTF8(t *testing.T) {
	inString := "event: live-notification\ndata: " + ceJSON("mars@5", "{\"class\":\"o\xffd\"}", "\"caf\xc3\"") + "\n\n"
	outside := "event: live-notification\ndata: " + ceJSON("mars@6", `{"class":"od"}`, "\xff") + "\n\n"
	url := rawServer(t, rawResp{chunks: []string{liveOpening, inString, outside, notifFrame("mars@7")}})
	st := mustConnect(t, &aviso.Client{BaseURL: url}, aviso.Watch, aviso.Request{})
	f := nextFrame(t, st)
	if f.Kind != aviso.KindNotification {
		t.Fatalf("frame = %v (%v), want a notification", f.Kind, f.Err)
	}
	if got, want := string(f.Notification.Identifier), "{\"class\":\"o\uFFFDd\"}"; got != want {
		t.Errorf("identifier %q, want %q", got, want)
	}
	if !strings.Contains(string(f.Notification.Data), "caf\uFFFD") {
		t.Errorf("data %q lacks the replacement character", f.Notification.Data)
	}
	if f = nextFrame(t, st); f.Kind != aviso.KindDecodeError || !errors.Is(f.Err, aviso.ErrMalformed) {
		t.Errorf("frame = %v (%v), want a decode error", f.Kind, f.Err)
	}
	if f = nextFrame(t, st); summary(f) != "notification mars 7" {
		t.Errorf("frame after the decode error = %s", summary(f))
	}
}

// TestSSEOversizedEventNeverTrustsPayloadIDs: an event too long to skim to
// its end must not yield an id found inside its payload (the cursor would
// jump past notifications never delivered).
func TestSSEOversizedEventNeverTrustsPayloadIDs(t *testing.T) {
	srv := avisotest.NewServer(t)
	srv.PublishRaw("mars", nil, []byte("["+strings.Repeat(`{"id":"mars@999999"},`, 20000)+"0]"))
	srv.PublishRaw("mars", nil, []byte(`{"a":"`+strings.Repeat("x", 6000)+`","id":"mars@999999"}`))
	for _, from := range []uint64{1, 2} {
		c := &aviso.Client{BaseURL: srv.URL, HTTPClient: srv.Client(), MaxEventSize: 4096}
		st := mustConnect(t, c, aviso.Watch, aviso.Request{EventType: "mars", FromID: &from})
		var err error
		for err == nil {
			var f aviso.Frame
			if f, err = st.Next(); err == nil && f.Kind == aviso.KindNotification {
				t.Fatalf("from %d: oversized notification %s delivered", from, f.Notification.ID)
			}
		}
		var tl *aviso.EventTooLargeError
		if !errors.As(err, &tl) {
			t.Fatalf("from %d: err %v, want EventTooLargeError", from, err)
		}
		if tl.HasSequence && tl.Sequence != from {
			t.Errorf("from %d: recovered sequence %d (id %q) from the payload", from, tl.Sequence, tl.ID)
		}
	}
}
