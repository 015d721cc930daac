package aviso_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

var od = map[string]string{"class": "od"}

// TestHeartbeatsKeepAlive: 6.3.27, heartbeats more frequent than the idle
// budget keep the stream open however long it runs.
func TestHeartbeatsKeepAlive(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithHeartbeat(25*time.Millisecond))
	st := mustConnect(t, &aviso.Client{BaseURL: s.URL, IdleTimeout: 200 * time.Millisecond}, aviso.Watch, aviso.Request{})
	start := time.Now()
	for n := 0; n < 10 || time.Since(start) < 600*time.Millisecond; n++ {
		f, err := st.Next()
		if err != nil || f.Kind != aviso.KindHeartbeat || f.Topic != "mars" || f.Timestamp == "" {
			t.Fatalf("after %v: %+v, %v", time.Since(start), f, err)
		}
	}
}

// TestIdleTimeout: 6.3.28, silence past the budget ends the stream with
// ErrIdleTimeout; a shorter silence does not.
func TestIdleTimeout(t *testing.T) {
	const idle = 150 * time.Millisecond
	s := avisotest.NewServer(t)
	s.Publish("mars", od, nil)
	s.Fault(avisotest.Stall{After: 1, For: idle / 3}, avisotest.Stall{After: 1})

	c := &aviso.Client{BaseURL: s.URL, IdleTimeout: idle}
	st := mustConnect(t, c, aviso.Watch, aviso.Request{FromID: ptr[uint64](1)})
	s.Publish("mars", od, nil) // reaches the live part after the short stall
	if got, want := collectUntil(t, st, "notification mars 2"), []string{"notification mars 1", "replay_completed", "notification mars 2"}; !slices.Equal(got, want) {
		t.Fatalf("short stall: %q, want %q", got, want)
	}

	st = mustConnect(t, c, aviso.Watch, aviso.Request{FromID: ptr[uint64](1)})
	start := time.Now()
	got := collect(t, st, 10)
	if want := []string{"heartbeat", "notification mars 1", "idle"}; !slices.Equal(got, want) {
		t.Fatalf("stall: %q, want %q", got, want)
	}
	if el := time.Since(start); el < idle {
		t.Errorf("idle timeout after %v, budget %v", el, idle)
	}
	_, err := st.Next()
	if !strings.Contains(err.Error(), st.RequestID) {
		t.Errorf("error %q does not name the request id", err)
	}
}

// TestSlowConsumer: 6.7.67 and Part A.7, time the consumer spends not
// reading never counts as server silence.
func TestSlowConsumer(t *testing.T) {
	const idle = 100 * time.Millisecond
	s := avisotest.NewServer(t)
	for range 1000 { // ~500 KB: more than the client's and the kernel's buffers hold at once
		s.Publish("mars", od, map[string]string{"note": strings.Repeat("x", 300)})
	}
	st := mustConnect(t, &aviso.Client{BaseURL: s.URL, IdleTimeout: idle}, aviso.Replay, aviso.Request{FromID: ptr[uint64](1)})
	if f := nextFrame(t, st); f.Kind != aviso.KindNotification {
		t.Fatalf("first frame %v", f.Kind)
	}
	<-time.After(4 * idle) // a blocked sink
	got := collect(t, st, 1100)
	if len(got) != 1002 || got[998] != "notification mars 1000" || got[999] != "replay_completed" || got[1001] != "EOF" {
		t.Errorf("after the pause: %d frames, last %q", len(got), got[max(0, len(got)-4):])
	}
}

// TestCloseReasons: 6.3.29-6.3.35 at the frame level: every
// connection-closing is a KindClosing frame (unknown reasons too), then EOF.
func TestCloseReasons(t *testing.T) {
	tests := []struct {
		name  string
		opts  []avisotest.Option
		fault avisotest.Fault
		act   func(*avisotest.Server)
		want  string
		msg   string
	}{
		{name: "6.3.29 max_duration_reached", opts: []avisotest.Option{avisotest.WithMaxDuration(100 * time.Millisecond)},
			want: "max_duration_reached", msg: "Connection reached maximum duration"},
		{name: "6.3.30 server_shutdown", act: func(s *avisotest.Server) { s.CloseStreams("server_shutdown") },
			want: "server_shutdown", msg: "Server is shutting down gracefully"},
		{name: "6.3.30 server_shutdown on Close", act: func(s *avisotest.Server) { go s.Close() }, want: "server_shutdown"},
		{name: "6.3.31 end_of_stream on watch", fault: avisotest.CloseWith{Reason: "end_of_stream", After: 1},
			want: "end_of_stream", msg: "Stream completed"},
		{name: "6.3.35 unknown reason", fault: avisotest.CloseWith{Reason: "maintenance", Message: "back soon", After: 1},
			want: "maintenance", msg: "back soon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := avisotest.NewServer(t, tt.opts...)
			s.Publish("mars", od, nil)
			if tt.fault != nil {
				s.Fault(tt.fault)
			}
			st := mustConnect(t, &aviso.Client{BaseURL: s.URL}, aviso.Watch, aviso.Request{FromID: ptr[uint64](1)})
			if f := nextFrame(t, st); f.Kind != aviso.KindNotification {
				t.Fatalf("first frame %v", f.Kind)
			}
			if tt.act != nil {
				tt.act(s)
			}
			var f aviso.Frame
			for f.Kind != aviso.KindClosing {
				f = nextFrame(t, st)
			}
			if f.Reason != tt.want || (tt.msg != "" && f.Message != tt.msg) || f.RequestID != st.RequestID || f.Err != nil {
				t.Errorf("closing %+v, want reason %q message %q request id %q", f, tt.want, tt.msg, st.RequestID)
			}
			if _, err := st.Next(); !errors.Is(err, aviso.ErrClosed) && errSummary(err) != "EOF" {
				t.Errorf("after closing: %v, want EOF", err)
			}
		})
	}
}

// TestReplayEndpoint: 6.3.32 and 6.3.33 at the frame level.
func TestReplayEndpoint(t *testing.T) {
	s := avisotest.NewServer(t)
	for range 3 {
		s.Publish("mars", od, nil)
	}
	c := &aviso.Client{BaseURL: s.URL}
	st := mustConnect(t, c, aviso.Replay, aviso.Request{FromID: ptr[uint64](2)})
	want := []string{"notification mars 2", "notification mars 3", "replay_completed", "closing end_of_stream", "EOF"}
	if got := collect(t, st, 10); !slices.Equal(got, want) {
		t.Errorf("replay: %q, want %q", got, want)
	}
	if st.Opening.Kind != aviso.KindReplayStarted || *st.Opening.FromSequence != 2 {
		t.Errorf("opening %+v", st.Opening)
	}

	s.Fault(avisotest.CloseWith{Reason: "end_of_stream", After: 1})
	st = mustConnect(t, c, aviso.Replay, aviso.Request{FromID: ptr[uint64](1)})
	want = []string{"notification mars 1", "closing end_of_stream", "EOF"}
	if got := collect(t, st, 10); !slices.Equal(got, want) {
		t.Errorf("cut replay: %q, want %q", got, want)
	}
}

// TestConnectionLoss: 6.3.34, a body that ends without connection-closing:
// io.EOF for a clean end (a partial event is discarded), a TransportError
// for a dropped connection.
func TestConnectionLoss(t *testing.T) {
	for _, tt := range []struct {
		fault avisotest.Fault
		want  string
	}{
		{avisotest.CutMidFrame{After: 2, Graceful: true}, "EOF"},
		{avisotest.CutMidFrame{After: 2}, "transport"},
	} {
		s := avisotest.NewServer(t)
		for range 3 {
			s.Publish("mars", od, nil)
		}
		s.Fault(tt.fault)
		st := mustConnect(t, &aviso.Client{BaseURL: s.URL}, aviso.Replay, aviso.Request{FromID: ptr[uint64](1)})
		if got, want := collect(t, st, 10), []string{"notification mars 1", "notification mars 2", tt.want}; !slices.Equal(got, want) {
			t.Errorf("%+v: %q, want %q", tt.fault, got, want)
		}
	}
	s := avisotest.NewServer(t)
	st := mustConnect(t, &aviso.Client{BaseURL: s.URL}, aviso.Watch, aviso.Request{})
	s.DropStreams()
	if got := collect(t, st, 10); got[len(got)-1] != "transport" {
		t.Errorf("DropStreams: %q", got)
	}
}

// TestServerErrorFrames: 6.3.36 and 6.3.37, error frames are non-fatal
// frames; during a replay the server ends the replay there and goes live.
func TestServerErrorFrames(t *testing.T) {
	s := avisotest.NewServer(t)
	for range 4 {
		s.Publish("mars", od, nil)
	}
	s.Fault(avisotest.Combine(avisotest.ErrorFrame{After: 1, CreationFailed: true}, avisotest.ErrorFrame{After: 2, Message: "boom"}))
	st := mustConnect(t, &aviso.Client{BaseURL: s.URL}, aviso.Watch, aviso.Request{FromID: ptr[uint64](1)})
	// The failed replay never sends mars@4: the server jumps to live.
	want := []string{"notification mars 1", "server_error CloudEvent creation failed seq=2", "notification mars 3",
		"server_error stream_processing_failed", "replay_completed"}
	var frames []aviso.Frame
	var got []string
	for len(frames) < len(want) {
		f := nextFrame(t, st)
		frames, got = append(frames, f), append(got, summary(f))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("frames %q, want %q", got, want)
	}
	s.Publish("mars", od, nil)
	if f := nextFrame(t, st); summary(f) != "notification mars 5" {
		t.Errorf("live after the failed replay: %s", summary(f))
	}
	e := frames[3]
	if e.Message != "boom" || e.RequestID != st.RequestID || e.Topic != "mars" || e.HasSequence || e.Err != nil {
		t.Errorf("error frame %+v", e)
	}
	if c := frames[1]; c.Sequence != 2 || c.Message == "" || c.RequestID != st.RequestID {
		t.Errorf("creation-failed frame %+v", c)
	}
}

// TestReplayLimit: 6.4.38 at the frame level.
func TestReplayLimit(t *testing.T) {
	s := avisotest.NewServer(t, avisotest.WithReplayLimit(2))
	for range 3 {
		s.Publish("mars", od, nil)
	}
	st := mustConnect(t, &aviso.Client{BaseURL: s.URL}, aviso.Replay, aviso.Request{FromID: ptr[uint64](1)})
	want := []string{"notification mars 1", "notification mars 2", "replay_limit_reached 2", "replay_completed", "closing end_of_stream", "EOF"}
	if got := collect(t, st, 10); !slices.Equal(got, want) {
		t.Errorf("frames %q, want %q", got, want)
	}

	url := rawServer(t, rawResp{chunks: []string{replayOpening,
		"event: replay-control\ndata: " + `{"message":"m","timestamp":"t","topic":"mars","type":"notification_replay_limit_reached"}` + "\n\n",
		"event: replay-control\ndata: " + `{"timestamp":"t","topic":"mars","type":"some_future_type"}` + "\n\n",
		"event: replay-control\ndata: {oops\n\n",
		"event: replay-control\ndata: " + `{"timestamp":"t","topic":"mars","type":"replay_completed"}` + "\n\n",
		"event: replay-control\ndata: " + `{"timestamp":"t","topic":"mars","type":"replay_completed"}` + "\n\n",
	}})
	st = mustConnect(t, &aviso.Client{BaseURL: url}, aviso.Watch, aviso.Request{FromID: ptr[uint64](1)})
	if got, want := collect(t, st, 10), []string{"replay_limit_reached -", "decode_error", "replay_completed", "replay_completed", "EOF"}; !slices.Equal(got, want) {
		t.Errorf("without max_allowed, unknown type, bad JSON, repeated replay_completed (6.2.26): %q, want %q", got, want)
	}
}

// TestSeamAndGaps: 6.4.39/40/43 at the frame level: filtered watches see
// sequence gaps; seam duplicates arrive as frames, in wire order.
func TestSeamAndGaps(t *testing.T) {
	s := avisotest.NewServer(t)
	s.Publish("mars", od, nil)
	s.Publish("mars", map[string]string{"class": "rd"}, nil)
	s.Publish("mars", od, nil)
	s.Publish("mars", od, nil)
	s.Fault(avisotest.SeamDuplicates{N: 2})
	st := mustConnect(t, &aviso.Client{BaseURL: s.URL}, aviso.Watch, aviso.Request{FromID: ptr[uint64](1), Identifier: []byte(`{"class":"od"}`)})
	s.Publish("mars", od, nil)
	want := []string{"notification mars 1", "notification mars 3", "notification mars 4", "replay_completed",
		"notification mars 3", "notification mars 4", "notification mars 5"}
	if got := collectUntil(t, st, "notification mars 5"); !slices.Equal(got, want) {
		t.Errorf("frames %q, want %q", got, want)
	}
}

// TestCloseUnblocksNext: Close from another goroutine ends a blocked Next.
func TestCloseUnblocksNext(t *testing.T) {
	s := avisotest.NewServer(t)
	st := mustConnect(t, &aviso.Client{BaseURL: s.URL}, aviso.Watch, aviso.Request{})
	if f, _ := st.Next(); f.Kind != aviso.KindHeartbeat {
		t.Fatalf("first frame %v", f.Kind)
	}
	done := make(chan error)
	go func() {
		_, err := st.Next()
		done <- err
	}()
	st.Close()
	select {
	case err := <-done:
		if !errors.Is(err, aviso.ErrClosed) {
			t.Errorf("Next after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Next")
	}
	st.Close() // idempotent
	if _, err := st.Next(); !errors.Is(err, aviso.ErrClosed) {
		t.Errorf("Next after Close: %v", err)
	}
}

// TestContextEndsStream: cancelling the Connect ctx ends Next with its error.
func TestContextEndsStream(t *testing.T) {
	s := avisotest.NewServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := (&aviso.Client{BaseURL: s.URL}).Connect(ctx, aviso.Watch, aviso.Request{EventType: "mars"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	time.AfterFunc(50*time.Millisecond, cancel)
	for {
		if _, err := st.Next(); err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Next: %v, want context.Canceled", err)
			}
			return
		}
	}
}

// TestBytesForwardedExactly: Data and CloudEvent are the bytes aviso sent.
func TestBytesForwardedExactly(t *testing.T) {
	s := avisotest.NewServer(t)
	s.PublishRaw("mars", map[string]string{"severity": "4", "polygon": "(52.5,13.4,52.6,13.5,52.5,13.4)"}, []byte(`{"z":1,"a":[1.50,"é\u00e9"],"n":null}`))
	body := replayBytes(t, s)
	st := mustConnect(t, &aviso.Client{BaseURL: s.URL}, aviso.Replay, aviso.Request{FromID: ptr[uint64](0)})
	n := nextFrame(t, st).Notification
	ce := string(n.CloudEvent)
	if !strings.Contains(body, "event: replay\ndata: "+ce+"\n\n") {
		t.Errorf("CloudEvent %s is not the wire bytes %s", ce, body)
	}
	wantData := `{"identifier":{"polygon":"(52.5,13.4,52.6,13.5,52.5,13.4)","severity":"4"},"payload":{"z":1,"a":[1.50,"é\u00e9"],"n":null}}`
	if string(n.Data) != wantData || string(n.Identifier) != `{"polygon":"(52.5,13.4,52.6,13.5,52.5,13.4)","severity":"4"}` {
		t.Errorf("Data %s\nIdentifier %s", n.Data, n.Identifier)
	}
	if n.ID != "mars@1" || n.Type != "int.ecmwf.aviso.mars" || n.Source != "http://localhost" || n.DataSchema != "http://localhost/schema/mars" ||
		n.DataContentType != "application/json" || n.SpecVersion != "1.0" || n.Time == "" {
		t.Errorf("attributes %+v", n)
	}
}
