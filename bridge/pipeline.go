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
	DefaultMaxInFlightBytes   = 64 << 20
	DefaultCheckpointInterval = time.Second
	DefaultShutdownTimeout    = 20 * time.Second
	DefaultCommitTimeout      = 5 * time.Second
)

// PipelineConfig configures a Pipeline. The zero value of every field means
// its default.
type PipelineConfig struct {
	// MaxInFlight is BRIDGE_MAX_IN_FLIGHT: the most notifications in the
	// window (received and not yet acknowledged). Build the sink with the same
	// value so that its Acks buffer holds a full window. Default 256.
	MaxInFlight int
	// MaxInFlightBytes is BRIDGE_MAX_IN_FLIGHT_BYTES: the most bytes held
	// by notifications submitted and not yet acknowledged, the input buffer
	// in front of the window included (see NotificationSize: a notification
	// counts twice its CloudEvent, for the sink's copy). Submit blocks
	// while the next notification would pass it; one notification larger
	// than the bound still passes, alone. Default 64 MiB.
	MaxInFlightBytes int64
	// CheckpointInterval is CHECKPOINT_INTERVAL: the longest an advanced
	// position waits before it is committed. Default 1s.
	CheckpointInterval time.Duration
	// ShutdownTimeout is BRIDGE_SHUTDOWN_TIMEOUT: once the Run context is
	// cancelled, the deadline of the drain and the final commit together,
	// counted from the cancellation. Drain sets an explicit deadline
	// instead. Default 20s.
	ShutdownTimeout time.Duration
	// CommitTimeout bounds the final commit when Run stops without a
	// deadline (the input was closed, or a fatal error); it runs on a
	// context detached from Run's. Default 5s.
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
	// InFlightBytes is the size (NotificationSize) of the notifications
	// submitted and not yet acknowledged: the window and the input buffer
	// in front of it.
	InFlightBytes int64
	// Acknowledged is the watermark: the last notification of the
	// acknowledged prefix (committed or not yet); AcknowledgedFound is
	// false when there is none (nor a start checkpoint).
	Acknowledged      Checkpoint
	AcknowledgedFound bool
	// CommitErr is the error of the last checkpoint commit when it failed
	// and no commit succeeded since (nil otherwise); CommitFailingSince is
	// when the first of those consecutive failures happened.
	CommitErr          error
	CommitFailingSince time.Time
	// Stopped is true once the pipeline no longer takes input.
	Stopped bool
}

// Uncommitted reports whether acknowledged notifications are not covered
// by the committed checkpoint: a restart now would deliver them again.
// Notifications still in flight are not counted: the checkpoint is before
// them, so they are read again from aviso either way.
func (s Status) Uncommitted() bool {
	return s.AcknowledgedFound && (!s.CheckpointFound || s.Acknowledged.Sequence > s.Checkpoint.Sequence)
}

// CommitFailure returns nil unless checkpoint commits are failing: the
// last one failed and none succeeded since. The error names when the
// failures began and wraps the store's last error; /readyz reports it.
func (s Status) CommitFailure() error {
	if s.CommitErr == nil {
		return nil
	}
	return fmt.Errorf("checkpoint commits failing since %s (%s): %w",
		s.CommitFailingSince.UTC().Format(time.RFC3339), s.At.Sub(s.CommitFailingSince).Round(time.Millisecond), s.CommitErr)
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

type commitFailure struct {
	err   error
	since time.Time
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
	case cfg.MaxInFlightBytes < 0:
		return nil, fmt.Errorf("BRIDGE_MAX_IN_FLIGHT_BYTES: %d must be positive", cfg.MaxInFlightBytes)
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
	if cfg.MaxInFlightBytes == 0 {
		cfg.MaxInFlightBytes = DefaultMaxInFlightBytes
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

// Status returns a snapshot of the pipeline; safe for concurrent use.
func (p *Pipeline) Status() Status {
	s := Status{At: p.now(), InFlight: int(p.stInFlight.Load()), InFlightBytes: p.bytes.Load()}
	if cp := p.stCheckpoint.Load(); cp != nil {
		s.Checkpoint, s.CheckpointFound = *cp, true
	}
	if cp := p.stAcked.Load(); cp != nil {
		s.Acknowledged, s.AcknowledgedFound = *cp, true
	}
	if f := p.stCommitFail.Load(); f != nil {
		s.CommitErr, s.CommitFailingSince = f.err, f.since
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
		return fmt.Errorf("bridge: dead-letter %s %q: %w (last error: %v)", dl.Kind, what, ctx.Err(), err)
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

func (p *Pipeline) stop() { p.stopOnce.Do(func() { close(p.stopped) }) }

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
	r := newRunner(p, ctx)
	defer p.stop()
	return r.run()
}

// slot is one window entry.
type slot struct {
	n  Notification
	at int64 // unix nanoseconds when it entered the window
	// size is NotificationSize(&n), released when the slot is advanced.
	size int64
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
	// interrupted: the request's context ended (shutdown), so err may
	// only say that.
	interrupted bool
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
	ctxSeen               bool // Run's context was seen cancelled
	drainDone             <-chan struct{}
	// deadline is the deadline of the drain and the final commit (zero:
	// none); drainTimer ends the drain a reserve before it; watches stop
	// the context.AfterFuncs that end it with a Drain context.
	deadline   time.Time
	drainTimer *time.Timer
	watches    []func() bool
	fatal      error

	wm, committed           Checkpoint
	wmFound, committedFound bool
	commitTimer             *time.Timer
	timerArmed, commitDue   bool
	committing              bool
	commitCancel            context.CancelFunc // ends the in-flight commit
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
		err := r.p.store.Commit(req.ctx, req.cp)
		r.commitRes <- commitResult{cp: req.cp, err: err, interrupted: req.ctx.Err() != nil}
	}
}

func (r *runner) run() error {
	defer func() {
		if r.cancel != nil {
			r.cancel()
		}
		if r.drainTimer != nil {
			r.drainTimer.Stop()
		}
		for _, stop := range r.watches {
			stop()
		}
	}()
	r.takeDrainRequests() // Drain called before Run
	for !r.finished() {
		// While draining, what Submit had already queued is still taken
		// (it was read from aviso before the stop), but nothing more.
		var inC <-chan Notification
		if r.inputOpen && r.tail-r.head < r.max && (!r.draining || len(r.in) > 0) {
			inC = r.in
		}
		var ctxDone <-chan struct{}
		if !r.ctxSeen {
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
			r.drainOnCancel()
		case <-r.p.drainSig:
			r.takeDrainRequests()
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
	s.size = NotificationSize(n)
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
	wm := r.wm
	p.stAcked.Store(&wm)
	size := s.size
	*s = slot{}
	r.head++
	p.release(size)
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
				r.drainOnCancel()
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
	r.p.log.Warn("bridge.sink.retry", "id", s.n.ID, "sequence", s.n.Sequence, "attempt", r.attempt, "backoff", d.String(), "error", r.failErr.Error())
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

// maxCommitReserve is the most of a drain deadline kept for the final
// commit (a fifth of the time left when that is less).
const maxCommitReserve = time.Second

// drainOnCancel starts the drain for a cancelled Run context: the drain
// and the final commit within ShutdownTimeout from now.
func (r *runner) drainOnCancel() {
	r.ctxSeen = true
	r.beginDrain("context cancelled")
	r.setDeadline(time.Now().Add(r.p.cfg.ShutdownTimeout))
}

// takeDrainRequests applies the contexts passed to Drain.
func (r *runner) takeDrainRequests() {
	p := r.p
	p.drainMu.Lock()
	reqs := p.drainReqs
	p.drainReqs = nil
	p.drainMu.Unlock()
	for _, ctx := range reqs {
		r.beginDrain("drain requested")
		if d, ok := ctx.Deadline(); ok {
			r.setDeadline(d)
		}
		r.watches = append(r.watches, context.AfterFunc(ctx, r.cancel))
	}
}

// beginDrain stops taking input; the drain runs on a context detached from
// Run's, cancelled when the drain must end.
func (r *runner) beginDrain(reason string) {
	if r.draining {
		return
	}
	r.draining = true
	r.p.stop()
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.ctx))
	r.opCtx, r.cancel, r.drainDone = ctx, cancel, ctx.Done()
	r.p.log.Info("bridge.drain.started", "reason", reason, "in_flight", r.tail-r.head)
}

// setDeadline bounds the drain and the final commit by d, unless an
// earlier deadline is set. The drain ends a reserve before d.
func (r *runner) setDeadline(d time.Time) {
	if !r.deadline.IsZero() && !d.Before(r.deadline) {
		return
	}
	r.deadline = d
	left := time.Until(d)
	end := left - min(maxCommitReserve, left/5)
	if r.drainTimer != nil {
		r.drainTimer.Stop()
	}
	r.drainTimer = time.AfterFunc(max(end, 0), r.cancel)
	r.p.log.Info("bridge.drain.deadline", "timeout", left.String(), "drain", max(end, 0).String())
}

func (r *runner) startCommit() {
	if r.committing || !r.wmFound || (r.committedFound && r.wm.Sequence <= r.committed.Sequence) {
		r.commitDue = false
		return
	}
	cp := r.wm
	cp.UpdatedAt = r.p.now().UTC()
	ctx, cancel := context.WithCancel(r.opCtx)
	r.commitCancel = cancel
	r.commitReq <- commitRequest{ctx: ctx, cp: cp}
	r.committing, r.commitDue = true, false
}

func (r *runner) onCommitResult(res commitResult) {
	r.committing = false
	if r.commitCancel != nil {
		r.commitCancel()
		r.commitCancel = nil
	}
	p := r.p
	if res.err != nil {
		if res.interrupted && errors.Is(res.err, context.Canceled) {
			return // interrupted by shutdown; the final commit follows
		}
		p.commitFailed(res.err)
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
	p.stCommitFail.Store(nil)
	p.m.CheckpointCommits.Inc()
	p.m.CheckpointSequence.Set(float64(cp.Sequence))
	p.log.Debug("bridge.checkpoint.committed", "sequence", cp.Sequence, "event_id", cp.EventID)
	if r.commitDue {
		r.startCommit()
	}
}

// commitFailed counts a failed commit and records it for Status.
func (p *Pipeline) commitFailed(err error) {
	p.m.CheckpointErrors.Inc()
	since := p.now()
	if f := p.stCommitFail.Load(); f != nil {
		since = f.since
	}
	p.stCommitFail.Store(&commitFailure{err: err, since: since})
}

// finish stops the committer and makes the final commit, both within the
// drain deadline when there is one (CommitTimeout otherwise).
func (r *runner) finish() error {
	p := r.p
	p.stop()
	var ctx context.Context
	var cancel context.CancelFunc
	if !r.deadline.IsZero() {
		ctx, cancel = context.WithDeadline(context.WithoutCancel(r.ctx), r.deadline)
	} else {
		ctx, cancel = context.WithTimeout(context.WithoutCancel(r.ctx), p.cfg.CommitTimeout)
	}
	defer cancel()
	if r.drainExpire {
		p.log.Warn("bridge.drain.timeout", "in_flight", r.tail-r.head)
	}
	var err error
	if r.committing {
		r.commitDue = false
		if r.drainExpire {
			// The final commit supersedes it; a stalled store must not
			// take the time left.
			r.commitCancel()
		}
		select {
		case res := <-r.commitRes:
			r.onCommitResult(res)
		case <-ctx.Done():
			// The committer goroutine is left behind (a store that ignores
			// its context), and no second commit may run beside it.
			r.commitCancel()
			close(r.commitReq)
			err = fmt.Errorf("bridge: checkpoint store: a commit did not return by the shutdown deadline: %w", ctx.Err())
			p.commitFailed(err)
			p.log.Info("bridge.pipeline.stopped", "checkpoint_sequence", r.committed.Sequence, "checkpoint_found", r.committedFound, "in_flight", r.tail-r.head)
			return errors.Join(r.fatal, err)
		}
	}
	r.commitTimer.Stop()
	r.backoff.Stop()
	close(r.commitReq)
	<-r.committerDone
	err = r.fatal
	if !errors.Is(err, ErrKeyHeld) {
		if cerr := r.finalCommit(ctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	p.log.Info("bridge.pipeline.stopped", "checkpoint_sequence", r.committed.Sequence, "checkpoint_found", r.committedFound, "in_flight", r.tail-r.head)
	return err
}

// finalCommit commits the watermark, retrying until ctx is done.
func (r *runner) finalCommit(ctx context.Context) error {
	p := r.p
	if !r.wmFound || (r.committedFound && r.wm.Sequence <= r.committed.Sequence) {
		return nil
	}
	cp := r.wm
	_, err := p.retry(ctx, func(int) (bool, error) {
		cp.UpdatedAt = p.now().UTC()
		err := p.store.Commit(ctx, cp)
		if err == nil {
			return false, nil
		}
		p.commitFailed(err)
		p.log.Warn("bridge.checkpoint.failed", "sequence", cp.Sequence, "event_id", cp.EventID, "final", true, "error", err.Error())
		return !errors.Is(err, ErrKeyHeld) && ctx.Err() == nil, err
	}, func(int, time.Duration, error) {})
	if err != nil {
		return fmt.Errorf("bridge: final checkpoint commit of %s (sequence %d): %w", cp.EventID, cp.Sequence, err)
	}
	r.onCommitResult(commitResult{cp: cp})
	return nil
}
