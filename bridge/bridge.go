// Package bridge is the domain of aviso-bridge: the Notification that flows
// from aviso-server to a stream platform, the Sink and checkpoint Store
// contracts, and the pipeline that couples them with an ordered in-flight
// window and a commit-after-acknowledgement watermark.
//
// Data flow: SSE bytes (package aviso) -> resilient stream (package
// supervisor) -> ordered window and watermark (this package) -> Sink ->
// Store. This package imports no client library; sinks and stores live in
// packages named after their dependency and import bridge.
package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Notification is one aviso notification as the bridge forwards it. Byte
// slices alias the decoder's buffers and must be treated as read-only.
type Notification struct {
	// EventType and Sequence are split from the CloudEvent id at its last '@'.
	EventType string
	Sequence  uint64
	// ID is the CloudEvent id, "<event_type>@<sequence>": the deduplication
	// id in every sink (Nats-Msg-Id, ce_id).
	ID string
	// Source, Type, DataSchema and DataContentType are CloudEvent attributes
	// exactly as received ("" when absent).
	Source          string
	Type            string
	DataSchema      string
	DataContentType string
	// TimeRaw is the CloudEvent time attribute exactly as received; Time is
	// its parsed value (zero when absent or unparseable).
	TimeRaw string
	Time    time.Time
	// Identifier is the raw JSON object data.identifier.
	Identifier json.RawMessage
	// Data is the CloudEvent data member exactly as received
	// ({"identifier":{...},"payload":...}); binary-mode sinks send it as the body.
	Data json.RawMessage
	// CloudEvent is the whole CloudEvent JSON exactly as received;
	// structured-mode sinks and stdout send it as the body.
	CloudEvent json.RawMessage
	// Received is when the bridge read the notification from the wire
	// (the start of publish_latency_seconds).
	Received time.Time
	// Listener is the name of the listener (the aviso watch) that received
	// it: the {listener} placeholder of every template ("" renders like a
	// missing value).
	Listener string
}

// IdentifierValue returns the value of identifier key k as template text: a
// JSON string is unquoted, any other JSON value is returned as its compact
// JSON text. ok is false when the key is absent or the value is null.
func (n *Notification) IdentifierValue(k string) (v string, ok bool) {
	return identifierValue(n.Identifier, k)
}

// Ack is the outcome of one accepted Publish.
type Ack struct {
	// Sequence and ID identify the notification the outcome belongs to.
	Sequence uint64
	ID       string
	// Err is nil when the sink stored the notification. Otherwise it is
	// retryable unless IsPermanent(Err).
	Err error
}

// Sink is an asynchronous destination.
//
// Contract:
//   - Publish hands n to the sink and returns without waiting for the
//     acknowledgement. It may block briefly for the sink's own flow control,
//     but never on the caller reading Acks.
//   - For every Publish that returns nil, exactly one Ack arrives on Acks,
//     and Acks arrive in Publish order.
//   - A non-nil error from Publish means n was not accepted and no Ack will
//     follow; it is classified like Ack.Err (IsPermanent).
//   - The Acks channel is buffered to at least the MaxInFlight the sink was
//     built with, so the sink never waits for the pipeline to read it; the
//     pipeline never has more than its own MaxInFlight outstanding.
//   - After a retryable failure the pipeline waits for every outstanding Ack,
//     then publishes the failed notification and everything after it again,
//     in order. A sink should fail fast (not store) publishes that follow a
//     failure it has already reported, so that the stored order stays the
//     receipt order.
//   - DeadLetter publishes to the dead-letter destination and blocks until
//     the sink acknowledges it.
//   - Close flushes, waits for outstanding acknowledgements until ctx is
//     done, and releases connections. Acks is not closed by Close.
type Sink interface {
	Publish(ctx context.Context, n *Notification) error
	Acks() <-chan Ack
	DeadLetter(ctx context.Context, dl DeadLetter) error
	Close(ctx context.Context) error
}

// HealthReporter is implemented by sinks and stores that can tell whether
// their connection is usable. A nil error means healthy; /readyz reports
// the error text.
type HealthReporter interface {
	Healthy() error
}

// PositionReporter is implemented by sinks that can tell, at start-up, the
// highest aviso sequence of this watch already stored in the destination
// (for example the last message of the JetStream subject). The supervisor
// resumes from the larger of that and the checkpoint.
type PositionReporter interface {
	LastStored(ctx context.Context) (seq uint64, found bool, err error)
}

// DeadLetterKind says why an item was dead-lettered.
type DeadLetterKind string

const (
	// DeadLetterRejected is a notification the sink rejected permanently.
	DeadLetterRejected DeadLetterKind = "rejected"
	// DeadLetterMalformed is a frame that could not be decoded.
	DeadLetterMalformed DeadLetterKind = "malformed"
	// DeadLetterUnrenderable is a notification aviso-server reported it
	// cannot turn into a CloudEvent (an error frame with its sequence).
	DeadLetterUnrenderable DeadLetterKind = "unrenderable"
)

// DeadLetter is one item for the dead-letter destination.
type DeadLetter struct {
	Kind DeadLetterKind
	// Notification is the rejected notification; nil for a malformed frame.
	Notification *Notification
	// Raw is the body to publish: the CloudEvent JSON of a rejected
	// notification, or the raw frame data of a malformed frame.
	Raw []byte
	// Event is the SSE event name of a malformed frame.
	Event string
	// Reason is the error text, sent in a header.
	Reason string
	// Listener names the listener of an item without a Notification
	// (malformed, unrenderable), for the {listener} placeholder of the
	// dead-letter destination; with a Notification, its Listener is used.
	Listener string
}

// Checkpoint is a committed position: every notification received up to and
// including Sequence was acknowledged by the sink.
type Checkpoint struct {
	Sequence uint64 `json:"last_committed_sequence"`
	// EventID is "<event_type>@<sequence>", for diagnosis only.
	EventID string `json:"last_event_id,omitempty"`
	// UpdatedAt is when the commit was made.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Store persists the checkpoint of one checkpoint key (bound when the store
// is opened).
//
// Contract: Load returns found=false when nothing was committed yet, and an
// error (never found=false) when the stored state exists but is unreadable.
// Commit is monotonic: a sequence at or below the stored one is a no-op.
// Opening a store for a key that another live bridge holds fails with an
// error wrapping ErrKeyHeld.
type Store interface {
	Load(ctx context.Context) (cp Checkpoint, found bool, err error)
	Commit(ctx context.Context, cp Checkpoint) error
	Close() error
}

// EventID formats the CloudEvent id of event type t and sequence seq.
func EventID(t string, seq uint64) string {
	return t + "@" + strconv.FormatUint(seq, 10)
}

// RejectPolicy is BRIDGE_ON_REJECT: what to do with a notification the sink
// rejects permanently.
type RejectPolicy string

const (
	RejectFail RejectPolicy = "fail"
	RejectDLQ  RejectPolicy = "dlq"
	RejectSkip RejectPolicy = "skip"
)

// ParseRejectPolicy parses a reject policy (BRIDGE_ON_REJECT in
// cmd/aviso-bridge).
func ParseRejectPolicy(s string) (RejectPolicy, error) {
	switch p := RejectPolicy(s); p {
	case RejectFail, RejectDLQ, RejectSkip:
		return p, nil
	}
	return "", fmt.Errorf("unknown policy %q (want fail, dlq or skip)", s)
}
