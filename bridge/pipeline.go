package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Pipeline couples the supervisor to a Sink and a Store: an ordered,
// bounded window of notifications handed to the sink, a watermark that
// advances over acknowledged notifications in receipt order, and periodic
// commits of that watermark.
//
// One goroutine (Run) owns the window; Submit hands notifications to it over
// a channel, and acknowledgements arrive on Sink.Acks(). See
// docs/pipeline.md for the design.
type Pipeline struct {
	sink  Sink
	store Store
	cfg   PipelineConfig
	log   *slog.Logger
	m     *Metrics
	now   func() time.Time

	rejFail, rejDLQ, rejSkip Counter

	// Submit side.
	subMu    sync.Mutex
	in       chan Notification
	inClosed bool
	lastSeq  uint64
	haveLast bool

	stopped  chan struct{} // closed when Run stops taking input for good
	stopOnce sync.Once
	started  atomic.Bool

	// Byte bound, shared by Submit (adds, under subMu) and Run (subtracts
	// as the watermark advances); freed wakes a Submit waiting for room.
	bytes atomic.Int64
	freed chan struct{}

	// Drain requests, taken by Run.
	drainMu   sync.Mutex
	drainReqs []context.Context
	drainSig  chan struct{}

	// Status, written by Run.
	stInFlight   atomic.Int64
	stCheckpoint atomic.Pointer[Checkpoint]
	stLastAck    atomic.Int64 // unix nanoseconds, 0 = never
	stOldest     atomic.Int64 // unix nanoseconds, 0 = window empty
	stAcked      atomic.Pointer[Checkpoint]
	stCommitFail atomic.Pointer[commitFailure]
}

// NewPipeline validates cfg and returns a pipeline; call Run to start it.
// The pipeline neither closes the sink nor the store.
func NewPipeline(sink Sink, store Store, cfg PipelineConfig) (*Pipeline, error) {
	if sink == nil || store == nil {
		return nil, errors.New("bridge: NewPipeline needs a sink and a store")
	}
	if sink.Acks() == nil {
		return nil, errors.New("bridge: the sink's Acks channel is nil")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Pipeline{
		sink:     sink,
		store:    store,
		cfg:      cfg,
		log:      cfg.Logger,
		m:        cfg.Metrics,
		now:      cfg.Now,
		rejFail:  cfg.Metrics.NotificationsRejected(string(RejectFail)),
		rejDLQ:   cfg.Metrics.NotificationsRejected(string(RejectDLQ)),
		rejSkip:  cfg.Metrics.NotificationsRejected(string(RejectSkip)),
		in:       make(chan Notification, inputBuffer(cfg.MaxInFlight)),
		stopped:  make(chan struct{}),
		freed:    make(chan struct{}, 1),
		drainSig: make(chan struct{}, 1),
	}
	if cfg.Start != nil {
		p.lastSeq, p.haveLast = cfg.Start.Sequence, true
		p.stCheckpoint.Store(cfg.Start)
		p.stAcked.Store(cfg.Start)
	}
	return p, nil
}

// inputBuffer is the capacity of the Submit channel. A small buffer lets
// Run take notifications in batches; it is not part of the window (what is
// buffered there is not yet handed to the sink). A graceful drain still
// publishes what it holds; a crash loses it like anything not yet
// committed, to be read again from aviso after the restart.
func inputBuffer(maxInFlight int) int { return min(maxInFlight, 32) }

// NotificationSize is what n counts against MaxInFlightBytes: the memory a
// notification in flight holds. That is its CloudEvent as decoded (Data and
// Identifier are parts of it; they are counted instead when larger, as in a
// notification built without its CloudEvent), and once more for the copy
// the sink makes to send it (the stdout line, the message body, the
// record), which it keeps until the acknowledgement. Measured with the
// stdout sink: counting the notification once let 64 MiB of them reach
// 315-417 MiB of peak RSS behind a stalled reader; counting both copies,
// about 180 MiB (internal/e2ebench.Stalled).
func NotificationSize(n *Notification) int64 {
	return 2 * int64(max(len(n.CloudEvent), len(n.Data)+len(n.Identifier)))
}

// Submit hands n to the pipeline. It copies *n (not the byte slices it
// aliases: they must stay unmodified until the notification is
// acknowledged). It blocks while the window is full, or while n would
// take the notifications submitted and not yet acknowledged past
// MaxInFlightBytes (unless none are: a larger notification passes alone),
// and returns
//   - an error wrapping ErrOutOfOrder when n.Sequence is not greater than
//     the previous submitted sequence (or the start checkpoint): a
//     supervisor bug; n is not taken;
//   - ErrInputClosed after CloseInput;
//   - ErrStopped promptly once the pipeline has stopped taking input;
//   - ctx.Err() when ctx is done first.
//
// Submit is safe for concurrent use, but order is only meaningful from one
// goroutine.
func (p *Pipeline) Submit(ctx context.Context, n *Notification) error {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	if p.inClosed {
		return ErrInputClosed
	}
	if p.haveLast && n.Sequence <= p.lastSeq {
		return fmt.Errorf("%w: %s (sequence %d) submitted after sequence %d", ErrOutOfOrder, n.ID, n.Sequence, p.lastSeq)
	}
	select {
	case <-p.stopped:
		return ErrStopped
	default:
	}
	// Only Submit adds to p.bytes (under subMu) and Run only subtracts, so
	// room seen here stays room.
	size := NotificationSize(n)
	for {
		used := p.bytes.Load()
		if used == 0 || used+size <= p.cfg.MaxInFlightBytes {
			break
		}
		select {
		case <-p.freed:
		case <-p.stopped:
			return ErrStopped
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.bytes.Add(size)
	select {
	case p.in <- *n:
	case <-p.stopped:
		p.release(size)
		return ErrStopped
	case <-ctx.Done():
		p.release(size)
		return ctx.Err()
	}
	p.lastSeq, p.haveLast = n.Sequence, true
	return nil
}

// release returns size bytes to the byte bound and wakes a waiting Submit.
func (p *Pipeline) release(size int64) {
	p.bytes.Add(-size)
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// Drain makes Run stop taking input (Submit returns ErrStopped) and drain
// the window until it is empty or ctx is done, then make the final commit
// and return. ctx's deadline is the deadline of the drain and the final
// commit together: the drain ends a little before it (a fifth of the time
// left, at most 1s), so that the final commit of the acknowledged prefix
// fits; Run returns by the deadline even when the sink stalls (unless a
// Store.Commit ignores its context). Without a deadline, the drain ends
// when ctx is done and the final commit gets CommitTimeout. Drain does not
// wait; Run's return says that the pipeline stopped. Called more than once,
// or together with the cancellation of Run's context (which drains for
// ShutdownTimeout), the earliest deadline applies. A ctx cancelled before
// its deadline (a second signal) ends the drain at once; the final commit
// is still tried until the deadline.
func (p *Pipeline) Drain(ctx context.Context) {
	p.drainMu.Lock()
	p.drainReqs = append(p.drainReqs, ctx)
	p.drainMu.Unlock()
	select {
	case p.drainSig <- struct{}{}:
	default:
	}
}

// CloseInput says that no more notifications will be submitted (a
// replay-only run reached the end of the stream). Run then drains the
// window with no time limit (still honouring its context), commits, and
// returns nil. Idempotent.
func (p *Pipeline) CloseInput() {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	if !p.inClosed {
		p.inClosed = true
		close(p.in)
	}
}

// Run moves notifications from Submit to the sink and commits the
// acknowledged position until one of:
//   - ctx is cancelled: stop taking input, wait for the window's
//     acknowledgements (retrying failed publishes) and commit, all within
//     ShutdownTimeout from the cancellation, return nil;
//   - Drain was called: the same, within the deadline of Drain's context;
//   - CloseInput was called: drain the whole window with no time limit
//     (ctx cancellation or Drain switches to the timed drain above), commit,
//     return nil;
//   - a fatal error: a permanent rejection under RejectFail (the error wraps
//     a *RejectedError), a permanent dead-letter failure under RejectDLQ, a
//     sink contract violation (wraps ErrSinkContract), or a store error
//     wrapping ErrKeyHeld. Run commits what is safely acknowledged (except
//     after ErrKeyHeld) and returns the error.
//
// If the final commit fails, Run returns an error wrapping the store's
// error (joined with any fatal error). Run may be called once.
func (p *Pipeline) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("bridge: Pipeline.Run called twice")
	}
	r := newRunner(ctx, p)
	defer p.stop()
	return r.run()
}

func (p *Pipeline) stop() { p.stopOnce.Do(func() { close(p.stopped) }) }

// DeadLetter publishes dl to the sink's dead-letter destination (the
// supervisor uses it for malformed frames), retrying retryable failures with
// backoff until ctx is done. It returns nil once the sink acknowledged it,
// an error wrapping the sink's error when that is permanent, or one wrapping
// ctx.Err(). Safe for concurrent use with Run if the sink's DeadLetter is.
func (p *Pipeline) DeadLetter(ctx context.Context, dl DeadLetter) error {
	return p.deadLetter(ctx, dl)
}

func (p *Pipeline) deadLetter(ctx context.Context, dl DeadLetter) error {
	what := dl.Event
	if dl.Notification != nil {
		what = dl.Notification.ID
	}
	interrupted, err := p.retry(ctx, func(int) (bool, error) {
		err := p.sink.DeadLetter(ctx, dl)
		if err == nil {
			p.m.DeadLettered.Inc()
			return false, nil
		}
		if ctx.Err() != nil {
			return false, err
		}
		p.m.SinkErrors.Inc()
		if IsPermanent(err) {
			return false, fmt.Errorf("bridge: dead-letter %s %q rejected: %w", dl.Kind, what, err)
		}
		return true, err
	}, func(attempt int, d time.Duration, err error) {
		p.log.Warn("bridge.deadletter.retry", "kind", string(dl.Kind), "id", what, "attempt", attempt, "backoff", d.String(), "error", err.Error())
	})
	if err != nil && (interrupted || ctx.Err() != nil) {
		return fmt.Errorf("bridge: dead-letter %s %q: %w (last error: %w)", dl.Kind, what, ctx.Err(), err)
	}
	return err
}

// retry calls op with attempt 1, 2, ... until it returns again == false,
// and returns op's error. Between attempts it calls onRetry, then pauses
// Backoff(attempt); when ctx ends during the pause it returns
// interrupted == true and op's last error. It is the one retry loop of
// the pipeline's blocking calls (dead letters, the final commit); the
// window's own retries run on Run's select loop.
func (p *Pipeline) retry(ctx context.Context, op func(attempt int) (again bool, err error), onRetry func(attempt int, d time.Duration, err error)) (interrupted bool, err error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for attempt := 1; ; attempt++ {
		again, err := op(attempt)
		if !again {
			return false, err
		}
		d := p.cfg.Backoff(attempt)
		onRetry(attempt, d, err)
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return true, err
		}
	}
}
