package aviso

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"time"

	sse "github.com/tmaxmax/go-sse"
)

// Stream is one open aviso connection whose opening frame was confirmed.
// Next must not be called concurrently with itself; Close may be called at
// any time, from any goroutine.
type Stream struct {
	// RequestID is the X-Request-ID of the response.
	RequestID string
	// Opening is the confirmed opening frame (KindConnectionEstablished or
	// KindReplayStarted); its Kind is 0 when the server sent none (see
	// Anomaly).
	Opening Frame
	// Anomaly is empty when the server opened the stream as the protocol
	// says. Otherwise it describes the departure the client tolerated: the
	// other opening frame than the one the request called for, or no
	// opening frame before the first notification. Data still flows (losing
	// nothing matters more than the letter of the protocol); the caller
	// should log it.
	Anomaly string

	pending *Frame // a frame read while waiting for the opening, returned first

	url        string
	maxEvent   int
	idleBudget time.Duration
	parent     context.Context // the caller's ctx
	ctx        context.Context // parent + our own cancellation causes
	cancel     context.CancelCauseFunc
	body       io.ReadCloser
	br         *bufio.Reader // between the body and go-sse
	idle       *time.Timer
	next       func() (sse.Event, error, bool)
	stop       func()

	mu        sync.Mutex // held by Next; serialises it with the end of Close
	err       error      // sticky terminal error
	closeOnce sync.Once
}

func newStream(parent, ctx context.Context, cancel context.CancelCauseFunc, body io.ReadCloser, url, rid string, maxEvent int, idle time.Duration) *Stream {
	s := &Stream{
		RequestID: rid, url: url, maxEvent: maxEvent, idleBudget: idle,
		parent: parent, ctx: ctx, cancel: cancel, body: body,
	}
	s.idle = time.AfterFunc(time.Hour, func() { cancel(ErrIdleTimeout) })
	s.idle.Stop()
	// go-sse's bufio.Scanner reads at most its free buffer space (4 KiB
	// unless an event is larger); the 64 KiB reader below it cuts the number
	// of body reads and syscalls about tenfold (measured with BenchmarkDecode).
	s.br = bufio.NewReaderSize(&idleReader{r: body, t: s.idle, d: idle}, 64<<10)
	s.next, s.stop = iter.Pull2(iter.Seq2[sse.Event, error](sse.Read(s.br, &sse.ReadConfig{MaxEventSize: maxEvent})))
	return s
}

// idleReader is the idle watchdog: its timer runs only while a Read waits
// for bytes, so time the consumer spends elsewhere (a blocked sink) never
// counts as server silence. When the timer fires it cancels the request
// context, which makes the pending Read fail; the cause is ErrIdleTimeout.
type idleReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (ir *idleReader) Read(p []byte) (int, error) {
	ir.t.Reset(ir.d)
	n, err := ir.r.Read(p)
	ir.t.Stop()
	return n, err
}

// Next returns the next frame. Unknown events, comments and events with empty
// data are skipped; malformed frames are returned as KindDecodeError frames
// (non-fatal). Errors are terminal and sticky:
//   - io.EOF: the body ended (a partial trailing event is discarded);
//   - ErrIdleTimeout (wrapped): no byte within the idle budget;
//   - *EventTooLargeError (wraps ErrEventTooLarge): an event exceeded
//     MaxEventSize; it carries the event's CloudEvent id when recovered;
//   - *TransportError: the read failed;
//   - the Connect ctx's error when it ends; ErrClosed after Close.
func (s *Stream) Next() (Frame, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.pending; f != nil && s.err == nil {
		s.pending = nil
		return *f, nil
	}
	for s.err == nil {
		ev, err, ok := s.next()
		switch {
		case !ok:
			s.finish(io.EOF)
		case err != nil:
			s.finish(s.mapErr(err))
		default:
			if f, ok := decodeEvent(ev.Type, ev.Data); ok {
				return f, nil
			}
		}
	}
	return Frame{}, s.err
}

// finish records the terminal error and releases the connection.
func (s *Stream) finish(err error) {
	if errors.Is(err, io.EOF) && context.Cause(s.ctx) != nil {
		err = s.mapErr(err) // cancelled at the very end: report why
	}
	s.err = err
	s.stop()
	s.idle.Stop()
	s.cancel(ErrClosed)
	s.body.Close()
}

func (s *Stream) mapErr(err error) error {
	if errors.Is(err, bufio.ErrTooLong) {
		return s.tooLarge()
	}
	switch cause := context.Cause(s.ctx); {
	case cause == nil:
	case errors.Is(cause, ErrIdleTimeout):
		return fmt.Errorf("%w (%s without a byte; stream %s, request_id %s)", ErrIdleTimeout, s.idleBudget, s.url, s.RequestID)
	case errors.Is(cause, ErrClosed), errors.Is(cause, ErrOpeningTimeout):
		return cause
	default:
		if perr := s.parent.Err(); perr != nil {
			return perr
		}
	}
	if errors.Is(err, io.EOF) {
		return err
	}
	return &TransportError{Err: err, RequestID: s.RequestID}
}

// tooLarge builds the error of an oversized event. go-sse's scanner stops
// with a full buffer, so the rest of the event is still in s.br: skim it (at
// most 2 x MaxEventSize more) up to the blank line that ends it, keeping the
// tail, and recover the last "id":"..." member from the tail.
func (s *Stream) tooLarge() error {
	e := &EventTooLargeError{Limit: s.maxEvent, RequestID: s.RequestID}
	const keep = 1 << 10
	tail := make([]byte, 0, 2*keep)
	emptyLine, prev, complete := false, byte(0), false
	for budget := 2*s.maxEvent + 64<<10; budget > 0; budget-- {
		c, err := s.br.ReadByte()
		if err != nil {
			break
		}
		if len(tail) == cap(tail) {
			tail = append(tail[:0], tail[keep:]...)
		}
		tail = append(tail, c)
		if c == '\n' && prev == '\r' { // second half of CRLF
			prev = c
			continue
		}
		prev = c
		if c != '\n' && c != '\r' {
			emptyLine = false
			continue
		}
		if emptyLine {
			complete = true
			break
		}
		emptyLine = true
	}
	e.Tail = tail[max(0, len(tail)-keep):]
	// Trust an id only when the whole event was skimmed and the id is a
	// top-level member followed by nothing but string members and the
	// closing brace (aviso writes id after data, keys in order): an id-like
	// text inside the payload must never move the cursor.
	if !complete {
		return e
	}
	if i := bytes.LastIndex(tail, []byte(`,"id":"`)); i >= 0 {
		id := tail[i+len(`,"id":"`):]
		if j := bytes.IndexByte(id, '"'); j >= 0 && onlyStringMembers(bytes.TrimRight(id[j+1:], "\r\n")) {
			e.ID = string(id[:j])
			if typ, seq, err := ParseEventID(e.ID); err == nil {
				e.EventType, e.Sequence, e.HasSequence = typ, seq, true
			}
		}
	}
	return e
}

// onlyStringMembers reports whether b is `(,"key":"string")*}`: the end of
// a JSON object whose remaining members are all strings.
func onlyStringMembers(b []byte) bool {
	str := func(b []byte) ([]byte, bool) { // b starts after an opening quote
		for i := 0; i < len(b); i++ {
			switch b[i] {
			case '\\':
				i++
			case '"':
				return b[i+1:], true
			}
		}
		return nil, false
	}
	for {
		if len(b) == 1 && b[0] == '}' {
			return true
		}
		if len(b) < 2 || b[0] != ',' || b[1] != '"' {
			return false
		}
		rest, ok := str(b[2:])
		if !ok || len(rest) < 2 || rest[0] != ':' || rest[1] != '"' {
			return false
		}
		if b, ok = str(rest[2:]); !ok {
			return false
		}
	}
}

// Close releases the connection. It is safe to call concurrently with a
// blocked Next, which then returns ErrClosed, and to call more than once.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		s.cancel(ErrClosed) // unblocks a pending body Read
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.err == nil {
			s.finish(ErrClosed)
		}
	})
	return nil
}
