package aviso

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"
)

// The seed corpora live in testdata/fuzz/<target>/ (run with
// `go test ./aviso -run '^$' -fuzz FuzzX -fuzztime 2m`).

// refCloudEvent is the reference for FuzzParseCloudEvent: the same rules
// written with encoding/json.
func refCloudEvent(raw []byte) (n Notification, ok bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil || top == nil {
		return n, false
	}
	attrs := map[string]*string{"id": &n.ID, "source": &n.Source, "type": &n.Type, "time": &n.Time,
		"dataschema": &n.DataSchema, "datacontenttype": &n.DataContentType, "specversion": &n.SpecVersion}
	for k, dst := range attrs {
		if v, present := top[k]; present && string(v) != "null" {
			if v[0] != '"' || json.Unmarshal(v, dst) != nil {
				return n, false
			}
		}
	}
	n.Data = top["data"]
	var data map[string]json.RawMessage
	if len(n.Data) == 0 || n.Data[0] != '{' || json.Unmarshal(n.Data, &data) != nil {
		return n, false
	}
	n.Identifier = data["identifier"]
	if len(n.Identifier) == 0 || n.Identifier[0] != '{' {
		return n, false
	}
	var err error
	n.EventType, n.Sequence, err = ParseEventID(n.ID)
	return n, err == nil
}

func FuzzParseCloudEvent(f *testing.F) {
	f.Add([]byte(`{"data":{"identifier":{"class":"od"},"payload":null},"id":"mars@5","source":"http://localhost","time":"2026-03-04T10:00:00Z","type":"int.ecmwf.aviso.mars"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, err := ParseCloudEvent(raw)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error does not wrap ErrMalformed: %v", err)
		}
		if err == nil {
			if !json.Valid(n.CloudEvent) || !json.Valid(n.Data) || !json.Valid(n.Identifier) {
				t.Fatalf("accepted invalid JSON: %q", raw)
			}
			if typ, seq, err := ParseEventID(n.ID); err != nil || typ != n.EventType || seq != n.Sequence {
				t.Fatalf("id %q vs %s/%d", n.ID, n.EventType, n.Sequence)
			}
		}
		if !utf8.Valid(raw) || bytes.Count(raw, []byte("[")) > 9000 || bytes.Count(raw, []byte("{")) > 9000 {
			return // invalid UTF-8 is replaced, not compared; depth limits differ by one level
		}
		if !json.Valid(raw) && err == nil {
			t.Fatalf("accepted invalid JSON %q", raw)
		}
		ref, ok := refCloudEvent(raw)
		if ok != (err == nil) {
			t.Fatalf("ParseCloudEvent(%q) err = %v, reference ok = %v", raw, err, ok)
		}
		if !ok {
			return
		}
		ref.CloudEvent = n.CloudEvent
		if !reflect.DeepEqual(n, ref) {
			t.Fatalf("ParseCloudEvent(%q)\n got %+v\nwant %+v", raw, n, ref)
		}
	})
}

// checkFrame asserts the invariants of every decoded frame.
func checkFrame(t *testing.T, f Frame) {
	t.Helper()
	switch f.Kind {
	case KindNotification:
		n := f.Notification
		if !json.Valid(n.CloudEvent) || !bytes.Equal(f.Raw, n.CloudEvent) || len(n.Identifier) == 0 || n.Identifier[0] != '{' {
			t.Fatalf("bad notification frame %+v", f)
		}
		if typ, seq, err := ParseEventID(n.ID); err != nil || typ != n.EventType || seq != n.Sequence {
			t.Fatalf("notification id %q vs %q/%d", n.ID, n.EventType, n.Sequence)
		}
	case KindDecodeError:
		if len(f.Raw) == 0 || !errors.Is(f.Err, ErrMalformed) {
			t.Fatalf("bad decode error frame %+v", f)
		}
	case KindConnectionEstablished, KindReplayStarted, KindReplayCompleted, KindReplayLimitReached,
		KindHeartbeat, KindServerError, KindClosing:
		if f.Err != nil && f.Kind != KindServerError && f.Kind != KindClosing {
			t.Fatalf("%v frame with an error: %v", f.Kind, f.Err)
		}
	default:
		t.Fatalf("frame of kind %v", f.Kind)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, ev := range []string{EventLiveNotification, EventReplay, EventReplayControl, EventHeartbeat, EventError, EventConnectionClosing, "other"} {
		f.Add(ev, `{"type":"replay_started","from_sequence":3,"batch_size":100}`)
	}
	f.Fuzz(func(t *testing.T, event, data string) {
		fr, ok := decodeEvent(event, data)
		if !ok {
			if fr.Kind != 0 {
				t.Fatalf("ignored frame with kind %v", fr.Kind)
			}
			return
		}
		if fr.Event != event {
			t.Fatalf("event %q, want %q", fr.Event, event)
		}
		checkFrame(t, fr)
	})
}

// decodeAll runs the stream decoder over body and returns the frame
// summaries, the terminal error last.
func decodeAll(t *testing.T, body io.Reader) []string {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	s := newStream(context.Background(), ctx, cancel, io.NopCloser(body), "fuzz", "rid", 4096, time.Minute)
	defer s.Close()
	var out []string
	for range 10000 {
		f, err := s.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, ErrEventTooLarge) {
				t.Fatalf("Next: %v", err)
			}
			return append(out, err.Error())
		}
		checkFrame(t, f)
		out = append(out, fmt.Sprintf("%v %s %q %v", f.Kind, f.Event, f.Raw, f.Err))
	}
	return out
}

func FuzzStream(f *testing.F) {
	f.Add([]byte("event: live-notification\ndata: {\"type\":\"connection_established\"}\n\n:c\r\nevent: replay\r\ndata: {}\r\n\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		whole := decodeAll(t, bytes.NewReader(body))
		bytewise := decodeAll(t, iotest.OneByteReader(bytes.NewReader(body)))
		if whole[len(whole)-1] == "EOF" && bytewise[len(bytewise)-1] == "EOF" {
			if fmt.Sprint(whole) != fmt.Sprint(bytewise) {
				t.Fatalf("chunking changed the result:\nwhole    %q\nbytewise %q", whole, bytewise)
			}
			return
		}
		// Near the size limit the error may come one event earlier or later.
		a, b := whole[:len(whole)-1], bytewise[:len(bytewise)-1]
		if len(a) > len(b) {
			a, b = b, a
		}
		if fmt.Sprint(a) != fmt.Sprint(b[:len(a)]) || len(b)-len(a) > 1 {
			t.Fatalf("chunking changed the result:\nwhole    %q\nbytewise %q", whole, bytewise)
		}
	})
}
