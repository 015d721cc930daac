// Package stdout is the stdout sink (SINK=stdout): one line per
// notification, the whole CloudEvent JSON exactly as received, written to
// standard output. A notification is acknowledged only after the write that
// carries its line has returned successfully.
//
// What a consumer reads: every line ends with '\n' and is one whole
// CloudEvent JSON. A write cut short by an error is completed with the rest
// of the same line before anything else is written, so a fragment is never
// followed by '\n' or by another line. The one exception is the end of the
// output: when the process stops while a write is blocked (a stalled
// reader: a line larger than the pipe's free space cannot be written
// atomically) or keeps failing, the output can end with the first part of
// a line and no '\n'. A consumer must drop a last line that does not end
// with '\n'. That notification was never acknowledged, so the checkpoint
// does not include it and the next run writes it again in full.
//
// Data flow: bridge.Pipeline -> Sink.Publish -> (flusher) io.Writer ->
// Sink.Acks -> bridge.Pipeline. Lines published while a write is in
// progress are written together by the next write (group commit), so the
// sink keeps up with the pipeline without one write per notification.
package stdout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// ErrClosed is returned by Publish and DeadLetter after Close. It is
// retryable: a closed sink never rejects a notification permanently.
var ErrClosed = errors.New("stdout sink: closed")

// ErrWriteAbandoned is the Ack error of every notification still queued or
// being written when Close's context ended: even if a blocked write
// returns later, those notifications are never reported as acknowledged.
var ErrWriteAbandoned = errors.New("stdout sink: Close gave up before the write returned")

// Options configures a Sink.
type Options struct {
	// Out receives the notification lines. Default os.Stdout.
	Out io.Writer
	// DeadLetter receives dead letters as JSON lines. Default os.Stderr
	// (beside the logs, shaped like a log record; stdout belongs to the
	// notifications).
	DeadLetter io.Writer
	// MaxInFlight is BRIDGE_MAX_IN_FLIGHT: the capacity of the Acks
	// channel. Default 256.
	MaxInFlight int
	// Now stamps dead letters. Default time.Now.
	Now func() time.Time
}

// Sink is the stdout bridge.Sink.
type Sink struct {
	out, dlOut io.Writer
	now        func() time.Time
	acks       chan bridge.Ack

	mu      sync.Mutex
	buf     []byte       // lines not yet handed to the flusher
	lines   []lineRef    // their notifications, in order
	spare   []byte       // the flusher's previous buffer, reused
	failed  bool         // a write failed; fail fast until the re-send
	failSeq uint64       // the first notification of the failed write
	lastErr error        // the last write error (Healthy)
	partial *partialLine // a line cut by a short write
	closed  bool
	// abandoned: Close's context ended before the flusher finished; the
	// flusher acknowledges nothing more and stops after its current write.
	abandoned bool
	wake      chan struct{}
	done      chan struct{}

	dlMu sync.Mutex
}

type lineRef struct {
	seq uint64
	id  string
	end int // offset in buf just after the line's '\n'
	// completion: the bytes are the rest of a line a failed write cut
	// short, not the whole line.
	completion bool
}

// partialLine is the unwritten rest of a line a failed write cut short.
type partialLine struct {
	seq  uint64
	rest []byte
}

var (
	_ bridge.Sink           = (*Sink)(nil)
	_ bridge.HealthReporter = (*Sink)(nil)
)

// New returns a sink and starts its flusher; Close stops it.
func New(opts Options) *Sink {
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.DeadLetter == nil {
		opts.DeadLetter = os.Stderr
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = bridge.DefaultMaxInFlight
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Sink{
		out:   opts.Out,
		dlOut: opts.DeadLetter,
		now:   opts.Now,
		acks:  make(chan bridge.Ack, opts.MaxInFlight),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	go s.flusher()
	return s
}

// Publish queues n's line for the next write. It fails fast (retryable)
// after a failed write until the pipeline re-sends the first notification
// of that write, so that the output stays in receipt order.
func (s *Sink) Publish(_ context.Context, n *bridge.Notification) error {
	if len(n.CloudEvent) == 0 {
		return bridge.Permanent(fmt.Errorf("stdout sink: notification %s has no CloudEvent body", n.ID))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.failed {
		if n.Sequence > s.failSeq {
			return fmt.Errorf("stdout sink: not writing %s before the re-send of sequence %d: %w", n.ID, s.failSeq, s.lastErr)
		}
		s.failed = false
	}
	if p := s.partial; p != nil {
		s.partial = nil
		// Complete the line the failed write cut short (with its own bytes
		// even when n is another notification: a '\n' after the fragment
		// would make it a line that is not JSON).
		s.buf = append(s.buf, p.rest...)
		if p.seq == n.Sequence {
			s.queued(n, true)
			return nil
		}
	}
	s.buf = appendLine(s.buf, n.CloudEvent)
	s.queued(n, false)
	return nil
}

func (s *Sink) queued(n *bridge.Notification, completion bool) {
	s.lines = append(s.lines, lineRef{seq: n.Sequence, id: n.ID, end: len(s.buf), completion: completion})
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// appendLine appends ce and a newline. JSON as received is kept byte for
// byte; only a CloudEvent spread over several lines (a multi-line SSE data
// field) is compacted, since a raw newline can only be insignificant
// whitespace in valid JSON.
func appendLine(buf, ce []byte) []byte {
	if bytes.ContainsAny(ce, "\r\n") {
		var c bytes.Buffer
		if json.Compact(&c, ce) == nil {
			ce = c.Bytes()
		} else {
			ce = bytes.ReplaceAll(bytes.ReplaceAll(ce, []byte("\n"), []byte(" ")), []byte("\r"), []byte(" "))
		}
	}
	buf = append(buf, ce...)
	return append(buf, '\n')
}

// flusher writes queued lines and acknowledges them.
func (s *Sink) flusher() {
	defer close(s.done)
	var lines []lineRef
	for {
		<-s.wake // closed by Close: then loop until everything is written
		s.mu.Lock()
		batch := s.buf
		s.buf, s.spare = s.spare[:0], nil
		lines, s.lines = s.lines, lines[:0]
		closing, abandoned := s.closed, s.abandoned
		s.mu.Unlock()
		if abandoned {
			s.abandon(batch, lines, 0)
			return
		}

		if len(batch) > 0 {
			n, err := s.out.Write(batch)
			if err == nil && n < len(batch) {
				err = io.ErrShortWrite
			}
			s.mu.Lock()
			abandoned := s.abandoned
			s.mu.Unlock()
			if abandoned {
				s.abandon(batch, lines, n)
				return
			}
			if err != nil {
				s.failWrite(batch, lines, n, err)
			} else {
				for _, l := range lines {
					s.acks <- bridge.Ack{Sequence: l.seq, ID: l.id}
				}
			}
		}
		s.mu.Lock()
		s.spare = batch[:0]
		idle := len(s.lines) == 0
		if closing && idle {
			p := s.partial
			s.partial = nil
			s.mu.Unlock()
			if p != nil {
				// Complete the cut line: the output ends with whole lines
				// whenever the writer lets it.
				_, _ = s.out.Write(p.rest)
			}
			return
		}
		s.mu.Unlock()
	}
}

// abandon ends the flusher after Close gave up: the write of batch (lines)
// returned with written bytes out. Every notification of the batch and
// everything queued is acknowledged with ErrWriteAbandoned, written or not;
// a line the write cut is completed, best effort, so that the output does
// not end with a fragment when the writer recovers.
func (s *Sink) abandon(batch []byte, lines []lineRef, written int) {
	s.mu.Lock()
	var rest []byte
	start := 0
	for _, l := range lines {
		if l.end > written {
			switch {
			case written > start:
				rest = batch[written:l.end]
			case written == start && l.completion:
				rest = batch[start:l.end]
			}
			break
		}
		start = l.end
	}
	if rest == nil && s.partial != nil {
		rest = s.partial.rest
	}
	queued := s.lines
	s.lines, s.buf, s.partial = nil, nil, nil
	s.mu.Unlock()
	if len(rest) > 0 {
		_, _ = s.out.Write(rest)
	}
	for _, ls := range [][]lineRef{lines, queued} {
		for _, l := range ls {
			s.acks <- bridge.Ack{Sequence: l.seq, ID: l.id, Err: ErrWriteAbandoned}
		}
	}
}

// failWrite acknowledges the lines the failed write completed and fails the
// rest, with everything queued meanwhile.
func (s *Sink) failWrite(batch []byte, lines []lineRef, written int, err error) {
	werr := fmt.Errorf("stdout sink: write: %w", err)
	ok := 0
	for ok < len(lines) && lines[ok].end <= written {
		ok++
	}
	s.mu.Lock()
	start := 0
	if ok > 0 {
		start = lines[ok-1].end
	}
	if ok < len(lines) {
		// The first failed line: keep what of it is not on the output
		// yet, if any of it (or of the line it completes) is.
		switch l := lines[ok]; {
		case written > start:
			s.partial = &partialLine{seq: l.seq, rest: bytes.Clone(batch[written:l.end])}
		case l.completion:
			s.partial = &partialLine{seq: l.seq, rest: bytes.Clone(batch[start:l.end])}
		}
	}
	failed := append(lines[ok:len(lines):len(lines)], s.lines...)
	s.lines = s.lines[:0]
	s.buf = s.buf[:0]
	if len(failed) > 0 {
		s.failed, s.failSeq = true, failed[0].seq
	}
	s.lastErr = werr
	s.mu.Unlock()
	for _, l := range lines[:ok] {
		s.acks <- bridge.Ack{Sequence: l.seq, ID: l.id}
	}
	for _, l := range failed {
		s.acks <- bridge.Ack{Sequence: l.seq, ID: l.id, Err: werr}
	}
}

// Acks returns the acknowledgements, in Publish order.
func (s *Sink) Acks() <-chan bridge.Ack { return s.acks }

// deadLetterLine is what DeadLetter writes, shaped like a slog JSON record
// so that it sits well among the logs on stderr.
type deadLetterLine struct {
	Time     time.Time `json:"time"`
	Level    string    `json:"level"`
	Msg      string    `json:"msg"`
	Kind     string    `json:"kind"`
	Reason   string    `json:"reason"`
	ID       string    `json:"id,omitempty"`
	Sequence *uint64   `json:"sequence,omitempty"`
	Event    string    `json:"event,omitempty"`
	Raw      string    `json:"raw"`
}

// DeadLetter writes dl as one JSON line to the dead-letter writer
// ({"msg":"stdout.deadletter","kind":...,"reason":...,"id":...,"raw":...};
// raw is the CloudEvent or frame text). Write errors are retryable.
func (s *Sink) DeadLetter(_ context.Context, dl bridge.DeadLetter) error {
	rec := deadLetterLine{Time: s.now().UTC(), Level: "ERROR", Msg: "stdout.deadletter", Kind: string(dl.Kind), Reason: dl.Reason, Event: dl.Event, Raw: string(dl.Raw)}
	if n := dl.Notification; n != nil {
		seq := n.Sequence
		rec.ID, rec.Sequence = n.ID, &seq
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return bridge.Permanent(fmt.Errorf("stdout sink: dead letter: %w", err))
	}
	b = append(b, '\n')
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	s.dlMu.Lock()
	defer s.dlMu.Unlock()
	if _, err := s.dlOut.Write(b); err != nil {
		return fmt.Errorf("stdout sink: dead letter write: %w", err)
	}
	return nil
}

// Healthy reports the last write error while the sink is failing.
func (s *Sink) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed {
		return s.lastErr
	}
	return nil
}

// Close writes what is queued, acknowledges it, and stops the flusher; it
// waits until ctx is done, also when a write is blocked (a stalled reader).
// When ctx ends first, Close returns at once and every notification not yet
// acknowledged is acknowledged with ErrWriteAbandoned, never as stored,
// even if the blocked write returns later. Publish fails after Close. The
// Acks channel is not closed.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.wake)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	s.abandoned = true
	s.mu.Unlock()
	select {
	case <-s.done: // finished meanwhile: everything was acknowledged
		return nil
	default:
	}
	return fmt.Errorf("stdout sink: close: %w", ctx.Err())
}
