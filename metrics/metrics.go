// Package metrics builds the bridge's Metrics on Prometheus client_golang,
// registered on a registry passed in (never the global one). It sits beside
// the data flow: every stage (supervisor, bridge, sinks) records into the
// same *bridge.Metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

const namespace = "aviso_bridge"

// New registers every metric of interface.md section 5 on reg and returns
// them as a *bridge.Metrics.
func New(reg prometheus.Registerer) *bridge.Metrics {
	f := factory{reg: reg}
	rejected := f.counterVec("notifications_rejected_total", "Notifications the sink rejected permanently, by the BRIDGE_ON_REJECT action taken.", "action")
	reconnects := f.counterVec("reconnects_total", "Reconnects to aviso-server, by reason.", "reason")
	for _, a := range []string{"fail", "dlq", "skip"} {
		rejected.WithLabelValues(a)
	}
	latencyBuckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	return &bridge.Metrics{
		NotificationsReceived:  f.counter("notifications_received_total", "Notifications read from aviso-server (after decoding, before deduplication)."),
		NotificationsPublished: f.counter("notifications_published_total", "Notifications acknowledged by the sink."),
		NotificationsRejected:  func(action string) bridge.Counter { return rejected.WithLabelValues(action) },
		DuplicatesDropped:      f.counter("duplicates_dropped_total", "Notifications dropped because their sequence was already forwarded (seam duplicates, reconnect re-sends)."),
		MalformedFrames:        f.counter("malformed_frames_total", "SSE frames that could not be decoded."),
		SequenceGaps:           f.counter("sequence_gaps_total", "Forward jumps in the aviso sequence (normal under filters and after retention purges)."),
		ServerErrors:           f.counter("server_errors_total", "aviso `error` frames received."),
		Reconnects:             func(reason string) bridge.Counter { return reconnects.WithLabelValues(reason) },
		Connected:              f.gauge("connected", "1 while the aviso stream is open with its opening frame confirmed."),
		InFlight:               f.gauge("in_flight", "Notifications handed to the sink and not yet acknowledged."),
		CheckpointSequence:     f.gauge("checkpoint_sequence", "Last committed aviso sequence."),
		CheckpointCommits:      f.counter("checkpoint_commits_total", "Checkpoint commits written."),
		CheckpointErrors:       f.counter("checkpoint_errors_total", "Checkpoint commits that failed."),
		SinkErrors:             f.counter("sink_errors_total", "Publish failures reported by the sink (retryable and permanent)."),
		PublishLatency:         f.histogram("publish_latency_seconds", "Time from receipt from aviso to sink acknowledgement.", latencyBuckets),
		EventAge:               f.histogram("event_age_seconds", "Time from the CloudEvent time to sink acknowledgement.", []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400}),
		LastAckTimestamp:       f.gauge("last_ack_timestamp_seconds", "Unix time of the last sink acknowledgement."),
		DeadLettered:           f.counter("dead_lettered_total", "Items published to the dead-letter destination."),
		SinkRetries:            f.counter("sink_retries_total", "Ordered re-publish rounds after a retryable sink failure."),
		ReplayLimitsReached:    f.counter("replay_limit_reached_total", "notification_replay_limit_reached frames (the bridge keeps paging)."),
		Unrenderable:           f.counter("unrenderable_total", "Notifications aviso-server reported it cannot build (CloudEvent creation failed error frames); the bridge skips them."),
		BehindCheckpoint:       f.counter("behind_checkpoint_total", "Times aviso-server was found serving sequences below the committed checkpoint for longer than the grace."),
	}
}

type factory struct{ reg prometheus.Registerer }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help, label string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, []string{label})
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}
