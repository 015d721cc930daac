package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of PipelineConfig (interface.md section 2).
const (
	DefaultMaxInFlight        = 256
	DefaultCheckpointInterval = time.Second
	DefaultShutdownTimeout    = 20 * time.Second
	DefaultCommitTimeout      = 5 * time.Second
)

var (
	// ErrInputClosed is returned by Submit after CloseInput.
	ErrInputClosed = errors.New("bridge: pipeline input is closed")
	// ErrStopped is returned by Submit once the pipeline has stopped taking
	// input (its context was cancelled, it failed, or Run returned). Run's
	// return value says why.
	ErrStopped = errors.New("bridge: pipeline stopped")
	// ErrOutOfOrder is wrapped by Submit when a sequence is not greater than
	// the previous one (or than the start checkpoint).
	ErrOutOfOrder = errors.New("bridge: notification sequences must be strictly increasing")
	// ErrSinkContract is wrapped by Run's error when the sink broke the Sink
	// contract (an Ack for a notification that is not the next one expected).
	ErrSinkContract = errors.New("bridge: sink broke the acknowledgement contract")
)

// RejectedError is a notification the sink rejected permanently while
// BRIDGE_ON_REJECT=fail: Run returns an error wrapping it. The committed
// checkpoint stays before Sequence.
type RejectedError struct {
	ID       string
	Sequence uint64
	// Err is the sink's error (a *PermanentError).
	Err error
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("sink rejected notification %s (sequence %d) permanently: %v", e.ID, e.Sequence, e.Err)
}

func (e *RejectedError) Unwrap() error { return e.Err }

// PipelineConfig configures a Pipeline. The zero value of every field means
// its default.
type PipelineConfig struct {
	// MaxInFlight is BRIDGE_MAX_IN_FLIGHT: the most notifications in the
	// window (received and not yet acknowledged). Build the sink with the same
	// value so that its Acks buffer holds a full window. Default 256.
	MaxInFlight int
	// CheckpointInterval is CHECKPOINT_INTERVAL: the longest an advanced
	// position waits before it is committed. Default 1s.
	CheckpointInterval time.Duration
	// ShutdownTimeout is BRIDGE_SHUTDOWN_TIMEOUT: after the Run context is
	// cancelled, how long to wait for in-flight acknowledgements. Default 20s.
	ShutdownTimeout time.Duration
	// CommitTimeout bounds the final commit made when Run stops (it runs on a
	// context detached from Run's). Default 5s.
	CommitTimeout time.Duration
	// OnReject is BRIDGE_ON_REJECT. Default RejectFail.
	OnReject RejectPolicy
	// Start is the checkpoint loaded from the store (nil when none). Nothing
	// at or below it is ever committed, and Submit refuses sequences at or
	// below it.
	Start *Checkpoint
	// Backoff returns the pause before retry number attempt (1, 2, ...)
	// after a retryable sink, dead-letter or final-commit failure. It is
	// called from Run and from DeadLetter, so it must be safe for concurrent
	// use. Default DefaultBackoff.
	Backoff func(attempt int) time.Duration
	// Logger defaults to a logger that discards.
	Logger *slog.Logger
	// Metrics defaults to NopMetrics().
	Metrics *Metrics
	// Now defaults to time.Now.
	Now func() time.Time
}

// DefaultBackoff is exponential backoff with jitter: 100 ms doubling per
// attempt up to 10 s, each pause drawn uniformly from [d/2, d].
func DefaultBackoff(attempt int) time.Duration {
	const base, limit = 100 * time.Millisecond, 10 * time.Second
	d := limit
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 8 {
		d = min(base<<(attempt-1), limit)
	}
	return d/2 + rand.N(d/2+1)
}

// Status is a snapshot of the pipeline for readiness checks.
type Status struct {
	// At is when the snapshot was taken.
	At time.Time
	// InFlight is the number of notifications in the window: received by
	// Run and not yet acknowledged.
	InFlight int
	// Checkpoint is the last committed position (the start checkpoint until
	// the first commit); CheckpointFound is false when there is none.
	Checkpoint      Checkpoint
	CheckpointFound bool
	// LastAck is when the position last advanced (zero: never).
	LastAck time.Time
	// OldestUnacked is when the oldest notification in the window entered
	// it (zero when the window is empty).
	OldestUnacked time.Time
	// Stopped is true once the pipeline no longer takes input.
	Stopped bool
}

// Stalled reports whether notifications are in flight and nothing was
// acknowledged for readyStall (BRIDGE_READY_STALL): neither an ack nor the
// oldest unacknowledged notification is more recent than At-readyStall. A
// notification that has just arrived after an idle period is not a stall.
func (s Status) Stalled(readyStall time.Duration) bool {
	if s.InFlight == 0 || readyStall <= 0 {
		return false
	}
	since := s.OldestUnacked
	if s.LastAck.After(since) {
		since = s.LastAck
	}
	return s.At.Sub(since) >= readyStall
}

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

	// Status, written by Run.
	stInFlight   atomic.Int64
	stCheckpoint atomic.Pointer[Checkpoint]
	stLastAck    atomic.Int64 // unix nanoseconds, 0 = never
	stOldest     atomic.Int64 // unix nanoseconds, 0 = window empty
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
	switch {
	case cfg.MaxInFlight < 0:
		return nil, fmt.Errorf("BRIDGE_MAX_IN_FLIGHT: %d must be positive", cfg.MaxInFlight)
	case cfg.CheckpointInterval < 0:
		return nil, fmt.Errorf("CHECKPOINT_INTERVAL: %s must be positive", cfg.CheckpointInterval)
	case cfg.ShutdownTimeout < 0:
		return nil, fmt.Errorf("BRIDGE_SHUTDOWN_TIMEOUT: %s must not be negative", cfg.ShutdownTimeout)
	case cfg.CommitTimeout < 0:
		return nil, fmt.Errorf("bridge: commit timeout %s must not be negative", cfg.CommitTimeout)
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.CommitTimeout == 0 {
		cfg.CommitTimeout = DefaultCommitTimeout
	}
	if cfg.OnReject == "" {
		cfg.OnReject = RejectFail
	}
	if _, err := ParseRejectPolicy(string(cfg.OnReject)); err != nil {
		return nil, err
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Start != nil {
		s := *cfg.Start
		cfg.Start = &s
	}
	p := &Pipeline{
		sink:    sink,
		store:   store,
		cfg:     cfg,
		log:     cfg.Logger,
		m:       cfg.Metrics,
		now:     cfg.Now,
		rejFail: cfg.Metrics.NotificationsRejected(string(RejectFail)),
		rejDLQ:  cfg.Metrics.NotificationsRejected(string(RejectDLQ)),
		rejSkip: cfg.Metrics.NotificationsRejected(string(RejectSkip)),
		in:      make(chan Notification, inputBuffer(cfg.MaxInFlight)),
		stopped: make(chan struct{}),
	}
	if cfg.Start != nil {
		p.lastSeq, p.haveLast = cfg.Start.Sequence, true
		p.stCheckpoint.Store(cfg.Start)
	}
	return p, nil
}

// inputBuffer is the capacity of the Submit channel. A small buffer lets
// Run take notifications in batches; it is not part of the window (what is
// buffered there is not yet handed to the sink). A graceful drain still
// publishes what it holds; a crash loses it like anything not yet
// committed, to be read again from aviso after the restart.
func inputBuffer(maxInFlight int) int { return min(maxInFlight, 32) }

// Submit hands n to the pipeline. It copies *n (not the byte slices it
// aliases: they must stay unmodified until the notification is
// acknowledged). It blocks while the window is full, and returns
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
	select {
	case p.in <- *n:
	case <-p.stopped:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	p.lastSeq, p.haveLast = n.Sequence, true
	return nil
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

// Status returns a snapshot of the pipeline; safe for concurrent use.
func (p *Pipeline) Status() Status {
	s := Status{At: p.now(), InFlight: int(p.stInFlight.Load())}
	if cp := p.stCheckpoint.Load(); cp != nil {
		s.Checkpoint, s.CheckpointFound = *cp, true
	}
	if t := p.stLastAck.Load(); t != 0 {
		s.LastAck = time.Unix(0, t)
	}
	if t := p.stOldest.Load(); t != 0 {
		s.OldestUnacked = time.Unix(0, t)
	}
	select {
	case <-p.stopped:
		s.Stopped = true
	default:
	}
	return s
}

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
	var timer *time.Timer
	for attempt := 1; ; attempt++ {
		err := p.sink.DeadLetter(ctx, dl)
		if err == nil {
			p.m.DeadLettered.Inc()
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("bridge: dead-letter %s %q: %w (last error: %v)", dl.Kind, what, cerr, err)
		}
		p.m.SinkErrors.Inc()
		if IsPermanent(err) {
			return fmt.Errorf("bridge: dead-letter %s %q rejected: %w", dl.Kind, what, err)
		}
		d := p.cfg.Backoff(attempt)
		p.log.Warn("bridge.deadletter.retry", "kind", string(dl.Kind), "id", what, "attempt", attempt, "backoff", d, "error", err.Error())
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("bridge: dead-letter %s %q: %w (last error: %v)", dl.Kind, what, ctx.Err(), err)
		}
	}
}

func (p *Pipeline) stop() { p.stopOnce.Do(func() { close(p.stopped) }) }

// Run moves notifications from Submit to the sink and commits the
// acknowledged position until one of:
//   - ctx is cancelled: stop taking input, wait up to ShutdownTimeout for the
//     window's acknowledgements (retrying failed publishes), commit, return
//     nil;
//   - CloseInput was called: drain the whole window with no time limit
//     (ctx cancellation switches to the timed drain above), commit, return
//     nil;
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
	r := newRunner(p, ctx)
	defer p.stop()
	return r.run()
}

// slot is one window entry.
type slot struct {
	n  Notification
	at int64 // unix nanoseconds when it entered the window
	// syncErr is the error Publish returned for n; it stands in for n's Ack.
	syncErr error
}

type commitRequest struct {
	ctx context.Context
	cp  Checkpoint
}

type commitResult struct {
	cp  Checkpoint
	err error
}

// runner is the state Run's goroutine owns. Positions are counters over
// the receipt order: head <= ack <= pub <= tail, tail-head <= max.
//   - [head, ack): results seen but not yet advanced over (only while a
//     retry round is failing: results at or after failPos are ignored);
//   - [ack, pub): handed to the sink, result outstanding;
//   - [pub, tail): in the window, not handed to the sink (yet, or again).
type runner struct {
	p      *Pipeline
	ctx    context.Context // Run's
	opCtx  context.Context // Run's, or the drain context once draining
	cancel context.CancelFunc

	ring                  []slot
	mask                  uint64
	max                   uint64
	head, ack, pub, tail  uint64
	in                    <-chan Notification
	acks                  <-chan Ack
	inputOpen             bool
	failing, syncPending  bool
	failPos               uint64
	failErr               error
	attempt               int
	backoff               *time.Timer
	backingOff            bool
	draining, drainExpire bool
	drainDone             <-chan struct{}
	fatal                 error

	wm, committed           Checkpoint
	wmFound, committedFound bool
	commitTimer             *time.Timer
	timerArmed, commitDue   bool
	committing              bool
	commitReq               chan commitRequest
	commitRes               chan commitResult
	committerDone           chan struct{}
}

func newRunner(p *Pipeline, ctx context.Context) *runner {
	size := uint64(1)
	for size < uint64(p.cfg.MaxInFlight) {
		size <<= 1
	}
	r := &runner{
		p:             p,
		ctx:           ctx,
		opCtx:         ctx,
		ring:          make([]slot, size),
		mask:          size - 1,
		max:           uint64(p.cfg.MaxInFlight),
		in:            p.in,
		acks:          p.sink.Acks(),
		inputOpen:     true,
		backoff:       time.NewTimer(time.Hour),
		commitTimer:   time.NewTimer(time.Hour),
		commitReq:     make(chan commitRequest, 1),
		commitRes:     make(chan commitResult, 1),
		committerDone: make(chan struct{}),
	}
	r.backoff.Stop()
	r.commitTimer.Stop()
	if st := p.cfg.Start; st != nil {
		r.wm, r.wmFound = *st, true
		r.committed, r.committedFound = *st, true
		p.m.CheckpointSequence.Set(float64(st.Sequence))
	}
	p.m.InFlight.Set(0)
	go r.committer()
	return r
}

// committer runs Store.Commit off the pipeline's goroutine, so a slow
// fsync or a remote store never stalls acknowledgements.
func (r *runner) committer() {
	defer close(r.committerDone)
	for req := range r.commitReq {
		r.commitRes <- commitResult{cp: req.cp, err: r.p.store.Commit(req.ctx, req.cp)}
	}
}

func (r *runner) run() error {
	defer func() {
		if r.cancel != nil {
			r.cancel()
		}
	}()
	for !r.finished() {
		// While draining, what Submit had already queued is still taken
		// (it was read from aviso before the stop), but nothing more.
		var inC <-chan Notification
		if r.inputOpen && r.tail-r.head < r.max && (!r.draining || len(r.in) > 0) {
			inC = r.in
		}
		var ctxDone <-chan struct{}
		if !r.draining {
			ctxDone = r.ctx.Done()
		}
		var backoffC, commitC <-chan time.Time
		if r.backingOff {
			backoffC = r.backoff.C
		}
		if r.timerArmed {
			commitC = r.commitTimer.C
		}
		var resC <-chan commitResult
		if r.committing {
			resC = r.commitRes
		}
		select {
		case n, ok := <-inC:
			if !ok {
				r.inputOpen = false
				continue
			}
			r.take(&n)
		case a := <-r.acks:
			r.onAck(&a)
			// Take the acknowledgements already queued without going
			// through the select again.
			for i := len(r.acks); i > 0 && r.fatal == nil && !r.drainExpire; i-- {
				a = <-r.acks
				r.onAck(&a)
			}
			r.publish()
		case <-backoffC:
			r.backingOff = false
			r.retry()
		case <-commitC:
			r.timerArmed = false
			if r.committing {
				r.commitDue = true
			} else {
				r.startCommit()
			}
		case res := <-resC:
			r.onCommitResult(res)
		case <-ctxDone:
			r.beginDrain("context cancelled")
		case <-r.drainDone:
			r.drainExpire = true
		}
	}
	return r.finish()
}

func (r *runner) finished() bool {
	switch {
	case r.fatal != nil, r.drainExpire:
		return true
	case !r.inputOpen:
		return r.head == r.tail
	case r.draining:
		return r.head == r.tail && len(r.in) == 0
	}
	return false
}

// take appends n to the window, plus whatever else is already queued, then
// publishes.
func (r *runner) take(n *Notification) {
	at := r.p.now().UnixNano()
	r.put(n, at)
more:
	for r.tail-r.head < r.max {
		select {
		case n2, ok := <-r.in:
			if !ok {
				r.inputOpen = false
				break more
			}
			r.put(&n2, at)
		default:
			break more
		}
	}
	r.p.stInFlight.Store(int64(r.tail - r.head))
	r.p.m.InFlight.Set(float64(r.tail - r.head))
	r.publish()
}

func (r *runner) put(n *Notification, at int64) {
	s := &r.ring[r.tail&r.mask]
	s.n = *n
	s.at = at
	if r.tail == r.head {
		r.p.stOldest.Store(at)
	}
	r.tail++
}

// publish hands the window's unpublished notifications to the sink, unless
// a failure is being handled.
func (r *runner) publish() {
	for r.pub < r.tail && !r.failing && !r.syncPending && r.fatal == nil {
		s := &r.ring[r.pub&r.mask]
		err := r.p.sink.Publish(r.opCtx, &s.n)
		r.pub++
		if err != nil {
			// Not accepted: no Ack follows. The error stands in for the
			// Ack, in order, once the earlier outstanding Acks are in.
			s.syncErr = err
			r.syncPending = true
			r.syncResults()
		}
	}
}

// syncResults handles the synthetic result at the ack position, if any.
func (r *runner) syncResults() {
	for r.ack < r.pub && r.fatal == nil {
		s := &r.ring[r.ack&r.mask]
		if s.syncErr == nil {
			return
		}
		err := s.syncErr
		s.syncErr = nil
		r.syncPending = false
		r.result(s, err)
	}
}

func (r *runner) onAck(a *Ack) {
	if r.fatal != nil {
		return
	}
	if r.ack == r.pub {
		r.fatal = fmt.Errorf("%w: acknowledgement for %s (sequence %d) with nothing outstanding", ErrSinkContract, a.ID, a.Sequence)
		return
	}
	s := &r.ring[r.ack&r.mask]
	if s.syncErr != nil || a.Sequence != s.n.Sequence || a.ID != s.n.ID {
		r.fatal = fmt.Errorf("%w: acknowledgement for %s (sequence %d), expected %s (sequence %d)", ErrSinkContract, a.ID, a.Sequence, s.n.ID, s.n.Sequence)
		return
	}
	r.result(s, a.Err)
	r.syncResults()
}

// result handles the outcome for the notification at the ack position.
func (r *runner) result(s *slot, err error) {
	pos := r.ack
	r.ack++
	if err != nil {
		r.p.m.SinkErrors.Inc()
	}
	switch {
	case r.failing && pos >= r.failPos:
		// Part of a failed round: re-published whatever the outcome.
	case err == nil:
		r.attempt = 0
		r.advance(s, true)
	case IsPermanent(err):
		r.reject(s, err)
	default:
		r.failing, r.failPos, r.failErr = true, pos, err
	}
	if r.failing && !r.backingOff && r.ack == r.pub && r.fatal == nil {
		r.startBackoff()
	}
}

// advance moves the watermark over the head of the window.
func (r *runner) advance(s *slot, published bool) {
	if r.ack-1 != r.head {
		// Cannot happen: results before failPos are all advanced in order.
		r.fatal = fmt.Errorf("bridge: internal error: advancing %s (sequence %d) at position %d with head %d", s.n.ID, s.n.Sequence, r.ack-1, r.head)
		return
	}
	p := r.p
	now := p.now()
	if published {
		p.m.NotificationsPublished.Inc()
		if !s.n.Received.IsZero() {
			p.m.PublishLatency.Observe(now.Sub(s.n.Received).Seconds())
		}
		if !s.n.Time.IsZero() {
			p.m.EventAge.Observe(now.Sub(s.n.Time).Seconds())
		}
	}
	r.wm = Checkpoint{Sequence: s.n.Sequence, EventID: s.n.ID}
	r.wmFound = true
	*s = slot{}
	r.head++
	unix := now.UnixNano()
	p.m.LastAckTimestamp.Set(float64(unix) / 1e9)
	p.stLastAck.Store(unix)
	if r.head == r.tail {
		p.stOldest.Store(0)
	} else {
		p.stOldest.Store(r.ring[r.head&r.mask].at)
	}
	p.stInFlight.Store(int64(r.tail - r.head))
	p.m.InFlight.Set(float64(r.tail - r.head))
	if !r.timerArmed && !r.commitDue {
		r.commitTimer.Reset(p.cfg.CheckpointInterval)
		r.timerArmed = true
	}
}

func (r *runner) reject(s *slot, err error) {
	p := r.p
	id, seq := s.n.ID, s.n.Sequence
	switch p.cfg.OnReject {
	case RejectSkip:
		p.rejSkip.Inc()
		p.log.Warn("bridge.sink.rejected", "action", string(RejectSkip), "id", id, "sequence", seq, "error", err.Error())
		r.advance(s, false)
	case RejectDLQ:
		p.rejDLQ.Inc()
		p.log.Warn("bridge.sink.rejected", "action", string(RejectDLQ), "id", id, "sequence", seq, "error", err.Error())
		n := s.n // the slot is reused once advanced; the sink may keep dl
		dl := DeadLetter{Kind: DeadLetterRejected, Notification: &n, Raw: n.CloudEvent, Reason: err.Error()}
		for {
			derr := p.deadLetter(r.opCtx, dl)
			if derr == nil {
				p.log.Info("bridge.deadlettered", "id", id, "sequence", seq, "reason", dl.Reason)
				r.advance(s, false)
				return
			}
			if IsPermanent(derr) {
				r.fatal = fmt.Errorf("BRIDGE_ON_REJECT=dlq: %w", errors.Join(&RejectedError{ID: id, Sequence: seq, Err: err}, derr))
				return
			}
			// The context ended: Run's (start the timed drain and keep
			// trying) or the drain's (give up; the position stays
			// before this notification).
			if !r.draining {
				r.beginDrain("context cancelled")
				continue
			}
			r.drainExpire = true
			return
		}
	default:
		p.rejFail.Inc()
		p.log.Error("bridge.sink.rejected", "action", string(RejectFail), "id", id, "sequence", seq, "error", err.Error())
		r.fatal = fmt.Errorf("BRIDGE_ON_REJECT=fail: %w", &RejectedError{ID: id, Sequence: seq, Err: err})
	}
}

func (r *runner) startBackoff() {
	r.attempt++
	d := r.p.cfg.Backoff(r.attempt)
	s := &r.ring[r.failPos&r.mask]
	r.p.log.Warn("bridge.sink.retry", "id", s.n.ID, "sequence", s.n.Sequence, "attempt", r.attempt, "backoff", d, "error", r.failErr.Error())
	r.backoff.Reset(d)
	r.backingOff = true
}

// retry re-publishes from the failed notification on.
func (r *runner) retry() {
	if r.head != r.failPos || r.ack != r.pub {
		r.fatal = fmt.Errorf("bridge: internal error: retry from position %d with head %d, ack %d, pub %d", r.failPos, r.head, r.ack, r.pub)
		return
	}
	r.failing, r.failErr = false, nil
	r.ack, r.pub = r.head, r.head
	r.p.m.SinkRetries.Inc()
	r.publish()
}

func (r *runner) beginDrain(reason string) {
	if r.draining {
		return
	}
	r.draining = true
	r.p.stop()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), r.p.cfg.ShutdownTimeout)
	r.opCtx, r.cancel, r.drainDone = ctx, cancel, ctx.Done()
	r.p.log.Info("bridge.drain.started", "reason", reason, "in_flight", r.tail-r.head, "timeout", r.p.cfg.ShutdownTimeout)
}

func (r *runner) startCommit() {
	if r.committing || !r.wmFound || (r.committedFound && r.wm.Sequence <= r.committed.Sequence) {
		r.commitDue = false
		return
	}
	cp := r.wm
	cp.UpdatedAt = r.p.now().UTC()
	r.commitReq <- commitRequest{ctx: r.opCtx, cp: cp}
	r.committing, r.commitDue = true, false
}

func (r *runner) onCommitResult(res commitResult) {
	r.committing = false
	p := r.p
	if res.err != nil {
		if r.draining && errors.Is(res.err, context.Canceled) && r.ctx.Err() != nil {
			return // interrupted by shutdown; the final commit follows
		}
		p.m.CheckpointErrors.Inc()
		p.log.Warn("bridge.checkpoint.failed", "sequence", res.cp.Sequence, "event_id", res.cp.EventID, "error", res.err.Error())
		if errors.Is(res.err, ErrKeyHeld) {
			if r.fatal == nil {
				r.fatal = fmt.Errorf("bridge: commit checkpoint %s: %w", res.cp.EventID, res.err)
			}
			return
		}
		if !r.timerArmed {
			r.commitTimer.Reset(p.cfg.CheckpointInterval)
			r.timerArmed = true
		}
		return
	}
	r.committed, r.committedFound = res.cp, true
	cp := res.cp
	p.stCheckpoint.Store(&cp)
	p.m.CheckpointCommits.Inc()
	p.m.CheckpointSequence.Set(float64(cp.Sequence))
	p.log.Debug("bridge.checkpoint.committed", "sequence", cp.Sequence, "event_id", cp.EventID)
	if r.commitDue {
		r.startCommit()
	}
}

// finish stops the committer and makes the final commit.
func (r *runner) finish() error {
	p := r.p
	p.stop()
	if r.committing {
		r.commitDue = false
		r.onCommitResult(<-r.commitRes)
	}
	r.commitTimer.Stop()
	r.backoff.Stop()
	close(r.commitReq)
	<-r.committerDone
	if r.drainExpire {
		p.log.Warn("bridge.drain.timeout", "in_flight", r.tail-r.head, "timeout", p.cfg.ShutdownTimeout)
	}
	err := r.fatal
	if !errors.Is(err, ErrKeyHeld) {
		if cerr := r.finalCommit(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	p.log.Info("bridge.pipeline.stopped", "checkpoint_sequence", r.committed.Sequence, "checkpoint_found", r.committedFound, "in_flight", r.tail-r.head)
	return err
}

func (r *runner) finalCommit() error {
	p := r.p
	if !r.wmFound || (r.committedFound && r.wm.Sequence <= r.committed.Sequence) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), p.cfg.CommitTimeout)
	defer cancel()
	cp := r.wm
	var timer *time.Timer
	for attempt := 1; ; attempt++ {
		cp.UpdatedAt = p.now().UTC()
		err := p.store.Commit(ctx, cp)
		if err == nil {
			r.onCommitResult(commitResult{cp: cp})
			return nil
		}
		p.m.CheckpointErrors.Inc()
		p.log.Warn("bridge.checkpoint.failed", "sequence", cp.Sequence, "event_id", cp.EventID, "final", true, "error", err.Error())
		if errors.Is(err, ErrKeyHeld) || ctx.Err() != nil {
			return fmt.Errorf("bridge: final checkpoint commit of %s (sequence %d): %w", cp.EventID, cp.Sequence, err)
		}
		d := p.cfg.Backoff(attempt)
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("bridge: final checkpoint commit of %s (sequence %d): %w", cp.EventID, cp.Sequence, err)
		}
	}
}
