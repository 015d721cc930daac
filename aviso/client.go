// Package aviso is the bridge's input: the aviso-server protocol layer. It
// opens one watch or replay connection (POST {base}/api/v1/watch or
// /api/v1/replay), classifies the HTTP outcome, waits for the opening frame,
// and decodes the SSE body into typed Frames, with an idle watchdog that
// counts only time spent waiting for bytes.
//
// Data flow: SSE bytes (this package) -> resilient stream (package
// supervisor: reconnects, cursor, deduplication) -> ordered window and
// watermark (package bridge) -> sink -> checkpoint.
//
// This package never retries and never reconnects; every error says what
// happened so that the supervisor can decide. docs/architecture.md places it
// in the data flow; the README's "aviso-server versions" lists what differs
// between the server versions it speaks to.
package aviso

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Defaults of the Client fields.
const (
	DefaultMaxEventSize      = 8 << 20
	DefaultOpeningTimeout    = 10 * time.Second
	DefaultHeartbeatInterval = 30 * time.Second
	DefaultUserAgent         = "aviso-bridge"
)

// maxErrorBody bounds how much of a non-200 body is read.
const maxErrorBody = 64 << 10

// IdleBudget returns the idle watchdog budget for a server heartbeat
// interval: max(3 x interval, interval + 30 s), capped at 2^32-1 seconds
// (90 s for the default 30 s interval).
func IdleBudget(heartbeatInterval time.Duration) time.Duration {
	const limit = time.Duration(math.MaxUint32) * time.Second
	hb := min(max(heartbeatInterval, 0), limit)
	return min(max(3*hb, hb+30*time.Second), limit)
}

// Client opens aviso connections. The zero value is usable once BaseURL is
// set; a Client is safe for concurrent use and should not be modified while
// in use.
type Client struct {
	// BaseURL is the aviso-server base URL; its path prefix is kept
	// (https://host/aviso/ -> https://host/aviso/api/v1/watch).
	BaseURL string
	// HTTPClient sends the requests (nil: http.DefaultClient). It must have
	// no overall Timeout, since SSE responses are long-lived.
	HTTPClient *http.Client
	// UserAgent is the User-Agent header ("" means DefaultUserAgent); the
	// bridge sets "aviso-bridge/<version>".
	UserAgent string
	// Credentials supplies the Authorization header (nil: none).
	Credentials Credentials
	// MaxEventSize is the largest SSE event accepted, in bytes, field names
	// and line ends included (0: DefaultMaxEventSize).
	MaxEventSize int
	// IdleTimeout is the idle watchdog budget: the longest time a read may
	// wait without receiving a single byte (0: IdleBudget(30s) = 90s).
	IdleTimeout time.Duration
	// OpeningTimeout bounds the wait for the response headers and then for
	// the opening frame, together (0: DefaultOpeningTimeout).
	OpeningTimeout time.Duration
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Connect POSTs req to the endpoint of mode, classifies the response, and
// waits for the expected opening frame: replay_started when req has FromID or
// FromDate, else connection_established. Heartbeats, comments and unknown
// events before the opening are skipped.
//
// Errors: ErrInvalidRequest and ErrCredentials (wrapped); *HTTPError for any
// status other than 200; *ProtocolError for a 200 that is not an aviso stream
// (Content-Type, opening frame, opening deadline, oversized event);
// *TransportError for network failures and a body that ends before the
// opening; ErrIdleTimeout (wrapped); ctx.Err() when ctx ends.
//
// The returned Stream must be closed. Its lifetime is bound to ctx.
func (c *Client) Connect(ctx context.Context, mode Mode, req Request) (*Stream, error) {
	url, err := endpoint(c.BaseURL, mode)
	if err != nil {
		return nil, err
	}
	body, err := req.body(mode)
	if err != nil {
		return nil, err
	}
	auth := ""
	if c.Credentials != nil {
		if auth, err = c.Credentials.Authorization(ctx); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCredentials, err)
		}
	}

	sctx, cancel := context.WithCancelCause(ctx)
	o := &opening{url: url, deadline: orDefault(c.OpeningTimeout, DefaultOpeningTimeout), want: KindConnectionEstablished}
	if req.hasCursor() {
		o.want = KindReplayStarted
	}
	o.timer = time.AfterFunc(o.deadline, func() { cancel(ErrOpeningTimeout) })
	fail := func(err error) (*Stream, error) {
		o.timer.Stop()
		cancel(err)
		return nil, err
	}

	resp, err := c.post(ctx, sctx, o, body, auth) //nolint:bodyclose // the Stream owns the body and closes it
	if err != nil {
		return fail(err)
	}
	o.rid = resp.Header.Get("X-Request-ID")
	s := newStream(ctx, sctx, cancel, resp.Body, url, o.rid,
		orDefault(c.MaxEventSize, DefaultMaxEventSize), orDefault(c.IdleTimeout, IdleBudget(DefaultHeartbeatInterval)))
	if err := o.await(s); err != nil {
		s.Close()
		return fail(err)
	}
	return s, nil
}

// opening is the state of one Connect until the stream's opening frame.
type opening struct {
	url      string
	rid      string
	deadline time.Duration
	timer    *time.Timer
	want     FrameKind // the opening the request calls for
}

func (o *opening) timeout() error {
	return &ProtocolError{RequestID: o.rid, Err: ErrOpeningTimeout, Message: fmt.Sprintf(
		"no %s opening frame from %s within the opening deadline (%s)", o.want, o.url, o.deadline)}
}

// post sends the watch or replay request and returns a 200 event-stream
// response; any other answer is an error and its body is closed.
func (c *Client) post(ctx, sctx context.Context, o *opening, body []byte, auth string) (*http.Response, error) {
	hreq, err := http.NewRequestWithContext(sctx, http.MethodPost, o.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	h := hreq.Header
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "text/event-stream")
	h.Set("User-Agent", orDefault(c.UserAgent, DefaultUserAgent))
	if auth != "" {
		h.Set("Authorization", auth)
	}

	resp, err := c.httpClient().Do(hreq)
	if err != nil {
		switch {
		case errors.Is(context.Cause(sctx), ErrOpeningTimeout):
			return nil, &ProtocolError{Message: fmt.Sprintf("no response headers from %s within the opening deadline (%s); check the base URL", o.url, o.deadline), Err: ErrOpeningTimeout}
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		return nil, &TransportError{Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		herr := c.httpError(o.url, resp)
		resp.Body.Close()
		return nil, herr
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || !strings.EqualFold(mt, "text/event-stream") {
		resp.Body.Close()
		return nil, &ProtocolError{RequestID: resp.Header.Get("X-Request-ID"), Err: ErrNotEventStream, Message: fmt.Sprintf(
			"HTTP 200 from %s has Content-Type %q, not text/event-stream; check the base URL points to an aviso server",
			o.url, resp.Header.Get("Content-Type"))}
	}
	return resp, nil
}

// await reads s up to its opening frame and sets s.Opening (or s.Anomaly
// and s.pending); the caller closes s on error.
func (o *opening) await(s *Stream) error {
	for {
		f, err := s.Next()
		if err != nil {
			return o.readError(err)
		}
		if f.Kind == KindHeartbeat {
			continue
		}
		// The expected opening confirms the stream. The other opening, or
		// data without any opening, is tolerated and reported in Anomaly:
		// refusing it would reconnect forever and deliver nothing.
		switch f.Kind {
		case o.want:
		case KindConnectionEstablished, KindReplayStarted:
			s.Anomaly = fmt.Sprintf("the server opened with %s where the request called for %s", f.Kind, o.want)
		case KindNotification, KindReplayCompleted, KindReplayLimitReached:
			s.Anomaly = fmt.Sprintf("no opening frame (%s expected) before the first %s frame", o.want, f.Kind)
			s.pending = &f
		default:
			return o.frameError(f)
		}
		if !o.timer.Stop() { // fired meanwhile: the stream is cancelled
			return o.timeout()
		}
		if s.pending == nil {
			s.Opening = f
		}
		return nil
	}
}

// readError maps a read failure before the opening frame.
func (o *opening) readError(err error) error {
	switch {
	case errors.Is(err, ErrOpeningTimeout):
		return o.timeout()
	case errors.Is(err, ErrEventTooLarge):
		return &ProtocolError{RequestID: o.rid, Err: err, Message: "opening: " + err.Error()}
	case errors.Is(err, io.EOF):
		return &TransportError{RequestID: o.rid, Err: fmt.Errorf("body from %s ended before the opening frame: %w", o.url, io.ErrUnexpectedEOF)}
	}
	return err
}

// frameError describes a frame that cannot open a stream.
func (o *opening) frameError(f Frame) error {
	perr := &ProtocolError{RequestID: o.rid, Frame: &f}
	switch f.Kind {
	case KindServerError:
		perr.Message = fmt.Sprintf("error frame before the opening: %s (%s)", f.Message, f.ErrorCode)
		perr.RequestID = orDefault(f.RequestID, o.rid)
	case KindClosing:
		perr.Message = fmt.Sprintf("stream closed before opening confirmation (reason %q)", f.Reason)
		perr.RequestID = orDefault(f.RequestID, o.rid)
	case KindDecodeError:
		perr.Message = fmt.Sprintf("invalid frame where the %s opening was expected: %v", o.want, f.Err)
	default:
		perr.Message = fmt.Sprintf("unexpected %s frame before the required %s opening", f.Kind, o.want)
	}
	return perr
}

// httpError builds the HTTPError of a non-200 response. The status is
// authoritative: a body that cannot be read or parsed only leaves fields
// empty.
func (c *Client) httpError(url string, resp *http.Response) *HTTPError {
	e := &HTTPError{
		URL:             url,
		Status:          resp.StatusCode,
		HeaderRequestID: resp.Header.Get("X-Request-ID"),
		WWWAuthenticate: resp.Header.Values("WWW-Authenticate"),
	}
	e.Body, _ = io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body struct {
		Code      string          `json:"code"`
		Error     string          `json:"error"`
		Message   string          `json:"message"`
		Details   json.RawMessage `json:"details"`
		RequestID string          `json:"request_id"`
	}
	if json.Unmarshal(e.Body, &body) == nil || body.Code != "" || body.Message != "" {
		e.Code, e.ErrorLabel, e.Message, e.RequestID = body.Code, body.Error, body.Message, body.RequestID
		if len(body.Details) > 0 && json.Unmarshal(body.Details, &e.Details) != nil {
			e.Details = string(body.Details)
		}
	}
	if e.Throttled() {
		e.RetryAfter, e.HasRetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return e
}
