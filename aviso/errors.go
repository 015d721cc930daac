package aviso

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrIdleTimeout is returned (wrapped) by Stream.Next and Client.Connect
	// when no byte arrived for the idle budget while a read was waiting. Time
	// the caller spent not reading never counts.
	ErrIdleTimeout = errors.New("aviso: no bytes from the server within the idle budget")
	// ErrEventTooLarge is returned (wrapped) when one SSE event is larger than
	// Client.MaxEventSize. It is terminal for the connection.
	ErrEventTooLarge = errors.New("aviso: SSE event larger than the maximum event size")
	// ErrClosed is returned by Stream.Next after Stream.Close.
	ErrClosed = errors.New("aviso: stream closed")
	// ErrInvalidRequest is wrapped by Connect when the Client or Request
	// cannot form a valid request (bad BaseURL, identifier that is not a JSON
	// object, both FromID and FromDate, replay without a start, both ToID and
	// ToDate, ToID or ToDate in watch mode). Not retryable.
	ErrInvalidRequest = errors.New("aviso: invalid request")
	// ErrCredentials is wrapped by Connect when Credentials.Authorization
	// fails (for example an unreadable token file).
	ErrCredentials = errors.New("aviso: credentials unavailable")
	// ErrOpeningTimeout is wrapped by the ProtocolError of a connection
	// whose response headers or opening frame did not arrive within
	// Client.OpeningTimeout.
	ErrOpeningTimeout = errors.New("aviso: opening deadline exceeded")
	// ErrNotEventStream is wrapped by the ProtocolError of a 200 answer
	// whose Content-Type is not text/event-stream (a wrong base URL, a
	// captive portal).
	ErrNotEventStream = errors.New("aviso: response is not an event stream")
	// ErrMalformed is wrapped by the Err of every KindDecodeError frame and by
	// the errors of ParseCloudEvent and ParseEventID.
	ErrMalformed = errors.New("aviso: malformed frame")
)

// maxRetryAfter caps a server-requested Retry-After delay.
const maxRetryAfter = 300 * time.Second

// HTTPError is a non-200 answer to a watch or replay request. The fields
// from the body are set when the body is aviso's JSON error object.
type HTTPError struct {
	// URL is the endpoint that answered.
	URL    string
	Status int
	// Code, ErrorLabel ("error"), Message, Details and RequestID come from
	// aviso's JSON error body ("" when absent or not JSON).
	Code, ErrorLabel, Message, Details, RequestID string
	// HeaderRequestID is the X-Request-ID response header.
	HeaderRequestID string
	// RetryAfter is the parsed Retry-After header of a 429 or 503 answer
	// (seconds or HTTP-date, capped at 300 s). HasRetryAfter is false when
	// the header is absent, unparseable, a past date, or the status is not
	// 429/503.
	RetryAfter    time.Duration
	HasRetryAfter bool
	// WWWAuthenticate holds every WWW-Authenticate header line.
	WWWAuthenticate []string
	// Body is the response body (at most 64 KiB).
	Body []byte
}

// Unauthorized reports a 401: refresh the credentials and retry.
func (e *HTTPError) Unauthorized() bool { return e.Status == http.StatusUnauthorized }

// Throttled reports a 429 or 503: retry after RetryAfter when HasRetryAfter,
// else with backoff.
func (e *HTTPError) Throttled() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable
}

// ServerError reports any other 5xx: retry with backoff.
func (e *HTTPError) ServerError() bool {
	return e.Status >= 500 && e.Status <= 599 && !e.Throttled()
}

// ConfigError reports every other status (400, 403, 404, 405, 413, 2xx other
// than 200, 3xx, ...): retrying cannot help; the configuration must change.
func (e *HTTPError) ConfigError() bool {
	return !e.Unauthorized() && !e.Throttled() && !e.ServerError()
}

// Error quotes the URL, status, aviso code, message, details and request ids.
func (e *HTTPError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "aviso: POST %s: HTTP %d %s", e.URL, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		fmt.Fprintf(&b, ": code %s", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %q", e.Message)
	}
	if e.Details != "" && e.Details != e.Message {
		fmt.Fprintf(&b, " (details %q)", e.Details)
	}
	if e.Code == "" && e.Message == "" && len(e.Body) > 0 {
		fmt.Fprintf(&b, ": body %q", truncate(e.Body, 200))
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, "; request_id %s", e.RequestID)
	}
	if e.HeaderRequestID != "" && e.HeaderRequestID != e.RequestID {
		fmt.Fprintf(&b, "; X-Request-ID %s", e.HeaderRequestID)
	}
	if e.HasRetryAfter {
		fmt.Fprintf(&b, "; retry after %s", e.RetryAfter)
	}
	return b.String()
}

// EventTooLargeError is the error of an SSE event larger than MaxEventSize;
// it wraps ErrEventTooLarge and ends the connection. After the overflow the
// rest of the event is read and its CloudEvent id recovered, best effort,
// from its end (aviso renders the id after the data, which is what makes an
// event large), so that the caller can count the notification as malformed
// and resume after it instead of receiving it again.
type EventTooLargeError struct {
	Limit     int
	RequestID string
	// ID, EventType and Sequence are the recovered CloudEvent id and its
	// parts; HasSequence is false when no valid id was found.
	ID          string
	EventType   string
	Sequence    uint64
	HasSequence bool
	// Tail is the end of the event (at most 1 KiB), for a dead-letter record.
	Tail []byte
}

// Error names the limit, the recovered id and the request id.
func (e *EventTooLargeError) Error() string {
	s := fmt.Sprintf("%v (limit %d bytes", ErrEventTooLarge, e.Limit)
	if e.ID != "" {
		s += "; CloudEvent id " + e.ID
	}
	if e.RequestID != "" {
		s += "; request_id " + e.RequestID
	}
	return s + ")"
}

// Unwrap returns ErrEventTooLarge.
func (e *EventTooLargeError) Unwrap() error { return ErrEventTooLarge }

// ProtocolError is a response that is not an aviso stream. The cause can be
// told apart with errors.Is and Frame: ErrNotEventStream (a 200 with the
// wrong Content-Type), ErrOpeningTimeout (no headers or no opening frame in
// time), ErrEventTooLarge (an oversized event before the opening), or Frame
// set (an error frame, a connection-closing frame, a malformed frame or an
// unexpected frame where the opening was expected).
type ProtocolError struct {
	Message   string
	RequestID string
	// Frame is the offending frame, when one caused the error.
	Frame *Frame
	// Err is a wrapped cause (ErrEventTooLarge, ...), or nil.
	Err error
}

// Error returns the message and the request id.
func (e *ProtocolError) Error() string {
	s := "aviso: protocol error: " + e.Message
	if e.RequestID != "" {
		s += "; request_id " + e.RequestID
	}
	return s
}

// Unwrap returns the wrapped cause.
func (e *ProtocolError) Unwrap() error { return e.Err }

// TransportError is a dial, TLS or read failure, or a body that ended before
// the opening frame. Always retryable.
type TransportError struct {
	Err error
	// RequestID is the X-Request-ID of the stream, when one was open.
	RequestID string
}

// Error returns the underlying error and the request id.
func (e *TransportError) Error() string {
	s := "aviso: transport: " + e.Err.Error()
	if e.RequestID != "" {
		s += "; request_id " + e.RequestID
	}
	return s
}

// Unwrap returns the underlying error.
func (e *TransportError) Unwrap() error { return e.Err }

// parseRetryAfter parses a Retry-After value: non-negative integer seconds
// or a future HTTP-date, capped at maxRetryAfter.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		if n > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d <= 0 {
		return 0, false
	}
	return min(d, maxRetryAfter), true
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}
