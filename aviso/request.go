package aviso

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
)

// Mode selects the endpoint of a connection.
type Mode int

const (
	// Watch is POST {base}/api/v1/watch: replay from the start position (if
	// any), then follow live notifications.
	Watch Mode = iota
	// Replay is POST {base}/api/v1/replay: a finite replay from the start
	// position, ended by connection-closing end_of_stream.
	Replay
)

// String returns "watch" or "replay".
func (m Mode) String() string {
	switch m {
	case Watch:
		return "watch"
	case Replay:
		return "replay"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

func (m Mode) path() string {
	if m == Replay {
		return "api/v1/replay"
	}
	return "api/v1/watch"
}

// Request is the body of one watch or replay request.
type Request struct {
	// EventType is the aviso event type (the event_type member).
	EventType string
	// Identifier is the identifier filter, a JSON object passed to the server
	// as given (scalars and constraint objects); nil or empty means {}.
	Identifier json.RawMessage
	// FromID is the first sequence to deliver (inclusive), sent as a JSON
	// string.
	FromID *uint64
	// FromDate is the first notification time, sent verbatim (any aviso
	// from_date format). At most one of FromID and FromDate may be set.
	FromDate string
	// ToID is the last sequence to deliver (inclusive), sent as to_id (a
	// JSON string). Replay mode only; aviso-server 0.13 and later (0.7.1
	// answers 400 UNKNOWN_FIELD).
	ToID *uint64
	// ToDate is the last notification time (inclusive), sent verbatim as
	// to_date. Replay mode only, 0.13 and later. At most one of ToID and
	// ToDate may be set.
	ToDate string
}

// hasCursor reports whether the request carries a start position, in which
// case the server opens with replay_started instead of
// connection_established.
func (r Request) hasCursor() bool { return r.FromID != nil || r.FromDate != "" }

type wireRequest struct {
	EventType  string          `json:"event_type"`
	Identifier json.RawMessage `json:"identifier"`
	FromID     string          `json:"from_id,omitempty"`
	FromDate   string          `json:"from_date,omitempty"`
	ToID       string          `json:"to_id,omitempty"`
	ToDate     string          `json:"to_date,omitempty"`
}

// body renders the JSON request body.
func (r Request) body(m Mode) ([]byte, error) {
	if r.EventType == "" {
		return nil, fmt.Errorf("%w: empty event type", ErrInvalidRequest)
	}
	if r.FromID != nil && r.FromDate != "" {
		return nil, fmt.Errorf("%w: both from_id and from_date are set; use one", ErrInvalidRequest)
	}
	if m == Replay && !r.hasCursor() {
		return nil, fmt.Errorf("%w: replay needs a start position (from_id or from_date)", ErrInvalidRequest)
	}
	if r.ToID != nil && r.ToDate != "" {
		return nil, fmt.Errorf("%w: both to_id and to_date are set; use one", ErrInvalidRequest)
	}
	if m != Replay && (r.ToID != nil || r.ToDate != "") {
		return nil, fmt.Errorf("%w: to_id and to_date (the end of a bounded replay) are only valid in replay mode, not %s", ErrInvalidRequest, m)
	}
	w := wireRequest{EventType: r.EventType, Identifier: bytes.TrimSpace(r.Identifier), FromDate: r.FromDate, ToDate: r.ToDate}
	if len(w.Identifier) == 0 {
		w.Identifier = json.RawMessage("{}")
	}
	if w.Identifier[0] != '{' || !json.Valid(w.Identifier) {
		return nil, fmt.Errorf("%w: identifier %q is not a JSON object", ErrInvalidRequest, truncate(w.Identifier, 200))
	}
	if r.FromID != nil {
		w.FromID = strconv.FormatUint(*r.FromID, 10)
	}
	if r.ToID != nil {
		w.ToID = strconv.FormatUint(*r.ToID, 10)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// endpoint joins the mode's path to base, keeping base's path prefix
// (https://host/aviso and https://host/aviso/ both give
// https://host/aviso/api/v1/watch).
func endpoint(base string, m Mode) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("%w: base URL %q: %w", ErrInvalidRequest, base, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: base URL %q must be http:// or https:// with a host", ErrInvalidRequest, base)
	}
	return u.JoinPath(m.path()).String(), nil
}
