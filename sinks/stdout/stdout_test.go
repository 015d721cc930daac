package stdout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
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

func note(seq uint64) *bridge.Notification { return bridgetest.Notification(seq) }

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

// lines returns the complete lines of out.
func lines(out string) []string {
	parts := strings.Split(out, "\n")
	return parts[:len(parts)-1]
}

// The stdout sink meets the bridge.Sink contract: one line per
// notification, the whole CloudEvent, acknowledged in order.
func TestSinkSuite(t *testing.T) {
	bridgetest.SinkSuite(t, bridgetest.SinkSuiteConfig{
		Structured: true,
		New: func(t *testing.T) bridgetest.SinkUnderTest {
			out, dl := &writer{}, &writer{}
			s := stdout.New(stdout.Options{Out: out, DeadLetter: dl, MaxInFlight: 64})
			return bridgetest.SinkUnderTest{
				Sink: s,
				Stored: func(t *testing.T) []bridgetest.Message {
					var msgs []bridgetest.Message
					for _, l := range lines(out.String()) {
						msgs = append(msgs, bridgetest.Message{Body: []byte(l)})
					}
					return msgs
				},
				DeadLettered: func(t *testing.T) []bridgetest.Message {
					var msgs []bridgetest.Message
					for _, l := range lines(dl.String()) {
						var rec struct{ Raw string }
						if err := json.Unmarshal([]byte(l), &rec); err != nil {
							t.Fatalf("dead-letter line %q: %v", l, err)
						}
						msgs = append(msgs, bridgetest.Message{Body: []byte(rec.Raw)})
					}
					return msgs
				},
			}
		},
	})
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

// consumerLines reads out the way the package documentation tells a
// consumer to: a last line without '\n' is dropped; every other line must
// be one whole CloudEvent JSON. It returns the ids of those lines.
func consumerLines(t *testing.T, out string) []string {
	t.Helper()
	parts := strings.Split(out, "\n")
	var ids []string
	for i, l := range parts[:len(parts)-1] {
		var ce struct{ ID string }
		if err := json.Unmarshal([]byte(l), &ce); err != nil || ce.ID == "" {
			t.Fatalf("output line %d is not a CloudEvent (%v): %q", i, err, l)
		}
		ids = append(ids, ce.ID)
	}
	return ids
}

// blockingWriter is a pipe whose reader stalls: its first Write puts cut
// bytes out, signals entered, and blocks until release is closed; then it
// puts out the rest (the reader came back), or fails with failAfter.
type blockingWriter struct {
	writer
	cut       int
	entered   chan struct{}
	release   chan struct{}
	failAfter error
	once      sync.Once
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	first := false
	w.once.Do(func() { first = true })
	if !first {
		return w.writer.Write(p)
	}
	n := min(w.cut, len(p))
	_, _ = w.writer.Write(p[:n]) // the cut the test wants; its result is the caller's
	close(w.entered)
	<-w.release
	if w.failAfter != nil {
		return n, w.failAfter
	}
	m, err := w.writer.Write(p[n:])
	return n + m, err
}

// A stop while a write is blocked: Close returns when its ctx ends, and no
// notification of the blocked write or queued behind it is ever reported
// as acknowledged, even when the write returns later. The output a
// consumer keeps holds only whole lines.
func TestCloseWithBlockedWrite(t *testing.T) {
	tests := []struct {
		name      string
		failAfter error  // how the blocked write ends
		wantOut   string // output after it ended
	}{
		{name: "reader comes back", wantOut: line(1)},
		// The cut line is completed, best effort, when the writer takes it.
		{name: "write fails", failAfter: errors.New("EAGAIN"), wantOut: line(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &blockingWriter{cut: 20, entered: make(chan struct{}), release: make(chan struct{}), failAfter: tt.failAfter}
			s := stdout.New(stdout.Options{Out: out, DeadLetter: &writer{}, MaxInFlight: 8})
			ctx := context.Background()
			if err := s.Publish(ctx, note(1)); err != nil {
				t.Fatal(err)
			}
			<-out.entered // line 1 is cut after 20 bytes; the write blocks
			for seq := uint64(2); seq <= 3; seq++ {
				if err := s.Publish(ctx, note(seq)); err != nil {
					t.Fatal(err)
				}
			}
			cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			closed := make(chan error, 1)
			go func() { closed <- s.Close(cctx) }()
			select {
			case err := <-closed:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Close = %v, want the context's deadline", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not return after its context ended while a write was blocked")
			}
			close(out.release) // the blocked write returns now
			for seq := uint64(1); seq <= 3; seq++ {
				if a := nextAck(t, s); a.Sequence != seq || !errors.Is(a.Err, stdout.ErrWriteAbandoned) || bridge.IsPermanent(a.Err) {
					t.Fatalf("ack %+v, want a retryable ErrWriteAbandoned for %d", a, seq)
				}
			}
			waitOutput(t, &out.writer, tt.wantOut)
			if ids := consumerLines(t, out.String()); len(ids) > 1 {
				t.Fatalf("lines %v written after Close gave up", ids)
			}
		})
	}
}

// waitOutput polls w until it holds want.
func waitOutput(t *testing.T, w *writer, want string) {
	t.Helper()
	bridgetest.Eventually(t, 10*time.Second, fmt.Sprintf("output %q", want), func() bool { return w.String() == want })
}

// A line a failed write cut short never becomes a line of its own: it is
// completed with its own bytes before anything else (also when the stop
// comes before its re-send), and when the writer keeps
// failing the output ends with the fragment and no '\n', which the
// documented consumer rule drops.
func TestCutLineIsCompletedOrLeftLast(t *testing.T) {
	tests := []struct {
		name string
		// after line 2 was cut, before Close
		then    func(t *testing.T, s *stdout.Sink, out *writer)
		wantOut string
		wantIDs []string
	}{
		{
			name:    "stop before the re-send",
			then:    func(*testing.T, *stdout.Sink, *writer) {},
			wantOut: line(1) + line(2),
			wantIDs: []string{"mars@1", "mars@2"},
		},
		{
			name: "writer keeps failing",
			then: func(_ *testing.T, _ *stdout.Sink, out *writer) {
				out.setFail(func([]byte) (int, error) { return 0, errors.New("EPIPE") })
			},
			wantOut: line(1) + line(2)[:10],
			wantIDs: []string{"mars@1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &writer{}
			s := stdout.New(stdout.Options{Out: out, DeadLetter: &writer{}, MaxInFlight: 8})
			ctx := context.Background()
			if err := s.Publish(ctx, note(1)); err != nil {
				t.Fatal(err)
			}
			nextAck(t, s)
			out.setFail(func([]byte) (int, error) { return 10, errors.New("EAGAIN") })
			if err := s.Publish(ctx, note(2)); err != nil {
				t.Fatal(err)
			}
			if a := nextAck(t, s); a.Sequence != 2 || a.Err == nil {
				t.Fatalf("ack %+v, want the failure of 2", a)
			}
			out.setFail(nil)
			tt.then(t, s, out)
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.wantOut {
				t.Fatalf("output\n%q\nwant\n%q", out.String(), tt.wantOut)
			}
			if ids := consumerLines(t, out.String()); strings.Join(ids, ",") != strings.Join(tt.wantIDs, ",") {
				t.Fatalf("consumer reads %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

// With a real pipe whose reader stalls, a line larger than the pipe's
// buffer cannot be written whole: the stop leaves its first part without
// '\n' (and never acknowledges it), and a consumer that drops a last line
// without '\n' reads exactly the lines written before.
func TestStalledPipeReaderAtStop(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	s := stdout.New(stdout.Options{Out: w, DeadLetter: &writer{}, MaxInFlight: 8})
	ctx := context.Background()
	if err := s.Publish(ctx, note(1)); err != nil {
		t.Fatal(err)
	}
	if a := nextAck(t, s); a.Err != nil {
		t.Fatal(a.Err)
	}
	big := note(2)
	big.CloudEvent = []byte(`{"id":"mars@2","data":"` + strings.Repeat("x", 1<<20) + `"}`) // > any pipe buffer
	if err := s.Publish(ctx, big); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.Close(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want the context's deadline", err)
	}
	w.Close() // the process exits: the blocked write ends
	if a := nextAck(t, s); a.Sequence != 2 || a.Err == nil {
		t.Fatalf("ack %+v, want no acknowledgement of 2", a)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(got), line(1)) || len(got) == len(line(1)) || got[len(got)-1] == '\n' {
		t.Fatalf("output (%d bytes) should be line 1 and a fragment of line 2 without '\\n'", len(got))
	}
	if ids := consumerLines(t, string(got)); strings.Join(ids, ",") != "mars@1" {
		t.Fatalf("consumer reads %v, want [mars@1]", ids)
	}
}
