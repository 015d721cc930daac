package stdout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/sinks/stdout"
)

// writer records what is written; fail, when set, decides each call.
type writer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	fail func(p []byte) (int, error)
	gate chan struct{} // when set, each Write waits for a value
}

func (w *writer) Write(p []byte) (int, error) {
	if w.gate != nil {
		<-w.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		if n, err := w.fail(p); err != nil {
			w.buf.Write(p[:n])
			return n, err
		}
	}
	return w.buf.Write(p)
}

func (w *writer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *writer) setFail(f func(p []byte) (int, error)) {
	w.mu.Lock()
	w.fail = f
	w.mu.Unlock()
}

func note(seq uint64) *bridge.Notification {
	id := bridge.EventID("mars", seq)
	return &bridge.Notification{EventType: "mars", Sequence: seq, ID: id,
		CloudEvent: []byte(fmt.Sprintf(`{"specversion":"1.0","id":%q,"data":{"identifier":{},"payload":"p%d"}}`, id, seq))}
}

func line(seq uint64) string { return string(note(seq).CloudEvent) + "\n" }

func newSink(t *testing.T, out, dl *writer) *stdout.Sink {
	t.Helper()
	s := stdout.New(stdout.Options{Out: out, DeadLetter: dl, MaxInFlight: 64, Now: func() time.Time { return time.Unix(0, 0) }})
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func nextAck(t *testing.T, s *stdout.Sink) bridge.Ack {
	t.Helper()
	select {
	case a := <-s.Acks():
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no ack")
		return bridge.Ack{}
	}
}

func TestWritesLinesAndAcksInOrder(t *testing.T) {
	out := &writer{}
	s := newSink(t, out, &writer{})
	ctx := context.Background()
	var want strings.Builder
	for seq := uint64(1); seq <= 100; seq++ {
		if err := s.Publish(ctx, note(seq)); err != nil {
			t.Fatal(err)
		}
		want.WriteString(line(seq))
	}
	for seq := uint64(1); seq <= 100; seq++ {
		if a := nextAck(t, s); a.Sequence != seq || a.ID != bridge.EventID("mars", seq) || a.Err != nil {
			t.Fatalf("ack %+v, want %d", a, seq)
		}
	}
	if out.String() != want.String() {
		t.Fatalf("output:\n%s\nwant:\n%s", out.String(), want.String())
	}
}

func TestAckOnlyAfterWrite(t *testing.T) {
	out := &writer{gate: make(chan struct{})}
	s := newSink(t, out, &writer{})
	if err := s.Publish(context.Background(), note(1)); err != nil {
		t.Fatal(err)
	}
	// The flusher is now blocked in Write (or about to be): no ack exists.
	select {
	case a := <-s.Acks():
		t.Fatalf("ack %+v before the write returned", a)
	default:
	}
	out.gate <- struct{}{}
	if a := nextAck(t, s); a.Sequence != 1 || a.Err != nil {
		t.Fatalf("ack %+v", a)
	}
	if out.String() != line(1) {
		t.Fatalf("output %q", out.String())
	}
}

func TestMultiLineCloudEventIsCompacted(t *testing.T) {
	out := &writer{}
	s := newSink(t, out, &writer{})
	n := note(1)
	n.CloudEvent = []byte("{\r\n  \"id\": \"mars@1\",\n  \"data\": {\"payload\": \"a\\nb\"}\n}")
	if err := s.Publish(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	nextAck(t, s)
	if got, want := out.String(), `{"id":"mars@1","data":{"payload":"a\nb"}}`+"\n"; got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
	empty := note(2)
	empty.CloudEvent = nil
	if err := s.Publish(context.Background(), empty); !bridge.IsPermanent(err) {
		t.Fatalf("empty CloudEvent: %v", err)
	}
}

// After a failed write the sink fails every later notification until the
// failed one is re-sent, and a line cut short is completed, not repeated.
func TestWriteFailureAndResend(t *testing.T) {
	out := &writer{}
	s := newSink(t, out, &writer{})
	ctx := context.Background()
	if err := s.Publish(ctx, note(1)); err != nil {
		t.Fatal(err)
	}
	nextAck(t, s)
	// The next write gets 10 bytes out, then fails.
	boom := errors.New("EAGAIN")
	out.setFail(func(p []byte) (int, error) { return 10, boom })
	if err := s.Publish(ctx, note(2)); err != nil {
		t.Fatal(err)
	}
	a := nextAck(t, s)
	if a.Sequence != 2 || !errors.Is(a.Err, boom) || bridge.IsPermanent(a.Err) {
		t.Fatalf("ack %+v, want a retryable failure of 2", a)
	}
	if err := s.Healthy(); !errors.Is(err, boom) {
		t.Fatalf("Healthy: %v", err)
	}
	out.setFail(nil)
	// 3 is refused until 2 is re-sent.
	if err := s.Publish(ctx, note(3)); err == nil || bridge.IsPermanent(err) {
		t.Fatalf("Publish(3) before the re-send: %v", err)
	}
	for _, seq := range []uint64{2, 3} {
		if err := s.Publish(ctx, note(seq)); err != nil {
			t.Fatal(err)
		}
	}
	for _, seq := range []uint64{2, 3} {
		if a := nextAck(t, s); a.Sequence != seq || a.Err != nil {
			t.Fatalf("ack %+v", a)
		}
	}
	if want := line(1) + line(2) + line(3); out.String() != want {
		t.Fatalf("output:\n%q\nwant\n%q", out.String(), want)
	}
	if err := s.Healthy(); err != nil {
		t.Fatalf("Healthy after recovery: %v", err)
	}
}

func TestDeadLetter(t *testing.T) {
	dl := &writer{}
	s := newSink(t, &writer{}, dl)
	ctx := context.Background()
	n := note(7)
	if err := s.DeadLetter(ctx, bridge.DeadLetter{Kind: bridge.DeadLetterRejected, Notification: n, Raw: n.CloudEvent, Reason: "too large"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ctx, bridge.DeadLetter{Kind: bridge.DeadLetterMalformed, Raw: []byte("{bad\x00"), Event: "notification", Reason: "invalid JSON"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(dl.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("dead letter output %q", dl.String())
	}
	var got []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, m)
	}
	if g := got[0]; g["msg"] != "stdout.deadletter" || g["kind"] != "rejected" || g["reason"] != "too large" || g["id"] != "mars@7" ||
		g["sequence"] != float64(7) || g["raw"] != string(n.CloudEvent) || g["level"] != "ERROR" {
		t.Fatalf("rejected: %v", g)
	}
	if g := got[1]; g["kind"] != "malformed" || g["event"] != "notification" || g["raw"] != "{bad\x00" || g["id"] != nil {
		t.Fatalf("malformed: %v", g)
	}
	dl.setFail(func([]byte) (int, error) { return 0, errors.New("EPIPE") })
	if err := s.DeadLetter(ctx, bridge.DeadLetter{Kind: bridge.DeadLetterMalformed}); err == nil || bridge.IsPermanent(err) {
		t.Fatalf("failing dead-letter write: %v", err)
	}
}

func TestCloseFlushes(t *testing.T) {
	out := &writer{gate: make(chan struct{}, 100)}
	s := stdout.New(stdout.Options{Out: out, DeadLetter: &writer{}})
	for seq := uint64(1); seq <= 3; seq++ {
		if err := s.Publish(context.Background(), note(seq)); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		out.gate <- struct{}{}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := line(1) + line(2) + line(3); out.String() != want {
		t.Fatalf("output %q", out.String())
	}
	if err := s.Publish(context.Background(), note(4)); !errors.Is(err, stdout.ErrClosed) || bridge.IsPermanent(err) {
		t.Fatalf("Publish after Close: %v", err)
	}
	// A writer that never returns: Close gives up when ctx is done.
	stuck := stdout.New(stdout.Options{Out: &writer{gate: make(chan struct{})}, DeadLetter: &writer{}})
	if err := stuck.Publish(context.Background(), note(1)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := stuck.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a stuck writer: %v", err)
	}
}

// Through the pipeline, a writer that fails at random (after writing a
// random prefix of the batch) still ends up with every line exactly once,
// in order: failures are retried, cut lines completed.
func TestPipelineExactOutputDespiteWriteErrors(t *testing.T) {
	for seed := uint64(1); seed <= 16; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed))
			out := &writer{}
			wrng := rand.New(rand.NewPCG(seed, 99)) // the flusher's own
			out.fail = func(p []byte) (int, error) {
				switch wrng.IntN(20) {
				case 0:
					return 0, errors.New("EAGAIN") // nothing written
				case 1:
					return wrng.IntN(len(p) + 1), errors.New("EIO") // a prefix written
				}
				return 0, nil
			}
			window := 1 + rng.IntN(32)
			sink := stdout.New(stdout.Options{Out: out, DeadLetter: &writer{}, MaxInFlight: window})
			store, err := checkpoint.NewMemory().Open("k")
			if err != nil {
				t.Fatal(err)
			}
			p, err := bridge.NewPipeline(sink, store, bridge.PipelineConfig{MaxInFlight: window, Backoff: func(int) time.Duration { return 0 }})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- p.Run(context.Background()) }()
			var want strings.Builder
			seq := uint64(0)
			for range 2000 {
				seq += 1 + rng.Uint64N(3)
				if err := p.Submit(context.Background(), note(seq)); err != nil {
					t.Fatal(err)
				}
				want.WriteString(line(seq))
			}
			p.CloseInput()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := sink.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != want.String() {
				t.Fatalf("output differs (%d bytes, want %d); first difference at %d", len(got), want.Len(), firstDiff(got, want.String()))
			}
			if cp, _, _ := store.Load(context.Background()); cp.Sequence != seq {
				t.Fatalf("checkpoint %d, want %d", cp.Sequence, seq)
			}
		})
	}
}

func firstDiff(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
