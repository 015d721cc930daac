package bridge

// Counter, Gauge and Histogram are the parts of a metrics library the bridge
// uses; prometheus.Counter, prometheus.Gauge and prometheus.Observer satisfy
// them. Package metrics builds a Metrics backed by Prometheus.
type Counter interface {
	Inc()
	Add(float64)
}

// Gauge is a value that goes up and down.
type Gauge interface {
	Set(float64)
	Inc()
	Dec()
	Add(float64)
}

// Histogram records observations.
type Histogram interface {
	Observe(float64)
}

// Metrics holds every metric of the bridge (README, "Metrics and health"). Every
// field is non-nil; use NopMetrics in tests that do not look at them.
type Metrics struct {
	NotificationsReceived  Counter
	NotificationsPublished Counter // acknowledged by the sink
	// NotificationsRejected returns the counter for action "fail", "dlq" or "skip".
	NotificationsRejected func(action string) Counter
	DuplicatesDropped     Counter
	MalformedFrames       Counter
	SequenceGaps          Counter
	ServerErrors          Counter // aviso `error` frames
	// Reconnects returns the counter for a reconnect reason.
	Reconnects          func(reason string) Counter
	Connected           Gauge // 0/1: aviso stream open with its opening frame confirmed
	InFlight            Gauge
	CheckpointSequence  Gauge
	CheckpointCommits   Counter
	CheckpointErrors    Counter
	SinkErrors          Counter
	PublishLatency      Histogram // seconds, receipt to ack
	EventAge            Histogram // seconds, CloudEvent time to ack
	LastAckTimestamp    Gauge     // unix seconds
	DeadLettered        Counter   // items published to the dead-letter destination
	SinkRetries         Counter   // ordered re-publishes after a retryable sink failure
	ReplayLimitsReached Counter
	// Unrenderable counts notifications aviso reported it cannot build
	// ("CloudEvent creation failed" error frames with a sequence).
	Unrenderable Counter
	// BehindCheckpoint counts detections of aviso-server serving sequences
	// below the committed checkpoint for longer than the grace (storage
	// reset, checkpoint restored from elsewhere).
	BehindCheckpoint Counter
}

type nopMetric struct{}

func (nopMetric) Inc()            {}
func (nopMetric) Dec()            {}
func (nopMetric) Add(float64)     {}
func (nopMetric) Set(float64)     {}
func (nopMetric) Observe(float64) {}

// NopMetrics returns Metrics that record nothing.
func NopMetrics() *Metrics {
	n := nopMetric{}
	return &Metrics{
		NotificationsReceived:  n,
		NotificationsPublished: n,
		NotificationsRejected:  func(string) Counter { return n },
		DuplicatesDropped:      n,
		MalformedFrames:        n,
		SequenceGaps:           n,
		ServerErrors:           n,
		Reconnects:             func(string) Counter { return n },
		Connected:              n,
		InFlight:               n,
		CheckpointSequence:     n,
		CheckpointCommits:      n,
		CheckpointErrors:       n,
		SinkErrors:             n,
		PublishLatency:         n,
		EventAge:               n,
		LastAckTimestamp:       n,
		DeadLettered:           n,
		SinkRetries:            n,
		ReplayLimitsReached:    n,
		Unrenderable:           n,
		BehindCheckpoint:       n,
	}
}

// ListenerState is what a listener is doing on this bridge: the "state" of
// GET /status and the state label of aviso_bridge_listener_state
// (README, "Metrics and health").
type ListenerState string

const (
	// ListenerStarting: configured, its stream not yet confirmed open.
	ListenerStarting ListenerState = "starting"
	// ListenerRunning: its stream is being forwarded by this bridge.
	ListenerRunning ListenerState = "running"
	// ListenerStandby: waiting for its lease (another bridge holds it).
	ListenerStandby ListenerState = "standby"
	// ListenerFailed: stopped by a permanent error (aviso 4xx, a rejection
	// under BRIDGE_ON_REJECT=fail); the other listeners go on.
	ListenerFailed ListenerState = "failed"
	// ListenerFinished: its replay reached its end.
	ListenerFinished ListenerState = "finished"
)

// ListenerStates returns every ListenerState, in lifecycle order.
func ListenerStates() []ListenerState {
	return []ListenerState{ListenerStarting, ListenerRunning, ListenerStandby, ListenerFailed, ListenerFinished}
}
