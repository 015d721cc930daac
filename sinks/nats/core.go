package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// CoreSink is SINK=nats: each notification is published with core NATS,
// and a flush round-trip to the server is its acknowledgement.
//
// Core NATS cannot guarantee delivery to subscribers: an acknowledgement
// only says that the server received the message over a connection that
// stayed up (no reconnect in between) and did not refuse it. A subscriber
// that is slow, disconnected or not yet subscribed loses it, and nothing is
// stored. Use SINK=jetstream when delivery matters.
//
// A flusher goroutine coalesces: one FlushTimeout acknowledges, in order,
// every message published before it started.
type CoreSink struct {
	cfg     *compiled
	enc     encoder
	nc      *natsgo.Conn
	ownConn bool // nc was opened by the sink (not Options.Conn)
	log     *slog.Logger

	acks chan bridge.Ack
	kick chan struct{}

	mu          sync.Mutex
	batch       []corePending // published, not yet covered by a flush
	spare       []corePending
	outstanding int
	broken      bool
	lastEpoch   uint64
	closed      bool
	seenErr     error // the connection's last error already accounted for

	closing chan struct{}
	done    chan struct{}
}

type corePending struct {
	seq   uint64
	id    string
	subj  string
	epoch uint64 // reconnect count read before the message was written
}

// NewCoreSink validates cfg, connects and returns a running core NATS sink.
func NewCoreSink(ctx context.Context, cfg Config, o Options) (*CoreSink, error) {
	c, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	log := o.logger()
	nc, own, err := o.connect(ctx, c.ConnConfig)
	if err != nil {
		return nil, startError(err)
	}
	s := &CoreSink{
		cfg:     c,
		enc:     encoder{subject: c.subject, dlq: c.dlq, structured: c.Format == FormatStructured},
		nc:      nc,
		ownConn: own,
		log:     log,
		acks:    make(chan bridge.Ack, c.MaxInFlight),
		kick:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go s.flushLoop()
	return s, nil
}

// Acks returns the channel of acknowledgements, in publish order.
func (s *CoreSink) Acks() <-chan bridge.Ack { return s.acks }

// Healthy reports an error while the connection is down.
func (s *CoreSink) Healthy() error { return connHealth(s.nc) }

// Conn returns the sink's connection.
func (s *CoreSink) Conn() *natsgo.Conn { return s.nc }

// Publish writes n to the connection and returns; its Ack follows the next
// flush. The ordering rule is the JetStream sink's (see
// JetStreamSink.Publish).
func (s *CoreSink) Publish(ctx context.Context, n *bridge.Notification) error {
	subj, err := s.enc.publishSubject(n)
	if err != nil {
		return err
	}
	m := s.enc.message(n, subj)

	s.mu.Lock()
	defer s.mu.Unlock()
	ep := reconnects(s.nc)
	if err := admitLocked(&s.closed, &s.broken, s.outstanding, len(s.acks), ep, s.lastEpoch); err != nil {
		return fmt.Errorf("publish %s to subject %q: %w", n.ID, subj, err)
	}
	// Under mu, so that the batch order is the wire order.
	if err := s.nc.PublishMsg(m); err != nil {
		permanent := isPermanentPublishErr(err)
		if !permanent && s.outstanding > 0 {
			s.broken = true
		}
		return classified(fmt.Errorf("nats publish %s to subject %q: %w", n.ID, subj, err), permanent)
	}
	s.batch = append(s.batch, corePending{seq: n.Sequence, id: n.ID, subj: subj, epoch: ep})
	s.outstanding++
	s.lastEpoch = ep
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

func (s *CoreSink) flushLoop() {
	defer close(s.done)
	for {
		select {
		case <-s.kick:
			s.flushBatch()
		case <-s.closing:
			s.flushBatch()
			return
		}
	}
}

// flushBatch acknowledges every message published so far with one flush.
func (s *CoreSink) flushBatch() {
	s.mu.Lock()
	batch := s.batch
	s.batch = s.spare[:0]
	s.mu.Unlock()
	if len(batch) == 0 {
		s.spare = batch
		return
	}
	err := s.nc.FlushTimeout(s.cfg.PublishTimeout)
	if err == nil && reconnects(s.nc) != batch[0].epoch {
		// The PONG came over a new connection: the flush may have been
		// queued while reconnecting, and what the old one carried is lost.
		err = ErrReconnected
	}
	// A refused publish is dropped by the server without closing the
	// connection; nats.go records the violation before it reads the PONG.
	lastErr := s.nc.LastError()
	violation := errors.Is(lastErr, natsgo.ErrPermissionViolation)

	s.mu.Lock()
	fresh := violation && !errors.Is(lastErr, s.seenErr) //nolint:errorlint // identity: has nats.go recorded a new violation since the last flush?
	s.seenErr = lastErr
	for _, p := range batch {
		var ackErr error
		switch {
		case err != nil:
			ackErr = fmt.Errorf("nats publish %s to subject %q: flush: %w", p.id, p.subj, err)
		case violation && permissionDenied(lastErr, p.subj):
			ackErr = bridge.Permanent(fmt.Errorf("nats publish %s to subject %q: %w", p.id, p.subj, lastErr))
		case fresh:
			// Only the last violation is visible; others in this batch
			// may have been refused too. Send them again.
			ackErr = fmt.Errorf("nats publish %s to subject %q: a publish in the same flush was refused (%s): %w", p.id, p.subj, lastErr.Error(), ErrEarlierFailed)
		}
		s.outstanding--
		if ackErr != nil && !bridge.IsPermanent(ackErr) {
			s.broken = true
		}
		s.acks <- bridge.Ack{Sequence: p.seq, ID: p.id, Err: ackErr}
	}
	s.mu.Unlock()
	s.spare = batch[:0]
}

// DeadLetter publishes dl to BRIDGE_DLQ_SUBJECT and flushes.
//
// A dead letter larger than the server's max_payload is published with its
// headers only and HeaderDLQBodyOmitted (logged as
// sink.nats.deadletter.body_omitted).
func (s *CoreSink) DeadLetter(ctx context.Context, dl bridge.DeadLetter) error {
	m := s.enc.deadLetter(dl)
	if err := checkPublishSubject(m.Subject); err != nil {
		return bridge.Permanent(fmt.Errorf("dead letter: subject %q (dead-letter subject template %q): %w", m.Subject, s.enc.dlq, err))
	}
	fail := func(err error, permanent bool) error {
		return classified(fmt.Errorf("dead letter (%s) to subject %q: %w", dl.Kind, m.Subject, err), permanent)
	}
	if tooLargeForConn(s.nc, m) {
		omitDeadLetterBody(s.log, m, fmt.Sprintf("%d bytes exceed the server's max_payload (%d)", payloadSize(m), s.nc.MaxPayload()))
	}
	ep := reconnects(s.nc)
	err := s.nc.PublishMsg(m)
	if err != nil && len(m.Data) > 0 && isTooLarge(err) {
		omitDeadLetterBody(s.log, m, err.Error())
		err = s.nc.PublishMsg(m)
	}
	if err != nil {
		return fail(err, isPermanentPublishErr(err))
	}
	timeout := s.cfg.PublishTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, max(time.Millisecond, time.Until(dl)))
	}
	if err := s.nc.FlushTimeout(timeout); err != nil {
		return fail(err, false)
	}
	if reconnects(s.nc) != ep {
		return fail(ErrReconnected, false)
	}
	if e := s.nc.LastError(); permissionDenied(e, m.Subject) {
		return fail(e, true)
	}
	return nil
}

// Close stops accepting publishes, flushes and acknowledges what was
// published (waiting at most until ctx is done), then closes the
// connection. Acks is not closed.
func (s *CoreSink) Close(ctx context.Context) error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		<-s.done
		return nil
	}
	close(s.closing)
	var err error
	select {
	case <-s.done:
	case <-ctx.Done():
		// The flush times out after NATS_PUBLISH_TIMEOUT at the latest.
		err = fmt.Errorf("nats sink: close: %w", ctx.Err())
		closeIfOwned(s.nc, s.ownConn) // a shared connection stays: the flush times out by itself
		<-s.done
		return err
	}
	closeIfOwned(s.nc, s.ownConn)
	return err
}
