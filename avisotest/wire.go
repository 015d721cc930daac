package avisotest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Rendering of aviso-server 0.7.1's wire format (protocol doc Part B
// sections 2.6 and 3): compact JSON with keys in alphabatical order (struct
// fields below are declared in that order; maps are sorted by
// encoding/json), no HTML escaping, LF framing.

// marshal renders v as compact JSON without HTML escaping, like serde_json.
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("avisotest: rendering JSON: %v", err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// frame renders one SSE event.
func frame(event string, data []byte) []byte {
	b := make([]byte, 0, len(event)+len(data)+16)
	b = append(b, "event: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// controlTime formats control-frame timestamps: UTC, second precision.
func controlTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// cloudEventTime formats like chrono's default: RFC 3339, Z, and 0, 3, 6 or
// 9 fractional digits.
func cloudEventTime(t time.Time) string {
	t = t.UTC()
	ns := t.Nanosecond()
	switch {
	case ns == 0:
		return t.Format("2006-01-02T15:04:05Z")
	case ns%1e6 == 0:
		return t.Format("2006-01-02T15:04:05.000Z")
	case ns%1e3 == 0:
		return t.Format("2006-01-02T15:04:05.000000Z")
	}
	return t.Format("2006-01-02T15:04:05.000000000Z")
}

// renderCloudEvent renders the CloudEvent of one stored notification. The
// payload is inserted verbatim (PublishRaw may store anything).
func renderCloudEvent(baseURL, eventType string, seq uint64, t time.Time, identifier map[string]json.RawMessage, payload []byte) []byte {
	if identifier == nil {
		identifier = map[string]json.RawMessage{}
	}
	tail := marshal(struct {
		DataContentType string `json:"datacontenttype"`
		DataSchema      string `json:"dataschema"`
		ID              string `json:"id"`
		Source          string `json:"source"`
		SpecVersion     string `json:"specversion"`
		Time            string `json:"time"`
		Type            string `json:"type"`
	}{
		DataContentType: "application/json",
		DataSchema:      baseURL + "/schema/" + eventType,
		ID:              eventType + "@" + strconv.FormatUint(seq, 10),
		Source:          baseURL,
		SpecVersion:     "1.0",
		Time:            cloudEventTime(t),
		Type:            "int.ecmwf.aviso." + eventType,
	})
	var b bytes.Buffer
	b.WriteString(`{"data":{"identifier":`)
	b.Write(marshal(identifier))
	b.WriteString(`,"payload":`)
	b.Write(payload)
	b.WriteString(`},`)
	b.Write(tail[1:]) // drop the '{'
	return b.Bytes()
}

// normalizePayload re-renders a payload the way aviso stores and returns it
// (serde_json::Value): keys sorted, compact, no HTML escaping; an empty
// string or no payload becomes null. Numbers keep their text.
func normalizePayload(raw []byte) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return []byte("null"), nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if s, ok := v.(string); ok && s == "" {
		return []byte("null"), nil
	}
	return marshal(v), nil
}

func connectionEstablished(rid, ts, topic string, closeIn uint64) []byte {
	return frame("live-notification", marshal(struct {
		ConnectionWillCloseInSeconds uint64 `json:"connection_will_close_in_seconds"`
		RequestID                    string `json:"request_id"`
		Timestamp                    string `json:"timestamp"`
		Topic                        string `json:"topic"`
		Type                         string `json:"type"`
	}{closeIn, rid, ts, topic, "connection_established"}))
}

func heartbeat(ts, topic string) []byte {
	return frame("heartbeat", marshal(struct {
		Timestamp string `json:"timestamp"`
		Topic     string `json:"topic"`
	}{ts, topic}))
}

func replayStarted(rid, ts, topic string, batch int, fromDate *string, fromSeq *uint64) []byte {
	return frame("replay-control", marshal(struct {
		BatchSize    int     `json:"batch_size"`
		FromDate     *string `json:"from_date"`
		FromSequence *uint64 `json:"from_sequence"`
		RequestID    string  `json:"request_id"`
		Timestamp    string  `json:"timestamp"`
		Topic        string  `json:"topic"`
		Type         string  `json:"type"`
	}{batch, fromDate, fromSeq, rid, ts, topic, "replay_started"}))
}

// replayStarted013 is 0.13's replay_started: end_sequence and to_date
// (null unless given) besides 0.7.1's members.
func replayStarted013(rid, ts, topic string, batch int, fromDate *string, fromSeq *uint64, endSeq uint64, toDate *string) []byte {
	return frame("replay-control", marshal(struct {
		BatchSize    int     `json:"batch_size"`
		EndSequence  uint64  `json:"end_sequence"`
		FromDate     *string `json:"from_date"`
		FromSequence *uint64 `json:"from_sequence"`
		RequestID    string  `json:"request_id"`
		Timestamp    string  `json:"timestamp"`
		ToDate       *string `json:"to_date"`
		Topic        string  `json:"topic"`
		Type         string  `json:"type"`
	}{batch, endSeq, fromDate, fromSeq, rid, ts, toDate, topic, "replay_started"}))
}

func replayCompleted(ts, topic string) []byte {
	return frame("replay-control", marshal(struct {
		Timestamp string `json:"timestamp"`
		Topic     string `json:"topic"`
		Type      string `json:"type"`
	}{ts, topic, "replay_completed"}))
}

func replayLimitReached(ts, topic string, maxAllowed uint64) []byte {
	return frame("replay-control", marshal(struct {
		MaxAllowed uint64 `json:"max_allowed"`
		Message    string `json:"message"`
		Timestamp  string `json:"timestamp"`
		Topic      string `json:"topic"`
		Type       string `json:"type"`
	}{maxAllowed, fmt.Sprintf("Historical replay limited to %d messages. Additional historical messages may be available but were not retrieved.", maxAllowed),
		ts, topic, "notification_replay_limit_reached"}))
}

// creationFailedMessage is the message of a "CloudEvent creation failed"
// error frame.
func creationFailedMessage(seq uint64) string {
	return fmt.Sprintf("Failed to create CloudEvent for notification with sequence %d", seq)
}

// errorFrame renders an error event; seq is rendered only when non-nil
// ("CloudEvent creation failed").
func errorFrame(code, message, rid, topic string, seq *uint64) []byte {
	if seq != nil {
		return frame("error", marshal(struct {
			Error     string `json:"error"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
			Sequence  uint64 `json:"sequence"`
			Topic     string `json:"topic"`
		}{code, message, rid, *seq, topic}))
	}
	return frame("error", marshal(struct {
		Error     string `json:"error"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
		Topic     string `json:"topic"`
	}{code, message, rid, topic}))
}

// closeMessages are aviso's messages for the known close reasons.
var closeMessages = map[string]string{
	"end_of_stream":        "Stream completed",
	"max_duration_reached": "Connection reached maximum duration",
	"server_shutdown":      "Server is shutting down gracefully",
}

func connectionClosing(reason, message, rid, ts, topic string) []byte {
	if message == "" {
		message = closeMessages[reason]
	}
	return frame("connection-closing", marshal(struct {
		Message   string `json:"message"`
		Reason    string `json:"reason"`
		RequestID string `json:"request_id"`
		Timestamp string `json:"timestamp"`
		Topic     string `json:"topic"`
	}{message, reason, rid, ts, topic}))
}

// apiError is an aviso JSON error answer (section 2.6).
type apiError struct {
	status int
	body   map[string]any
}

// standardError is the body of parse, validation and processing errors.
func standardError(status int, code, label, message, details string) *apiError {
	return &apiError{status, map[string]any{"code": code, "error": label, "message": message, "details": details}}
}

// simpleError is the body of auth, forbidden, service-unavailable and
// internal errors (no details).
func simpleError(status int, code, label, message string) *apiError {
	return &apiError{status, map[string]any{"code": code, "error": label, "message": message}}
}

func (e *apiError) render(rid string) []byte {
	body := make(map[string]any, len(e.body)+1)
	for k, v := range e.body {
		body[k] = v
	}
	body["request_id"] = rid
	return marshal(body)
}

// newRequestID returns a random UUID v4, as aviso puts in X-Request-ID.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
