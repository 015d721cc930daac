package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Options are the collaborators of a Sink or a Store.
type Options struct {
	// Logger receives the sink's events (nil: discard).
	Logger *slog.Logger
	// Metrics receives DuplicatesDropped for records the start-up scan
	// found already stored (nil: NopMetrics).
	Metrics *bridge.Metrics
	// Transport is shared with other users (for example the Store); nil
	// builds one from the Config, closed by Close.
	Transport *kafkago.Transport
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = bridge.NopMetrics()
	}
	return o
}

// Sink publishes notifications to Kafka with kafka-go's asynchronous Writer
// (SINK=kafka). It implements bridge.Sink and bridge.HealthReporter.
//
// Acknowledgements: the Writer reports each batch in its Completion
// callback, per partition, so batches of different partitions complete in
// any order. The sink keeps a FIFO of outstanding publishes (each record
// carries its FIFO entry in kafka.Message.WriterData) and releases acks
// strictly in publish order.
//
// Order across failures: kafka-go sends one batch per partition at a time,
// retries it (KAFKA_MAX_ATTEMPTS), then calls Completion from the same
// goroutine before it takes the partition's next batch. If the batch finally
// failed, sending the next batch would store k+1 before the pipeline re-sends
// k. So the Writer's transport is wrapped: when Completion reports a
// retryable failure the sink turns "held back" on, and from then every
// produce request fails at once without being sent (errHeldBack, which
// kafka-go does not retry). It turns held back off only when every
// outstanding publish has been acknowledged and the pipeline publishes the
// first failed notification (or an earlier one) again; everything stored in
// the meantime is therefore a per-partition prefix of what was published,
// and the re-published suffix lands after it in order. Records that were
// stored after the first failure (other partitions, whose batch was already
// on the wire) are remembered and acknowledged without being written again
// when the pipeline re-publishes them.
//
// Duplicates: kafka-go has no idempotent producer. At start-up, when the
// topic template renders one topic for this bridge, the sink reads the
// target partitions back from their end (at least DedupeScan records, then
// on until it passes a record of this event type at or below ResumeAfter,
// at most DedupeScanMax) and acknowledges without writing any notification
// whose ce_id is already in the partition it would be written to. Only
// records physically in the topic are skipped, so nothing can be lost, even
// when other bridges write the same topic. What remains possible: a produce
// whose response was lost (broker stored it, connection dropped) is retried
// and stored twice, both copies carrying the same ce_id; a re-run from
// further back than the scan reached writes again what lies before it; and
// with a topic per notification there is no scan at all.
type Sink struct {
	cfg        Config
	log        *slog.Logger
	metrics    *bridge.Metrics
	topic      *template
	key        *template
	dlq        *template
	structured bool

	transport    *kafkago.Transport
	ownTransport bool
	addr         net.Addr
	client       *kafkago.Client
	w            *kafkago.Writer // async, gated: notifications
	syncW        *kafkago.Writer // synchronous: dead letters, one-record re-sends
	hash         *kafkago.Hash

	acks        chan bridge.Ack
	completions chan completion // Completion -> acker
	ackerDone   chan struct{}

	// heldBack fails produce requests of w without sending them.
	heldBack atomic.Bool

	pubMu sync.Mutex // serialises Publish: FIFO order is Writer order
	attrs attrCache  // guarded by pubMu

	sendMu  sync.Mutex   // orders the sends on acks (see releaseAndUnlock)
	sendBuf []bridge.Ack // guarded by sendMu

	mu        sync.Mutex
	drained   *sync.Cond // the FIFO became empty
	queue     []*pending
	head      int
	free      []*pending // recycled entries
	closed    bool
	failed    bool   // a retryable failure was released while held back
	failedSeq uint64 // its sequence: re-publishing it (or earlier) resumes
	// scanned and afterFail are ids known to be in the topic: from the
	// start-up scan, and records stored after a failure (acknowledged
	// successfully, but the pipeline re-publishes everything after the
	// failure). Publish acknowledges them without writing.
	scanned    map[string]location
	afterFail  map[string]location
	soloIDs    map[string]struct{} // re-send one record per request (batch too large)
	dupSkipped atomic.Int64

	healthErr atomic.Pointer[error]
}

// location is where a record is stored.
type location struct {
	topic     string
	partition int
}

// pending is one outstanding publish in the FIFO.
type pending struct {
	seq       uint64
	id        string
	topic     string
	partition int // set by the balancer inside WriteMessages
	done      bool
	err       error
	// hdr and buf hold the record's headers; entries are recycled once
	// their ack is released (kafka-go is done with the record by then).
	hdr [maxHeaders]kafkago.Header
	buf []byte
}

// newPendingLocked returns a recycled or new FIFO entry.
func (s *Sink) newPendingLocked(seq uint64, id, topic string) *pending {
	var e *pending
	if n := len(s.free); n > 0 {
		e = s.free[n-1]
		s.free[n-1] = nil
		s.free = s.free[:n-1]
	} else {
		e = new(pending)
	}
	e.seq, e.id, e.topic, e.partition = seq, id, topic, -1
	return e
}

// recycleLocked keeps e for reuse.
func (s *Sink) recycleLocked(e *pending) {
	if len(s.free) >= s.cfg.MaxInFlight {
		return
	}
	buf := e.buf[:0]
	*e = pending{buf: buf}
	s.free = append(s.free, e)
}

// NewSink validates cfg, connects, runs the start-up duplicate scan and
// returns a sink ready to Publish. ctx bounds the start-up work only.
func NewSink(ctx context.Context, cfg Config, opts Options) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts = opts.withDefaults()
	topicT, _ := bridge.ParseTemplate(cfg.Topic, bridge.EncodeKafkaTopic)
	keyT, _ := bridge.ParseTemplate(cfg.Key, bridge.EncodeNone)
	dlqT, _ := bridge.ParseTemplate(cfg.DLQTopic, bridge.EncodeKafkaTopic)
	acks, _ := cfg.requiredAcks()
	codec, _ := cfg.compression()

	s := &Sink{
		cfg:         cfg,
		log:         opts.Logger,
		metrics:     opts.Metrics,
		topic:       newTemplate(topicT),
		key:         newTemplate(keyT),
		dlq:         newTemplate(dlqT),
		structured:  cfg.Format == FormatStructured,
		transport:   opts.Transport,
		addr:        brokerAddr(cfg),
		hash:        &kafkago.Hash{},
		acks:        make(chan bridge.Ack, cfg.MaxInFlight),
		completions: make(chan completion, cfg.MaxInFlight),
		ackerDone:   make(chan struct{}),
		scanned:     map[string]location{},
		afterFail:   map[string]location{},
		soloIDs:     map[string]struct{}{},
	}
	s.drained = sync.NewCond(&s.mu)
	if s.transport == nil {
		t, err := NewTransport(cfg)
		if err != nil {
			return nil, err
		}
		s.transport, s.ownTransport = t, true
	}
	s.client = &kafkago.Client{Addr: s.addr, Transport: s.transport, Timeout: cfg.WriteTimeout}
	base := kafkago.Writer{
		Addr:                   s.addr,
		Balancer:               &recordingBalancer{hash: &kafkago.Hash{}},
		MaxAttempts:            cfg.MaxAttempts,
		WriteBackoffMin:        cfg.RetryBackoffMin,
		WriteBackoffMax:        cfg.RetryBackoffMax,
		BatchSize:              cfg.BatchSize,
		BatchBytes:             cfg.BatchBytes,
		BatchTimeout:           cfg.BatchTimeout,
		ReadTimeout:            cfg.WriteTimeout,
		WriteTimeout:           cfg.WriteTimeout,
		RequiredAcks:           acks,
		Compression:            codec,
		AllowAutoTopicCreation: true,
	}
	s.w = cloneWriter(&base)
	s.w.Async = true
	s.w.Completion = s.complete
	s.w.Transport = &gate{next: s.transport, held: &s.heldBack}
	s.syncW = cloneWriter(&base)
	s.syncW.Balancer = &kafkago.Hash{}
	s.syncW.BatchSize = 1
	s.syncW.Transport = s.transport

	if err := s.scan(ctx); err != nil {
		s.closeTransport()
		return nil, startError(err)
	}
	go s.acker()
	s.log.Info("sink.kafka.started", "brokers", cfg.Brokers, "topic_template", cfg.Topic,
		"key_template", cfg.Key, "format", cfg.Format, "acks", cfg.Acks,
		"batch_size", cfg.BatchSize, "batch_timeout", cfg.BatchTimeout.String(),
		"compression", cfg.Compression, "sasl", cfg.SASLMechanism != "", "tls", cfg.TLS || cfg.TLSCAFile != "")
	return s, nil
}

// cloneWriter copies the exported configuration of a Writer that was never
// used (kafka-go's Writer holds a mutex; copying the zero state is fine).
func cloneWriter(w *kafkago.Writer) *kafkago.Writer {
	return &kafkago.Writer{
		Addr:                   w.Addr,
		Balancer:               w.Balancer,
		MaxAttempts:            w.MaxAttempts,
		WriteBackoffMin:        w.WriteBackoffMin,
		WriteBackoffMax:        w.WriteBackoffMax,
		BatchSize:              w.BatchSize,
		BatchBytes:             w.BatchBytes,
		BatchTimeout:           w.BatchTimeout,
		ReadTimeout:            w.ReadTimeout,
		WriteTimeout:           w.WriteTimeout,
		RequiredAcks:           w.RequiredAcks,
		Compression:            w.Compression,
		AllowAutoTopicCreation: w.AllowAutoTopicCreation,
	}
}

// gate is the Writer's transport: it fails produce requests without sending
// them while held is set.
type gate struct {
	next kafkago.RoundTripper
	held *atomic.Bool
}

func (g *gate) RoundTrip(ctx context.Context, addr net.Addr, req kafkago.Request) (kafkago.Response, error) {
	if _, ok := req.(*produceAPI.Request); ok && g.held.Load() {
		return nil, errHeldBack
	}
	return g.next.RoundTrip(ctx, addr, req)
}

// recordingBalancer is kafka.Hash that also notes the chosen partition in
// the record's FIFO entry (Balance runs inside WriteMessages, before the
// record is batched).
type recordingBalancer struct{ hash *kafkago.Hash }

func (b *recordingBalancer) Balance(msg kafkago.Message, partitions ...int) int {
	p := b.hash.Balance(msg, partitions...)
	if e, ok := msg.WriterData.(*pending); ok {
		e.partition = p
	}
	return p
}

// Acks implements bridge.Sink.
func (s *Sink) Acks() <-chan bridge.Ack { return s.acks }

// Publish implements bridge.Sink: it hands n to the Writer and returns; the
// outcome arrives on Acks in publish order.
func (s *Sink) Publish(ctx context.Context, n *bridge.Notification) error {
	topic := s.topic.render(n)
	key := s.key.renderBytes(n)
	s.pubMu.Lock()
	defer s.pubMu.Unlock()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	if s.heldBack.Load() {
		if !s.failed || s.head != len(s.queue) || n.Sequence > s.failedSeq {
			// An earlier publish failed and the pipeline has not
			// re-published from it yet: do not store n ahead of it.
			s.queue = append(s.queue, &pending{seq: n.Sequence, id: n.ID, topic: topic, partition: -1, done: true,
				err: wrapTopic(errHeldBack, topic, -1)})
			s.releaseAndUnlock()
			return nil
		}
		s.heldBack.Store(false)
		s.failed = false
		s.log.Info("sink.kafka.publish.resumed", "sequence", n.Sequence, "id", n.ID, "topic", topic)
	}
	var (
		loc         location
		known, solo bool
	)
	if len(s.afterFail) > 0 || len(s.scanned) > 0 {
		if loc, known = s.afterFail[n.ID]; !known {
			loc, known = s.scanned[n.ID]
		}
		known = known && loc.topic == topic
	}
	if len(s.soloIDs) > 0 {
		_, solo = s.soloIDs[n.ID]
	}
	var e *pending
	if !known && !solo {
		e = s.newPendingLocked(n.Sequence, n.ID, topic)
		s.queue = append(s.queue, e)
	}
	s.mu.Unlock()

	if e == nil {
		if known {
			if p, err := s.partitionFor(ctx, topic, key); err == nil && p == loc.partition {
				s.skip(n, loc)
				return nil
			}
		}
		if solo {
			return s.publishSolo(ctx, n, topic, key)
		}
		// Known id, but this record would go to another partition: write it.
		s.mu.Lock()
		e = s.newPendingLocked(n.Sequence, n.ID, topic)
		s.queue = append(s.queue, e)
		s.mu.Unlock()
	}

	msg, buf := s.attrs.message(n, topic, key, s.structured, e.hdr[:0], e.buf)
	e.buf = buf
	msg.WriterData = e
	if err := s.w.WriteMessages(ctx, msg); err != nil {
		// Not batched (validation or metadata failed): no Completion will
		// come. e is the newest entry and not done, so it is the tail.
		s.mu.Lock()
		s.queue[len(s.queue)-1] = nil
		s.queue = s.queue[:len(s.queue)-1]
		s.releaseAndUnlock()
		return s.publishError(ctx, err, topic, -1, 1)
	}
	return nil
}

// skip acknowledges n without writing it: it is already stored at loc.
func (s *Sink) skip(n *bridge.Notification, loc location) {
	s.mu.Lock()
	delete(s.afterFail, n.ID)
	s.queue = append(s.queue, &pending{seq: n.Sequence, id: n.ID, topic: loc.topic, partition: loc.partition, done: true})
	s.releaseAndUnlock()
	s.dupSkipped.Add(1)
	s.metrics.DuplicatesDropped.Inc()
	s.log.Debug("sink.kafka.publish.already_stored", "id", n.ID, "sequence", n.Sequence, "topic", loc.topic, "partition", loc.partition)
}

// publishSolo writes n alone, synchronously, once every earlier publish is
// acknowledged: its batch was refused as too large, and alone it either
// fits or is rejected permanently.
func (s *Sink) publishSolo(ctx context.Context, n *bridge.Notification, topic string, key []byte) error {
	s.mu.Lock()
	for s.head != len(s.queue) {
		s.drained.Wait()
	}
	if s.heldBack.Load() {
		s.queue = append(s.queue, &pending{seq: n.Sequence, id: n.ID, topic: topic, partition: -1, done: true,
			err: wrapTopic(errHeldBack, topic, -1)})
		s.releaseAndUnlock()
		return nil
	}
	delete(s.soloIDs, n.ID)
	s.mu.Unlock()
	msg, _ := s.attrs.message(n, topic, key, s.structured, nil, nil)
	err := s.syncW.WriteMessages(ctx, msg)
	var ackErr error
	if err != nil {
		ackErr = s.publishError(ctx, err, topic, -1, 1)
	} else {
		s.setHealthy()
	}
	s.mu.Lock()
	s.queue = append(s.queue, &pending{seq: n.Sequence, id: n.ID, topic: topic, partition: -1, done: true, err: ackErr})
	s.releaseAndUnlock()
	return nil
}

// complete is the Writer's Completion callback: one batch of one partition.
// kafka-go calls it before it sends the partition's next batch, so turning
// heldBack on here stops that batch from being stored ahead of the re-send.
func (s *Sink) complete(msgs []kafkago.Message, err error) {
	var ackErr error
	if err != nil {
		topic, partition := "", -1
		if len(msgs) > 0 {
			topic = msgs[0].Topic
			if e, ok := msgs[0].WriterData.(*pending); ok {
				topic, partition = e.topic, e.partition
			}
		}
		ackErr = s.publishError(context.Background(), err, topic, partition, len(msgs))
		if !bridge.IsPermanent(ackErr) {
			if !s.heldBack.Swap(true) {
				s.log.Warn("sink.kafka.publish.failed", "topic", topic, "partition", partition,
					"records", len(msgs), "error", err.Error(), "retryable", true)
			}
			if classify(err) == tooLarge {
				s.mu.Lock()
				for i := range msgs {
					if e, ok := msgs[i].WriterData.(*pending); ok {
						s.soloIDs[e.id] = struct{}{}
					}
				}
				s.mu.Unlock()
			}
		} else {
			s.log.Warn("sink.kafka.publish.rejected", "topic", topic, "partition", partition,
				"records", len(msgs), "error", err.Error())
		}
	} else {
		s.setHealthy()
	}
	// Marking and releasing is left to the acker goroutine, so that the
	// partition's next batch is not delayed by it. Only heldBack had to be
	// set here. The buffer holds MaxInFlight batches: this does not block.
	s.completions <- completion{msgs: msgs, err: ackErr}
}

// completion is one batch reported by the Writer.
type completion struct {
	msgs []kafkago.Message
	err  error
}

// acker marks the entries of each completed batch done and releases the
// acks that became due, until completions is closed.
func (s *Sink) acker() {
	defer close(s.ackerDone)
	for c := range s.completions {
		s.mu.Lock()
		for i := range c.msgs {
			e, ok := c.msgs[i].WriterData.(*pending)
			if !ok {
				continue
			}
			e.done, e.err = true, c.err
			if c.err == nil {
				e.partition = c.msgs[i].Partition
			}
		}
		s.releaseAndUnlock()
	}
}

// releaseAndUnlock releases the acks that became due and unlocks mu. The
// acks are taken from the FIFO under mu but sent after mu is released (in
// FIFO order: sendMu is taken before mu is let go), so that Publish is not
// held up while a batch's acks are handed over. The Acks buffer holds
// MaxInFlight and the pipeline never has more outstanding, so the sends do
// not block.
func (s *Sink) releaseAndUnlock() {
	if s.head == len(s.queue) || !s.queue[s.head].done {
		s.mu.Unlock()
		return
	}
	s.sendMu.Lock()
	due := s.releaseLocked(s.sendBuf[:0])
	s.mu.Unlock()
	for _, a := range due {
		s.acks <- a
	}
	clear(due)
	s.sendBuf = due[:0]
	s.sendMu.Unlock()
}

// releaseLocked takes the done entries at the head of the FIFO, appends
// their acks to due in order, and recycles the entries.
func (s *Sink) releaseLocked(due []bridge.Ack) []bridge.Ack {
	for s.head < len(s.queue) {
		e := s.queue[s.head]
		if !e.done {
			break
		}
		s.queue[s.head] = nil
		s.head++
		switch {
		case e.err != nil && !bridge.IsPermanent(e.err):
			if s.heldBack.Load() && !s.failed {
				s.failed, s.failedSeq = true, e.seq
			}
		case e.err == nil && s.failed:
			// Stored after the failure the pipeline will re-publish from.
			if len(s.afterFail) > 8*s.cfg.MaxInFlight {
				clear(s.afterFail)
			}
			s.afterFail[e.id] = location{topic: e.topic, partition: e.partition}
		}
		due = append(due, bridge.Ack{Sequence: e.seq, ID: e.id, Err: e.err})
		s.recycleLocked(e)
	}
	if s.head == len(s.queue) {
		clear(s.queue)
		s.queue, s.head = s.queue[:0], 0
		s.drained.Broadcast()
	} else if s.head > 1024 && s.head*2 > len(s.queue) {
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue, s.head = s.queue[:n], 0
	}
	return due
}

// publishError classifies a kafka-go error for the pipeline: permanent
// errors are wrapped with bridge.Permanent; all name the topic. It also
// records health.
func (s *Sink) publishError(ctx context.Context, err error, topic string, partition, records int) error {
	if errors.Is(err, errHeldBack) {
		return wrapTopic(err, topic, partition)
	}
	switch classify(err) {
	case permanent:
		return bridge.Permanent(wrapTopic(err, topic, partition))
	case tooLarge:
		if records <= 1 {
			return bridge.Permanent(wrapTopic(fmt.Errorf("record too large for the broker: %w", err), topic, partition))
		}
		return wrapTopic(fmt.Errorf("batch of %d records too large for the broker; re-sending one record per request: %w", records, err), topic, partition)
	case unknownTopic:
		missing, merr := s.topicMissing(ctx, topic)
		if merr == nil && missing {
			return bridge.Permanent(wrapTopic(fmt.Errorf("topic does not exist and the brokers do not create it: %w", err), topic, partition))
		}
	}
	werr := wrapTopic(err, topic, partition)
	s.setUnhealthy(werr)
	return werr
}

// topicMissing asks the brokers (not the metadata cache: the request allows
// auto-creation, which kafka-go always sends) whether topic exists.
func (s *Sink) topicMissing(ctx context.Context, topic string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	r, err := s.transport.RoundTrip(ctx, s.addr, &metadataAPI.Request{TopicNames: []string{topic}, AllowAutoTopicCreation: true})
	if err != nil {
		return false, err
	}
	for _, t := range r.(*metadataAPI.Response).Topics {
		if t.Name == topic {
			return t.ErrorCode == int16(kafkago.UnknownTopicOrPartition), nil
		}
	}
	return true, nil
}

// partitions returns the partition count of topic from the metadata cache.
func (s *Sink) partitions(ctx context.Context, topic string) (int, error) {
	md, err := s.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	for _, t := range md.Topics {
		if t.Name == topic {
			if t.Error != nil {
				return 0, t.Error
			}
			return len(t.Partitions), nil
		}
	}
	return 0, kafkago.UnknownTopicOrPartition
}

// partitionFor computes the partition the Writer's Hash balancer picks for key.
func (s *Sink) partitionFor(ctx context.Context, topic string, key []byte) (int, error) {
	n, err := s.partitions(ctx, topic)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, kafkago.UnknownTopicOrPartition
	}
	return hashPartition(s.hash, key, n), nil
}

// hashPartition is kafka.Hash over partitions 0..n-1, as the Writer calls it.
func hashPartition(h *kafkago.Hash, key []byte, n int) int {
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	return h.Balance(kafkago.Message{Key: key}, parts...)
}

// DeadLetter implements bridge.Sink: it writes dl synchronously to the
// rendered BRIDGE_DLQ_TOPIC.
func (s *Sink) DeadLetter(ctx context.Context, dl bridge.DeadLetter) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return errClosed
	}
	n := dl.Notification
	if n == nil {
		n = &bridge.Notification{EventType: s.cfg.EventType, Listener: dl.Listener}
	}
	topic := s.dlq.render(n)
	m := kafkago.Message{Topic: topic, Value: dl.Raw, Time: time.Now()}
	h := make([]kafkago.Header, 0, maxHeaders+4)
	if dl.Notification != nil {
		m.Key = s.key.renderBytes(n)
		m.Time = recordTime(n)
		var attrs attrCache // DeadLetter may run beside Publish
		h, _ = attrs.ceHeaders(h, n, nil)
		h = append(h, kafkago.Header{Key: HeaderContentType, Value: contentStructure})
	}
	h = append(h,
		kafkago.Header{Key: HeaderDLQKind, Value: []byte(dl.Kind)},
		kafkago.Header{Key: HeaderDLQReason, Value: []byte(dl.Reason)},
	)
	if dl.Event != "" || dl.Kind == bridge.DeadLetterMalformed {
		h = append(h, kafkago.Header{Key: HeaderDLQEvent, Value: []byte(dl.Event)})
	}
	m.Headers = h
	err := s.syncW.WriteMessages(ctx, m)
	if err != nil && (classify(err) == tooLarge || errors.As(err, new(kafkago.MessageTooLargeError))) {
		// The body that was too large for the sink is usually too large for
		// the dead-letter topic as well: keep the headers (ce_id names the
		// notification) and say the body was left out.
		size := len(m.Value)
		m.Value = nil
		m.Headers = append(m.Headers, kafkago.Header{Key: HeaderDLQBodyOmitted, Value: []byte(strconv.Itoa(size))})
		s.log.Warn("sink.kafka.deadletter.body_omitted", "topic", topic, "bytes", size, "error", err.Error())
		err = s.syncW.WriteMessages(ctx, m)
	}
	if err != nil {
		return fmt.Errorf("dead letter: %w", s.publishError(ctx, err, topic, -1, 1))
	}
	return nil
}

// Healthy implements bridge.HealthReporter: an error while the last
// publish or metadata attempt failed for a retryable reason.
func (s *Sink) Healthy() error {
	if p := s.healthErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Sink) setHealthy() {
	if s.healthErr.Load() != nil {
		s.healthErr.Store(nil)
	}
}

func (s *Sink) setUnhealthy(err error) { s.healthErr.Store(&err) }

// DuplicatesSkipped returns how many publishes were acknowledged without
// writing because the record was already stored.
func (s *Sink) DuplicatesSkipped() int64 { return s.dupSkipped.Load() }

// Close implements bridge.Sink: it flushes the Writer and waits for every
// outstanding acknowledgement until ctx is done. When ctx ends first,
// remaining produce requests fail at once (their acks carry the error) and
// Close returns ctx's error.
func (s *Sink) Close(ctx context.Context) error {
	s.pubMu.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.pubMu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.pubMu.Unlock()

	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.w.Close() // returns after the last Completion call
		close(s.completions)
		<-s.ackerDone
		_ = s.syncW.Close()
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.heldBack.Store(true)
		err = fmt.Errorf("kafka sink: close: %w", ctx.Err())
	}
	if err == nil {
		s.closeTransport()
	}
	return err
}

func (s *Sink) closeTransport() {
	if s.ownTransport {
		s.transport.CloseIdleConnections()
	}
}

var (
	_ bridge.Sink           = (*Sink)(nil)
	_ bridge.HealthReporter = (*Sink)(nil)
)
