// Package metrics builds the bridge's Metrics on Prometheus client_golang,
// registered on a registry passed in (never the global one). It sits beside
// the data flow: every stage of one listener (supervisor, pipeline, sink)
// records into the same *bridge.Metrics, whose series carry that listener's
// name in the label "listener" (README, "Metrics and health").
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

const (
	namespace = "aviso_bridge"
	// ListenerLabel is the label naming the listener on every per-listener
	// metric.
	ListenerLabel = "listener"
	// StateLabel is the second label of aviso_bridge_listener_state.
	StateLabel = "state"
)

// Set holds the metrics of every listener of one bridge, registered once on
// one registry. It is safe for concurrent use.
type Set struct {
	v     vectors
	state *prometheus.GaugeVec

	mu        sync.Mutex
	listeners map[string]*bridge.Metrics
}

// NewSet registers every metric of README, "Metrics and health" on reg, each
// per-listener one with the label "listener", and
// aviso_bridge_listener_state{listener,state}. A registry holds at most one
// Set (registering twice panics, as prometheus.MustRegister does).
func NewSet(reg prometheus.Registerer) *Set {
	s := newSet(reg, true)
	s.state = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "listener_state",
		Help: "1 for the listener's current state on this bridge (starting, running, standby, failed, finished), 0 for the others."},
		[]string{ListenerLabel, StateLabel})
	reg.MustRegister(s.state)
	return s
}

// New registers the metrics of one unnamed listener on reg, without the
// label "listener" and without listener_state: the exposition of a bridge
// that predates named listeners, kept until cmd/aviso-bridge, the
// binary-level tests and internal/e2ebench use NewSet and Listener (the
// contract wants the label on every per-listener metric).
func New(reg prometheus.Registerer) *bridge.Metrics {
	return newSet(reg, false).Listener("")
}

// newSet registers the per-listener vectors, labelled with "listener" or
// (the form of New) not.
func newSet(reg prometheus.Registerer, labelled bool) *Set {
	f := &factory{reg: reg, labelled: labelled}
	return &Set{v: newVectors(f), listeners: map[string]*bridge.Metrics{}}
}

// Listener returns the metrics of the listener name: every series with
// listener=name, created on the first call (counters and gauges at 0) and
// the same *bridge.Metrics on every later call until Forget(name).
func (s *Set) Listener(name string) *bridge.Metrics {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.listeners[name]; ok {
		return m
	}
	m := s.v.forListener(name)
	s.listeners[name] = m
	return m
}

// Forget deletes every per-listener series of name (when the listener moved
// to another bridge, so that this bridge no longer exports its gauges such
// as connected and checkpoint_sequence). Metrics returned earlier keep
// working but are no longer exported; the next Listener(name) starts new
// series (counters from 0, which Prometheus reads as a reset). The listener's
// aviso_bridge_listener_state is kept: a listener held elsewhere is
// "standby" here (SetState).
func (s *Set) Forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.listeners, name)
	l := prometheus.Labels{ListenerLabel: name}
	for _, v := range s.v.all {
		v.DeletePartialMatch(l)
	}
}

// SetState sets aviso_bridge_listener_state of listener: 1 for state, 0 for
// every other state of bridge.ListenerStates (all 0 when state is none of
// them).
func (s *Set) SetState(listener string, state bridge.ListenerState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range bridge.ListenerStates() {
		v := 0.0
		if st == state {
			v = 1
		}
		s.state.WithLabelValues(listener, string(st)).Set(v)
	}
}

// vectors are the per-listener collectors; all lists them for Forget.
type vectors struct {
	all      []*prometheus.MetricVec
	labelled bool // the first label is "listener"

	received, published, rejected, reconnects   *prometheus.CounterVec
	duplicates, malformed, gaps, serverErrors   *prometheus.CounterVec
	commits, checkpointErrors, sinkErrors       *prometheus.CounterVec
	deadLettered, sinkRetries, replayLimits     *prometheus.CounterVec
	unrenderable, behind                        *prometheus.CounterVec
	connected, inFlight, checkpointSeq, lastAck *prometheus.GaugeVec
	latency, eventAge                           *prometheus.HistogramVec
}

func newVectors(f *factory) vectors {
	latencyBuckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	ageBuckets := []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400}
	v := vectors{
		received:         f.counter("notifications_received_total", "Notifications read from aviso-server (after decoding, before deduplication)."),
		published:        f.counter("notifications_published_total", "Notifications acknowledged by the sink."),
		rejected:         f.counter("notifications_rejected_total", "Notifications the sink rejected permanently, by the action the reject policy took (fail, dlq or skip).", "action"),
		duplicates:       f.counter("duplicates_dropped_total", "Notifications dropped because their sequence was already forwarded (seam duplicates, reconnect re-sends)."),
		malformed:        f.counter("malformed_frames_total", "SSE frames that could not be decoded."),
		gaps:             f.counter("sequence_gaps_total", "Forward jumps in the aviso sequence (normal under filters and after retention purges)."),
		serverErrors:     f.counter("server_errors_total", "aviso `error` frames received."),
		reconnects:       f.counter("reconnects_total", "Reconnects to aviso-server, by reason.", "reason"),
		connected:        f.gauge("connected", "1 while the aviso stream is open with its opening frame confirmed."),
		inFlight:         f.gauge("in_flight", "Notifications handed to the sink and not yet acknowledged."),
		checkpointSeq:    f.gauge("checkpoint_sequence", "Last committed aviso sequence."),
		commits:          f.counter("checkpoint_commits_total", "Checkpoint commits written."),
		checkpointErrors: f.counter("checkpoint_errors_total", "Checkpoint commits that failed."),
		sinkErrors:       f.counter("sink_errors_total", "Publish failures reported by the sink (retryable and permanent)."),
		latency:          f.histogram("publish_latency_seconds", "Time from receipt from aviso to sink acknowledgement.", latencyBuckets),
		eventAge:         f.histogram("event_age_seconds", "Time from the CloudEvent time to sink acknowledgement.", ageBuckets),
		lastAck:          f.gauge("last_ack_timestamp_seconds", "Unix time of the last sink acknowledgement."),
		deadLettered:     f.counter("dead_lettered_total", "Items published to the dead-letter destination."),
		sinkRetries:      f.counter("sink_retries_total", "Ordered re-publish rounds after a retryable sink failure."),
		replayLimits:     f.counter("replay_limit_reached_total", "notification_replay_limit_reached frames (the bridge keeps paging)."),
		unrenderable:     f.counter("unrenderable_total", "Notifications aviso-server reported it cannot build (CloudEvent creation failed error frames); the bridge skips them."),
		behind:           f.counter("behind_checkpoint_total", "Times aviso-server was found serving sequences below the committed checkpoint for longer than the grace."),
	}
	v.all, v.labelled = f.vecs, f.labelled
	return v
}

// forListener curries every vector with listener=name.
func (v *vectors) forListener(name string) *bridge.Metrics {
	l, lv := prometheus.Labels{}, []string(nil)
	if v.labelled {
		l, lv = prometheus.Labels{ListenerLabel: name}, []string{name}
	}
	rejected := v.rejected.MustCurryWith(l)
	for _, a := range []bridge.RejectPolicy{bridge.RejectFail, bridge.RejectDLQ, bridge.RejectSkip} {
		rejected.WithLabelValues(string(a))
	}
	reconnects := v.reconnects.MustCurryWith(l)
	return &bridge.Metrics{
		NotificationsReceived:  v.received.WithLabelValues(lv...),
		NotificationsPublished: v.published.WithLabelValues(lv...),
		NotificationsRejected:  func(action string) bridge.Counter { return rejected.WithLabelValues(action) },
		DuplicatesDropped:      v.duplicates.WithLabelValues(lv...),
		MalformedFrames:        v.malformed.WithLabelValues(lv...),
		SequenceGaps:           v.gaps.WithLabelValues(lv...),
		ServerErrors:           v.serverErrors.WithLabelValues(lv...),
		Reconnects:             func(reason string) bridge.Counter { return reconnects.WithLabelValues(reason) },
		Connected:              v.connected.WithLabelValues(lv...),
		InFlight:               v.inFlight.WithLabelValues(lv...),
		CheckpointSequence:     v.checkpointSeq.WithLabelValues(lv...),
		CheckpointCommits:      v.commits.WithLabelValues(lv...),
		CheckpointErrors:       v.checkpointErrors.WithLabelValues(lv...),
		SinkErrors:             v.sinkErrors.WithLabelValues(lv...),
		PublishLatency:         v.latency.WithLabelValues(lv...),
		EventAge:               v.eventAge.WithLabelValues(lv...),
		LastAckTimestamp:       v.lastAck.WithLabelValues(lv...),
		DeadLettered:           v.deadLettered.WithLabelValues(lv...),
		SinkRetries:            v.sinkRetries.WithLabelValues(lv...),
		ReplayLimitsReached:    v.replayLimits.WithLabelValues(lv...),
		Unrenderable:           v.unrenderable.WithLabelValues(lv...),
		BehindCheckpoint:       v.behind.WithLabelValues(lv...),
	}
}

// factory registers per-listener vectors (label "listener" first when
// labelled, then labels) and remembers them.
type factory struct {
	reg      prometheus.Registerer
	labelled bool
	vecs     []*prometheus.MetricVec
}

func (f *factory) labels(labels []string) []string {
	if !f.labelled {
		return labels
	}
	return append([]string{ListenerLabel}, labels...)
}

func (f *factory) counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, f.labels(labels))
	f.reg.MustRegister(c)
	f.vecs = append(f.vecs, c.MetricVec)
	return c
}

func (f *factory) gauge(name, help string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, f.labels(nil))
	f.reg.MustRegister(g)
	f.vecs = append(f.vecs, g.MetricVec)
	return g
}

func (f *factory) histogram(name, help string, buckets []float64) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, f.labels(nil))
	f.reg.MustRegister(h)
	f.vecs = append(f.vecs, h.MetricVec)
	return h
}
