package aviso

import (
	"encoding/json"
	"fmt"
	"time"
)

// FrameKind says what a Frame carries.
type FrameKind int

const (
	// KindNotification is a CloudEvent from a live-notification or replay
	// event; Frame.Notification is set.
	KindNotification FrameKind = iota + 1
	// KindConnectionEstablished opens a live-only watch (a live-notification
	// whose top-level type is "connection_established"). Timestamp is the
	// server time a live-only start can be pinned to.
	KindConnectionEstablished
	// KindReplayStarted opens a watch or replay that carried a start
	// position (FromSequence, FromDate, BatchSize; from aviso-server 0.13
	// also EndSequence and ToDate).
	KindReplayStarted
	// KindReplayCompleted ends the replay part; a watch continues live.
	KindReplayCompleted
	// KindReplayLimitReached: the server stopped replaying after MaxAllowed
	// notifications (HasMaxAllowed is false when the frame lacks the key).
	KindReplayLimitReached
	// KindHeartbeat is a heartbeat event (its data is decoded best-effort and
	// never yields a decode error).
	KindHeartbeat
	// KindServerError is an aviso "error" event: ErrorCode is its "error"
	// member ("stream_processing_failed", "CloudEvent creation failed"),
	// Message and RequestID are set, Sequence when HasSequence. The stream
	// stays open. When the data is not valid JSON, Err is set and the frame
	// is still a server error.
	KindServerError
	// KindClosing is a connection-closing event: Reason ("end_of_stream",
	// "max_duration_reached", "server_shutdown" or anything else), Message,
	// RequestID. The server ends the body after it. When the data is not
	// valid JSON, Err is set and Reason is "".
	KindClosing
	// KindDecodeError is a frame of a known event that could not be decoded
	// (malformed notification or replay-control). Raw and Err are set; the
	// stream continues.
	KindDecodeError
)

var kindNames = [...]string{
	KindNotification:          "notification",
	KindConnectionEstablished: "connection_established",
	KindReplayStarted:         "replay_started",
	KindReplayCompleted:       "replay_completed",
	KindReplayLimitReached:    "replay_limit_reached",
	KindHeartbeat:             "heartbeat",
	KindServerError:           "server_error",
	KindClosing:               "closing",
	KindDecodeError:           "decode_error",
}

// String returns a snake_case name ("notification", "replay_started", ...)
// for logs.
func (k FrameKind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("FrameKind(%d)", int(k))
}

// SSE event names used by aviso-server.
const (
	EventLiveNotification  = "live-notification"
	EventReplay            = "replay"
	EventReplayControl     = "replay-control"
	EventHeartbeat         = "heartbeat"
	EventError             = "error"
	EventConnectionClosing = "connection-closing"
)

// Frame is one decoded SSE event of an aviso stream. Which fields are set
// depends on Kind (see the FrameKind constants).
type Frame struct {
	Kind FrameKind
	// Event is the SSE event name.
	Event string
	// Notification is set for KindNotification.
	Notification Notification
	// RequestID, Timestamp and Topic are the control-frame members of the
	// same names ("" when absent).
	RequestID, Timestamp, Topic string
	// Reason is the connection-closing reason; Message the message of
	// closing, error and replay-limit frames.
	Reason, Message string
	// ErrorCode is the "error" member of error frames.
	ErrorCode string
	// Sequence is the sequence of a "CloudEvent creation failed" error frame.
	Sequence    uint64
	HasSequence bool
	// MaxAllowed is the max_allowed member of a replay-limit frame.
	MaxAllowed    uint64
	HasMaxAllowed bool
	// FromSequence, FromDate and BatchSize describe a replay_started frame
	// (FromSequence nil and FromDate "" when the server sent null).
	FromSequence *uint64
	FromDate     string
	BatchSize    int
	// EndSequence and ToDate are the 0.13 members of replay_started: the
	// last sequence the replay will deliver, fixed by the server when it
	// accepted the request, and the to_date it was given. EndSequence is nil
	// when the member is absent or null (aviso-server 0.7.1), ToDate "" when
	// absent or null.
	EndSequence *uint64
	ToDate      string
	// WillCloseIn is connection_will_close_in_seconds of a
	// connection_established frame (0 when absent).
	WillCloseIn time.Duration
	// Raw is the data of the SSE event (for notifications the same bytes as
	// Notification.CloudEvent). It shares memory with the frame: read-only.
	Raw []byte
	// Err says why a KindDecodeError frame could not be decoded (it wraps
	// ErrMalformed); also set on server-error and closing frames whose data
	// is not valid JSON.
	Err error
}

// control is the union of the members of every aviso control frame.
type control struct {
	Type         string  `json:"type"`
	RequestID    string  `json:"request_id"`
	Timestamp    string  `json:"timestamp"`
	Topic        string  `json:"topic"`
	Reason       string  `json:"reason"`
	Message      string  `json:"message"`
	Error        string  `json:"error"`
	Sequence     *uint64 `json:"sequence"`
	MaxAllowed   *uint64 `json:"max_allowed"`
	FromSequence *uint64 `json:"from_sequence"`
	FromDate     *string `json:"from_date"`
	BatchSize    int     `json:"batch_size"`
	EndSequence  *uint64 `json:"end_sequence"`
	ToDate       *string `json:"to_date"`
	WillClose    *uint64 `json:"connection_will_close_in_seconds"`
}

func (c *control) fill(f *Frame) {
	f.RequestID, f.Timestamp, f.Topic = c.RequestID, c.Timestamp, c.Topic
	f.Reason, f.Message, f.ErrorCode = c.Reason, c.Message, c.Error
	if c.Sequence != nil {
		f.Sequence, f.HasSequence = *c.Sequence, true
	}
	if c.MaxAllowed != nil {
		f.MaxAllowed, f.HasMaxAllowed = *c.MaxAllowed, true
	}
	f.FromSequence = c.FromSequence
	if c.FromDate != nil {
		f.FromDate = *c.FromDate
	}
	f.BatchSize = c.BatchSize
	f.EndSequence = c.EndSequence
	if c.ToDate != nil {
		f.ToDate = *c.ToDate
	}
	if c.WillClose != nil && *c.WillClose < uint64(1<<63-1)/uint64(time.Second) {
		f.WillCloseIn = time.Duration(*c.WillClose) * time.Second
	}
}

func decodeErr(f Frame, err error) Frame {
	f.Kind, f.Err = KindDecodeError, err
	f.Notification = Notification{}
	return f
}

// decodeEvent turns one SSE event into a Frame; ok is false for events the
// bridge ignores: unknown or empty event names, unknown replay-control types,
// and events with empty data (a block with only an event: line dispatches
// nothing under WHATWG, and go-sse cannot tell it from "data:" with an empty
// value).
func decodeEvent(event, data string) (f Frame, ok bool) {
	if data == "" {
		return Frame{}, false
	}
	f = Frame{Event: event, Raw: stringBytes(data)}
	switch event {
	case EventLiveNotification, EventReplay:
		n, typ, err := parseNotification(f.Raw)
		if typ == "connection_established" {
			return decodeControl(f, KindConnectionEstablished)
		}
		if err != nil {
			return decodeErr(f, fmt.Errorf("%s frame: %w", event, err)), true
		}
		f.Kind, f.Notification, f.Raw = KindNotification, n, n.CloudEvent
		return f, true
	case EventReplayControl:
		var c control
		if err := json.Unmarshal(f.Raw, &c); err != nil {
			return decodeErr(f, fmt.Errorf("%w: replay-control frame: %w", ErrMalformed, err)), true
		}
		switch c.Type {
		case "replay_started":
			f.Kind = KindReplayStarted
		case "replay_completed":
			f.Kind = KindReplayCompleted
		case "notification_replay_limit_reached":
			f.Kind = KindReplayLimitReached
		default:
			return Frame{}, false
		}
		c.fill(&f)
		return f, true
	case EventHeartbeat:
		var c control
		_ = json.Unmarshal(f.Raw, &c) // best effort: a heartbeat only proves liveness
		f.Kind, f.Timestamp, f.Topic = KindHeartbeat, c.Timestamp, c.Topic
		return f, true
	case EventError:
		return decodeLenient(f, KindServerError)
	case EventConnectionClosing:
		return decodeLenient(f, KindClosing)
	}
	return Frame{}, false
}

func decodeControl(f Frame, kind FrameKind) (Frame, bool) {
	var c control
	if err := json.Unmarshal(f.Raw, &c); err != nil {
		return decodeErr(f, fmt.Errorf("%w: %s frame (%s): %w", ErrMalformed, f.Event, kind, err)), true
	}
	f.Kind = kind
	c.fill(&f)
	return f, true
}

// decodeLenient decodes error and connection-closing frames, whose kind is
// known from the event name alone: bad data still yields that kind (with
// Err), so that the supervisor never mistakes a failed replay or a close for
// data.
func decodeLenient(f Frame, kind FrameKind) (Frame, bool) {
	var c control
	if err := json.Unmarshal(f.Raw, &c); err != nil {
		f.Err = fmt.Errorf("%w: %s frame: %w", ErrMalformed, f.Event, err)
	}
	f.Kind = kind
	c.fill(&f)
	return f, true
}
