package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// JetStreamSink is SINK=jetstream: each notification is published with
// PublishAsync and acknowledged by the stream that stored it.
//
// At most NATS_MAX_PENDING publishes await their acks. Their outcomes
// arrive through nats.go's async ack and error handlers (in any order: a
// disconnect fails the pending ones in map order) and are recorded in a
// ring of the pending publishes; whoever completes the head of the ring
// feeds Acks, in publish order. The handlers run on nats.go's goroutines,
// so there is no goroutine of ours per message or per sink, and no channel
// allocated per message (waiting on each PubAckFuture would cost two, plus
// a goroutine hand-off per ack).
//
// Nats-Msg-Id is the CloudEvent id, so a re-send within the stream's
// duplicate window (after a failure, or after a restart from an older
// checkpoint) is acknowledged without being stored twice.
type JetStreamSink struct {
	cfg     *compiled
	enc     encoder
	nc      *natsgo.Conn
	ownConn bool // nc was opened by the sink (not Options.Conn)
	js      jetstream.JetStream
	log     *slog.Logger
	pubOpts []jetstream.PublishOpt

	acks  chan bridge.Ack
	slots chan struct{} // one token per pending publish

	pubMu sync.Mutex // serialises Publish: the ring order is the wire order

	mu         sync.Mutex
	ring       []jsPending // pending publishes, positions [head, tail)
	mask       uint64
	head, tail uint64
	broken     bool   // a retryable failure was reported; see Publish
	lastEpoch  uint64 // reconnect count before the last accepted publish
	closed     bool
	idle       chan struct{} // Close waits on it; closed when the ring empties

	noStream noStreamCache
}

// jsPending is one ring slot. Its message and header map are reused by
// the slot's next publish: once nats.go has called a handler for a
// message it no longer touches it (retries are off). A message whose
// handler may still run late is replaced instead (see Publish).
type jsPending struct {
	seq  uint64
	id   string
	subj string
	live bool // published, not yet delivered on Acks
	done bool
	err  error
	msg  *natsgo.Msg
	vals [maxHeaders]string
}

// Options are the collaborators of a sink or store.
type Options struct {
	// Logger receives connection and configuration events; nil discards.
	Logger *slog.Logger
	// Conn, when set, is a connection shared with other users (the NATS
	// KV checkpoint store): the sink uses it instead of connecting with
	// the Config's connection settings and leaves it open on Close.
	Conn *natsgo.Conn
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// New returns the sink that cfg.Mode selects: a *CoreSink for ModeCore,
// a *JetStreamSink for ModeJetStream.
func New(ctx context.Context, cfg Config, o Options) (bridge.Sink, error) {
	switch cfg.Mode {
	case ModeCore:
		return NewCoreSink(ctx, cfg, o)
	case ModeJetStream:
		return NewJetStreamSink(ctx, cfg, o)
	}
	return nil, fmt.Errorf("SINK: %q is not a NATS sink (want %s or %s)", cfg.Mode, ModeCore, ModeJetStream)
}

// NewJetStreamSink validates cfg, connects, checks (or, with
// NATS_STREAM_CREATE, creates) the stream and returns a running sink.
func NewJetStreamSink(ctx context.Context, cfg Config, o Options) (*JetStreamSink, error) {
	c, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	log := o.logger()
	nc, own, err := o.connect(ctx, c.ConnConfig)
	if err != nil {
		return nil, startError(err)
	}
	size := uint64(1)
	for size < uint64(c.MaxPending) {
		size <<= 1
	}
	s := &JetStreamSink{
		cfg:     c,
		enc:     encoder{subject: c.subject, dlq: c.dlq, structured: c.Format == FormatStructured, stream: c.Stream},
		nc:      nc,
		ownConn: own,
		log:     log,
		pubOpts: []jetstream.PublishOpt{
			// A no-responders retry would be sent after later messages:
			// report it instead and let the pipeline re-publish in order.
			jetstream.WithRetryAttempts(0),
			jetstream.WithStallWait(c.PublishTimeout),
		},
		acks:  make(chan bridge.Ack, max(c.MaxInFlight, c.MaxPending)),
		slots: make(chan struct{}, c.MaxPending),
		ring:  make([]jsPending, size),
		mask:  size - 1,
	}
	s.js, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(c.MaxPending),
		jetstream.WithPublishAsyncTimeout(c.PublishTimeout),
		jetstream.WithDefaultTimeout(c.PublishTimeout),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *natsgo.Msg, _ *jetstream.PubAck) {
			s.resolve(m, nil)
		}),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *natsgo.Msg, err error) {
			s.resolve(m, err)
		}),
	)
	if err != nil {
		closeIfOwned(nc, own)
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := s.setupStream(ctx); err != nil {
		closeIfOwned(nc, own)
		return nil, startError(err)
	}
	return s, nil
}

// setupStream checks NATS_STREAM (creating it when NATS_STREAM_CREATE is
// set) or, without a stream name, that JetStream answers at all.
func (s *JetStreamSink) setupStream(ctx context.Context) error {
	c := s.cfg
	ctx, cancel := deadline(ctx, 2*c.PublishTimeout)
	defer cancel()
	want := c.DuplicateWindow()
	if c.Stream == "" {
		if _, err := s.js.AccountInfo(ctx); err != nil {
			return bridge.FieldErrorf("URL", "%s: jetstream: %w", RedactURLs(c.URL), err)
		}
		name, err := s.js.StreamNameBySubject(ctx, c.subject.Wildcard())
		if err != nil {
			s.log.Warn("sink.nats.no_stream", "subject", c.subject.Wildcard(), "error", err.Error(),
				"hint", "no JetStream stream covers the subject; publishes will be rejected")
			return nil
		}
		s.log.Info("sink.nats.stream", "stream", name, "subject", c.subject.Wildcard())
		return nil
	}
	st, err := s.js.Stream(ctx, c.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && c.StreamCreate:
		cfg := jetstream.StreamConfig{
			Name:        c.Stream,
			Description: "aviso notifications (created by aviso-bridge)",
			Subjects:    c.streamSubjects(),
			Storage:     jetstream.FileStorage,
			Duplicates:  want,
		}
		_, err = s.js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = s.js.Stream(ctx, c.Stream) // another bridge won the race
			break
		}
		if isSubjectOverlap(err) {
			return s.overlapError(ctx, cfg.Subjects, err)
		}
		if err != nil {
			return &bridge.FieldError{Fields: []string{"Stream", "StreamSubjects"}, Err: fmt.Errorf("stream %q: create with subjects %q: %w", c.Stream, cfg.Subjects, err)}
		}
		s.log.Info("sink.nats.stream_created", "stream", c.Stream, "subjects", cfg.Subjects, "duplicates", want.String())
		return nil
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return &bridge.FieldError{Fields: []string{"Stream", "StreamCreate"}, Err: fmt.Errorf("stream %q not found (create it, or let the bridge create it): %w", c.Stream, err)}
	}
	if err != nil {
		return bridge.FieldErrorf("Stream", "stream %q: %w", c.Stream, err)
	}
	info := st.CachedInfo()
	if info.Config.Duplicates < want {
		s.log.Warn("sink.nats.duplicate_window_short", "stream", c.Stream,
			"duplicates", info.Config.Duplicates.String(), "want", want.String(),
			"hint", "a restart from an older checkpoint may store re-sent notifications twice")
	}
	check := []string{c.subject.Wildcard()}
	if c.DeadLetters {
		check = append(check, c.dlq.Wildcard())
	}
	for _, subj := range check {
		if !anyCovers(info.Config.Subjects, subj) {
			s.log.Warn("sink.nats.stream_subjects", "stream", c.Stream, "stream_subjects", info.Config.Subjects,
				"subject", subj, "hint", "the stream does not capture this subject")
		}
	}
	return nil
}

// streamSubjects is NATS_STREAM_SUBJECTS or its default: the subject
// template's wildcard, plus the DLQ subject's only when dead letters are
// enabled (a default aviso.dlq in every created stream would make the
// second bridge's stream overlap the first's).
func (c *compiled) streamSubjects() []string {
	if len(c.StreamSubjects) > 0 {
		return c.StreamSubjects
	}
	subs := []string{c.subject.Wildcard()}
	if d := c.dlq.Wildcard(); c.DeadLetters && !anyCovers(subs, d) {
		subs = append(subs, d)
	}
	return subs
}

// jsErrCodeStreamSubjectOverlap is the JetStream API error "subjects
// overlap with an existing stream" (nats.go names no constant for it).
const jsErrCodeStreamSubjectOverlap jetstream.ErrorCode = 10065

func isSubjectOverlap(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeStreamSubjectOverlap
}

// overlapError explains a stream creation refused because subjects
// overlap another stream's: which of subjects another stream already
// captures, and which stream (when the server tells), naming the
// variables that set them.
func (s *JetStreamSink) overlapError(ctx context.Context, subjects []string, err error) error {
	c := s.cfg
	var held []string
	for _, subj := range subjects {
		name, lerr := s.js.StreamNameBySubject(ctx, subj)
		if lerr != nil || name == "" || name == c.Stream {
			continue
		}
		held = append(held, fmt.Sprintf("%q is captured by stream %q", subj, name))
	}
	where := "another stream captures some of them"
	if len(held) > 0 {
		where = strings.Join(held, ", ")
	}
	dlq := "the dead-letter subject is not included: dead letters are off"
	if c.DeadLetters && len(c.StreamSubjects) == 0 {
		dlq = fmt.Sprintf("the dead-letter subject %q is included: dead letters are on", c.DLQSubject)
	}
	return &bridge.FieldError{Fields: []string{"StreamSubjects", "DLQSubject", "Stream"}, Err: fmt.Errorf(
		"stream %q: create with subjects %q: subjects overlap: %s; choose stream subjects (default: the subject template %q "+
			"with placeholders as '*') and a dead-letter subject that no other stream captures, or use the stream that captures them (%s): %w",
		c.Stream, subjects, where, c.Subject, dlq, err)}
}

func anyCovers(patterns []string, subj string) bool {
	for _, p := range patterns {
		if subjectCovers(p, subj) {
			return true
		}
	}
	return false
}

// Acks returns the channel of acknowledgements, in publish order.
func (s *JetStreamSink) Acks() <-chan bridge.Ack { return s.acks }

// Healthy reports an error while the connection is down.
func (s *JetStreamSink) Healthy() error { return connHealth(s.nc) }

// Conn returns the sink's connection (for a KV store sharing it, or tests).
func (s *JetStreamSink) Conn() *natsgo.Conn { return s.nc }

// Publish sends n with PublishAsync and returns; its Ack follows on Acks.
// It blocks while NATS_MAX_PENDING publishes are outstanding, at most
// NATS_PUBLISH_TIMEOUT.
//
// After a retryable failure has been reported (on Acks or by Publish), or
// after a reconnect while publishes were outstanding, Publish refuses with
// ErrEarlierFailed or ErrReconnected (retryable, nothing sent) until every
// outstanding Ack has been taken from Acks: only then can the pipeline's
// re-publish from the failed notification keep the stored order.
func (s *JetStreamSink) Publish(ctx context.Context, n *bridge.Notification) error {
	subj, err := s.enc.publishSubject(n)
	if err != nil {
		return err
	}
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if err := s.acquire(ctx); err != nil {
		return err
	}
	ep := reconnects(s.nc)
	s.mu.Lock()
	if err := admitLocked(&s.closed, &s.broken, int(s.tail-s.head), len(s.acks), ep, s.lastEpoch); err != nil {
		s.mu.Unlock()
		<-s.slots
		return fmt.Errorf("publish %s to subject %q: %w", n.ID, subj, err)
	}
	// Recorded before sending: the ack can arrive before PublishMsgAsync
	// returns. The slot at tail is free: at most MaxPending are pending.
	pos := s.tail
	hadPending := s.tail > s.head
	e := &s.ring[pos&s.mask]
	e.seq, e.id, e.subj, e.live = n.Sequence, n.ID, subj, true
	if e.msg == nil {
		e.msg = new(natsgo.Msg)
	}
	m := e.msg
	s.enc.fill(m, &e.vals, n, subj)
	s.tail++
	// Safe before knowing the outcome: with publishes pending, admission
	// above already required ep == lastEpoch.
	s.lastEpoch = ep
	s.mu.Unlock()

	_, err = s.js.PublishMsgAsync(m, s.pubOpts...)
	if err == nil {
		if ep2 := reconnects(s.nc); ep2 != ep && hadPending {
			s.warnReconnectDuringSend(n.ID, ep, ep2)
		}
		return nil
	}
	err = s.classify(err, subj, n.ID)
	s.mu.Lock()
	if s.head > pos || e.done {
		// A disconnect between nats.go registering m and writing it made
		// nats.go fail m through the error handler already: the Ack
		// carries the outcome, so m counts as accepted.
		s.mu.Unlock()
		return nil
	}
	// Publish is serialised, so m is still the ring's tail. Should a
	// handler still be running for m, it must not match the slot's next
	// message: give the slot a new one.
	s.tail--
	e.reset()
	e.msg = nil
	if !bridge.IsPermanent(err) && s.tail > s.head {
		s.broken = true
	}
	s.mu.Unlock()
	<-s.slots
	return err
}

// warnReconnectDuringSend logs the one case the ordering rule cannot
// exclude: nats.go registers an async publish, then writes it; if the
// connection drops and comes back between the two (the publishing goroutine
// stalled for a whole reconnect), nats.go has already failed the earlier
// pending publishes while this one went out on the new connection. If one
// of those was lost, its re-send lands after this message.
func (s *JetStreamSink) warnReconnectDuringSend(id string, ep, ep2 uint64) {
	s.log.Warn("sink.nats.order_at_risk", "id", id, "reconnects_before", ep, "reconnects_after", ep2,
		"hint", "reconnected while this publish was being written with earlier ones pending; a lost earlier one may be stored after it")
}

// acquire takes a pending slot, waiting at most the publish timeout.
func (s *JetStreamSink) acquire(ctx context.Context) error {
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(s.cfg.PublishTimeout)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("nats: %d publishes (the most pending) awaiting acks for %v: %w",
			s.cfg.MaxPending, s.cfg.PublishTimeout, jetstream.ErrTooManyStalledMsgs)
	}
}

// admitLocked is the ordering rule shared by both sinks.
func admitLocked(closed, broken *bool, outstanding, queuedAcks int, ep, lastEpoch uint64) error {
	if *closed {
		return ErrClosed
	}
	if *broken {
		if outstanding > 0 || queuedAcks > 0 {
			return ErrEarlierFailed
		}
		*broken = false
	}
	if outstanding > 0 && ep != lastEpoch {
		*broken = true
		return ErrReconnected
	}
	return nil
}

// resolve records the outcome of the pending publish of m (from nats.go's
// ack and error handlers) and delivers every completed publish at the head
// of the ring.
func (s *JetStreamSink) resolve(m *natsgo.Msg, err error) {
	if err != nil {
		// Outside mu: a no-responders failure asks the server about the
		// subject. The timeout handler calls us holding nats.go's publisher
		// lock; nothing here takes it.
		err = s.classify(err, m.Subject, m.Header.Get(HeaderMsgID))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := s.head; p < s.tail; p++ {
		if e := &s.ring[p&s.mask]; e.msg == m && e.live && !e.done {
			e.done, e.err = true, err
			s.deliverLocked()
			return
		}
	}
	// Abandoned by Close.
}

// reset frees the slot, keeping its message for reuse. It must not touch
// the message: a handler can run (after a disconnect) while PublishMsgAsync
// is still reading it; only the slot's next Publish rewrites it.
func (e *jsPending) reset() {
	e.seq, e.id, e.subj, e.live, e.done, e.err = 0, "", "", false, false, nil
}

// deliverLocked feeds Acks with the completed publishes at the head.
func (s *JetStreamSink) deliverLocked() {
	for s.head < s.tail {
		e := &s.ring[s.head&s.mask]
		if !e.done {
			break
		}
		a := bridge.Ack{Sequence: e.seq, ID: e.id, Err: e.err}
		e.reset()
		s.head++
		if a.Err != nil && !bridge.IsPermanent(a.Err) {
			s.broken = true
		}
		// Under mu, so that Publish sees the Ack queued and the ring
		// shortened together. Acks holds a full window.
		s.acks <- a
		<-s.slots
	}
	if s.head == s.tail && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// classify wraps a publish error with the message id, subject and stream,
// as permanent when re-sending cannot succeed.
func (s *JetStreamSink) classify(err error, subj, id string) error {
	permanent := isPermanentPublishErr(err)
	switch {
	case permanent:
	case isNoResponders(err):
		if lookup := s.noStream.check(s.js, subj, s.cfg.PublishTimeout); lookup != nil {
			err, permanent = fmt.Errorf("%w: %w", err, lookup), true
		}
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, natsgo.ErrTimeout):
		if permissionDenied(s.nc.LastError(), subj) {
			err, permanent = fmt.Errorf("%w: %w", err, s.nc.LastError()), true
		}
	case errors.Is(err, natsgo.ErrReconnectBufExceeded):
		err = fmt.Errorf("%w (disconnected, reconnecting)", err)
	}
	where := fmt.Sprintf("subject %q", subj)
	if s.cfg.Stream != "" {
		where += fmt.Sprintf(" (stream %q)", s.cfg.Stream)
	}
	return classified(fmt.Errorf("jetstream publish %s to %s: %w", id, where, err), permanent)
}

// noStreamCache remembers, per subject and briefly, whether a stream
// covers it, so that a window of no-responders failures costs one look-up.
type noStreamCache struct {
	mu   sync.Mutex
	subj string
	at   time.Time
	err  error
}

// check returns a non-nil error when the server says that no stream
// covers subj. Any failure to ask is nil: the publish stays retryable
// (the stream may be between leaders, or JetStream restarting).
func (c *noStreamCache) check(js jetstream.JetStream, subj string, timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subj == subj && time.Since(c.at) < time.Second {
		return c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := js.StreamNameBySubject(ctx, subj)
	var res error
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		res = errors.New("no JetStream stream captures the subject")
	}
	c.subj, c.at, c.err = subj, time.Now(), res
	return res
}

// DeadLetter publishes dl to BRIDGE_DLQ_SUBJECT and waits for the stream's
// acknowledgement (the dead-letter subject need not be in NATS_STREAM).
//
// A dead letter larger than the server's max_payload, or refused by the
// stream for its size, is published with its headers only and
// HeaderDLQBodyOmitted (logged as sink.nats.deadletter.body_omitted).
func (s *JetStreamSink) DeadLetter(ctx context.Context, dl bridge.DeadLetter) error {
	m := s.enc.deadLetter(dl)
	if err := checkPublishSubject(m.Subject); err != nil {
		return bridge.Permanent(fmt.Errorf("dead letter: subject %q (dead-letter subject template %q): %w", m.Subject, s.enc.dlq, err))
	}
	ctx, cancel := deadline(ctx, s.cfg.PublishTimeout)
	defer cancel()
	if tooLargeForConn(s.nc, m) {
		omitDeadLetterBody(s.log, m, fmt.Sprintf("%d bytes exceed the server's max_payload (%d)", payloadSize(m), s.nc.MaxPayload()))
	}
	_, err := s.js.PublishMsg(ctx, m)
	if err != nil && len(m.Data) > 0 && isTooLarge(err) {
		omitDeadLetterBody(s.log, m, err.Error())
		_, err = s.js.PublishMsg(ctx, m)
	}
	if err != nil {
		permanent := isPermanentPublishErr(err)
		if !permanent && isNoResponders(err) {
			if lookup := s.noStream.check(s.js, m.Subject, s.cfg.PublishTimeout); lookup != nil {
				err, permanent = fmt.Errorf("%w: %w", err, lookup), true
			}
		}
		return classified(fmt.Errorf("dead letter (%s) to subject %q: %w", dl.Kind, m.Subject, err), permanent)
	}
	return nil
}

// Close stops accepting publishes, waits until ctx is done for the
// outstanding acknowledgements (delivering each on Acks), then closes the
// connection. Acks is not closed.
func (s *JetStreamSink) Close(ctx context.Context) error {
	s.pubMu.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.pubMu.Unlock()
		return nil
	}
	s.closed = true
	idle := make(chan struct{})
	if s.head == s.tail {
		close(idle)
	} else {
		s.idle = idle
	}
	s.mu.Unlock()
	s.pubMu.Unlock()
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		s.mu.Lock()
		for p := s.head; p < s.tail; p++ {
			e := &s.ring[p&s.mask]
			if !e.done {
				e.done = true
				e.err = fmt.Errorf("publish %s to subject %q: %w before its acknowledgement", e.id, e.subj, ErrClosed)
			}
		}
		s.deliverLocked()
		s.mu.Unlock()
		err = fmt.Errorf("jetstream sink: close: acknowledgements still outstanding: %w", ctx.Err())
	}
	closeIfOwned(s.nc, s.ownConn)
	return err
}
