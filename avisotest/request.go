package avisotest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Request is one request the server received, recorded on arrival.
type Request struct {
	Method, Path string
	Header       http.Header
	// Body is the raw request body.
	Body []byte
	// EventType, Identifier, FromID and FromDate are parsed from Body on a
	// best-effort basis ("" / nil when absent or of the wrong type).
	// FromID is the JSON string value of from_id; HasFromID is true when
	// from_id was present and not null (whatever its type).
	EventType  string
	Identifier json.RawMessage
	FromID     string
	HasFromID  bool
	FromDate   string
	// ToID and ToDate are to_id and to_date (0.13, /replay only), parsed
	// like FromID and FromDate; HasToID is true when to_id was present and
	// not null.
	ToID    string
	HasToID bool
	ToDate  string
	// RequestID is the X-Request-ID the server answered with.
	RequestID string
}

// looseParse fills the body fields of r without validating.
func (r *Request) looseParse() {
	var m map[string]json.RawMessage
	if json.Unmarshal(r.Body, &m) != nil {
		return
	}
	_ = json.Unmarshal(m["event_type"], &r.EventType)
	if id := m["identifier"]; len(id) > 0 {
		r.Identifier = id
	}
	if v, ok := m["from_id"]; ok && string(v) != "null" {
		r.HasFromID = true
		_ = json.Unmarshal(v, &r.FromID)
	}
	_ = json.Unmarshal(m["from_date"], &r.FromDate)
	if v, ok := m["to_id"]; ok && string(v) != "null" {
		r.HasToID = true
		_ = json.Unmarshal(v, &r.ToID)
	}
	_ = json.Unmarshal(m["to_date"], &r.ToDate)
}

// allowedFields returns the request body members of a version, in serde's
// order (the order of the UNKNOWN_FIELD message).
func allowedFields(v Version) []string {
	if v == V013 {
		return []string{"event_type", "identifier", "from_id", "from_date", "to_id", "to_date", "payload"}
	}
	return []string{"event_type", "identifier", "from_id", "from_date", "payload"}
}

// streamRequest is a validated watch or replay request.
type streamRequest struct {
	eventType string
	filter    []condition
	topic     string
	fromID    *uint64
	fromDate  *time.Time
	// fromDateText is the normalised from_date echoed in replay_started.
	fromDateText *string
	// toID and toDate are the 0.13 replay end point (at most one is set);
	// toDateText is to_date as echoed in replay_started.
	toID       *uint64
	toDate     *time.Time
	toDateText *string
}

func (r *streamRequest) hasCursor() bool { return r.fromID != nil || r.fromDate != nil }

// parseBody applies aviso's parse rules (section 2.3): INVALID_JSON,
// INVALID_REQUEST_SHAPE, UNKNOWN_FIELD. The error label of parse errors is
// always "Invalid Replay Request", as aviso-server 0.7.1 does.
func parseBody(body []byte, v Version) (map[string]json.RawMessage, *apiError) {
	const label = "Invalid Replay Request"
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return nil, standardError(400, "INVALID_JSON", label, "Invalid JSON in request body", errText(err, "empty body"))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, standardError(400, "INVALID_REQUEST_SHAPE", label, "Invalid request shape", "invalid type: expected a JSON object")
	}
	allowed := allowedFields(v)
	for k := range m {
		if !slices.Contains(allowed, k) {
			msg := fmt.Sprintf("unknown field `%s`, expected one of `%s`", k, strings.Join(allowed, "`, `"))
			return nil, standardError(400, "UNKNOWN_FIELD", label, "Unknown field in request body", msg)
		}
	}
	shape := func(detail string) *apiError {
		return standardError(400, "INVALID_REQUEST_SHAPE", label, "Invalid request shape", detail)
	}
	for _, k := range []string{"event_type", "identifier"} {
		if _, ok := m[k]; !ok {
			return nil, shape(fmt.Sprintf("missing field `%s`", k))
		}
	}
	if !isJSONString(m["event_type"]) {
		return nil, shape("invalid type for `event_type`: expected a string")
	}
	if id := bytes.TrimSpace(m["identifier"]); len(id) == 0 || id[0] != '{' {
		return nil, shape("invalid type for `identifier`: expected a map")
	}
	for _, k := range []string{"from_id", "from_date", "to_id", "to_date"} {
		if v, ok := m[k]; ok && string(v) != "null" && !isJSONString(v) {
			return nil, shape(fmt.Sprintf("invalid type for `%s`: %s, expected a string", k, jsonKind(v)))
		}
	}
	return m, nil
}

func errText(err error, def string) string {
	if err != nil {
		return err.Error()
	}
	return def
}

func isJSONString(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) > 0 && v[0] == '"'
}

func jsonKind(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	switch {
	case len(v) == 0:
		return "nothing"
	case v[0] == '{':
		return "map"
	case v[0] == '[':
		return "sequence"
	case v[0] == 't' || v[0] == 'f':
		return "boolean `" + string(v) + "`"
	case v[0] == '"':
		return "string"
	}
	return "integer `" + string(v) + "`"
}

// validateStream applies aviso-server's watch/replay validation rules (and,
// under V013, its end point and schema rules);
// mode is "watch" or "replay". schema lists the identifier keys of the event
// type (nil: any key).
func validateStream(m map[string]json.RawMessage, mode string, v Version, schema []string) (*streamRequest, *apiError) {
	code, label := "INVALID_WATCH_REQUEST", "Invalid Watch Request"
	if mode == "replay" {
		code, label = "INVALID_REPLAY_REQUEST", "Invalid Replay Request"
	}
	bad := func(msg, details string) *apiError { return standardError(400, code, label, msg, details) }

	r := &streamRequest{}
	_ = json.Unmarshal(m["event_type"], &r.eventType)
	if e := r.validateStart(m, bad); e != nil {
		return nil, e
	}
	_, hasToID := m["to_id"]
	_, hasToDate := m["to_date"]
	hasEnd := (hasToID && string(m["to_id"]) != "null") || (hasToDate && string(m["to_date"]) != "null")
	if mode != "replay" && hasEnd {
		msg := "to_id and to_date are only supported for the replay endpoint, not /" + mode
		return nil, bad(msg, msg)
	}
	if mode == "replay" && !r.hasCursor() {
		msg := "Replay endpoint requires either from_id or from_date parameter. Use /watch for live-only notifications."
		return nil, bad(msg, msg)
	}
	if v == V013 && hasEnd {
		if e := r.validateEnd(m, bad); e != nil {
			return nil, e
		}
	}
	if e := r.validateIdentifier(m, mode, v, schema, bad); e != nil {
		return nil, e
	}
	return r, nil
}

// validateStart parses from_id / from_date into r.
func (r *streamRequest) validateStart(m map[string]json.RawMessage, bad func(msg, details string) *apiError) *apiError {
	var fromID, fromDate *string
	for k, dst := range map[string]**string{"from_id": &fromID, "from_date": &fromDate} {
		if v, ok := m[k]; ok && string(v) != "null" {
			var s string
			_ = json.Unmarshal(v, &s)
			*dst = &s
		}
	}
	if fromID != nil && fromDate != nil {
		return bad("Cannot specify both from_id and from_date", "from_id and from_date are mutually exclusive; use only one")
	}
	if fromID != nil {
		t := strings.TrimSpace(*fromID)
		if t == "" {
			return bad("Invalid from_id", "from_id cannot be empty")
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(t, "+"), 10, 64)
		if err != nil || strings.HasPrefix(t, "+-") || strings.HasPrefix(t, "++") {
			return bad("Invalid from_id", fmt.Sprintf("from_id must be a non-negative integer, got %q", *fromID))
		}
		r.fromID = &n
	}
	if fromDate != nil {
		t, err := parseFromDate(*fromDate)
		if err != nil {
			return bad("Invalid from_date", err.Error())
		}
		r.fromDate = &t
		s := t.Format(time.RFC3339Nano)
		r.fromDateText = &s
	}
	return nil
}

// validateIdentifier parses the identifier filter into r.filter and r.topic;
// keys outside schema (when set) are refused under V013, ignored under V071.
func (r *streamRequest) validateIdentifier(m map[string]json.RawMessage, mode string, v Version, schema []string, bad func(msg, details string) *apiError) *apiError {
	var ident map[string]json.RawMessage
	if err := json.Unmarshal(m["identifier"], &ident); err != nil {
		return bad("Invalid identifier", err.Error())
	}
	keys := make([]string, 0, len(ident))
	for k := range ident {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	topic := []string{r.eventType}
	for _, k := range keys {
		if schema != nil && !slices.Contains(schema, k) {
			if v == V013 {
				msg := fmt.Sprintf("Unknown field '%s' provided for %s operation", k, mode)
				return bad(msg, msg)
			}
			continue // 0.7.1 ignores keys outside the schema
		}
		c, err := parseCondition(k, ident[k])
		if err != nil {
			return bad("Invalid identifier", err.Error())
		}
		r.filter = append(r.filter, c)
		if c.op == "" {
			topic = append(topic, c.vals[0])
		} else {
			topic = append(topic, "*")
		}
	}
	r.topic = strings.Join(topic, ".")
	return nil
}

// validateEnd parses to_id / to_date (0.13) into r, with aviso's messages.
func (r *streamRequest) validateEnd(m map[string]json.RawMessage, bad func(msg, details string) *apiError) *apiError {
	str := func(k string) *string {
		v, ok := m[k]
		if !ok || string(v) == "null" {
			return nil
		}
		var s string
		_ = json.Unmarshal(v, &s)
		return &s
	}
	fail := func(msg string) *apiError { return bad(msg, msg) }
	var toID *uint64
	var toDate *time.Time
	if s := str("to_id"); s != nil {
		t := strings.TrimSpace(*s)
		if t == "" {
			return fail("to_id cannot be empty")
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(t, "+"), 10, 64)
		if err != nil || strings.HasPrefix(t, "+-") || strings.HasPrefix(t, "++") {
			return fail(fmt.Sprintf("to_id must be a valid positive integer, got %q", *s))
		}
		toID = &n
	}
	if s := str("to_date"); s != nil {
		if strings.TrimSpace(*s) == "" {
			return fail("to_date cannot be empty")
		}
		t, err := parseDate("to_date", *s)
		if err != nil {
			return fail(fmt.Sprintf("to_date must be a valid datetime/timestamp, got %q", *s))
		}
		toDate = &t
	}
	switch {
	case toID != nil && toDate != nil:
		return fail("Cannot specify both to_id and to_date. Please provide only one replay end parameter. Use to_id for a sequence-based end or to_date for a time-based end.")
	case toID != nil && r.fromID != nil && *toID < *r.fromID:
		return fail(fmt.Sprintf("to_id (%d) must not be lower than from_id (%d)", *toID, *r.fromID))
	case toDate != nil && r.fromDate != nil && toDate.Before(*r.fromDate):
		return fail(fmt.Sprintf("to_date (%s) must not be earlier than from_date (%s)", rfc3339Offset(*toDate), rfc3339Offset(*r.fromDate)))
	}
	r.toID, r.toDate = toID, toDate
	if toDate != nil {
		s := toDate.Format(time.RFC3339Nano)
		r.toDateText = &s
	}
	return nil
}

// rfc3339Offset formats like chrono's to_rfc3339: +00:00 and 0, 3, 6 or 9
// fractional digits.
func rfc3339Offset(t time.Time) string {
	s := cloudEventTime(t)
	return strings.TrimSuffix(s, "Z") + "+00:00"
}

// parseFromDate accepts the from_date formats of section 2.4.
func parseFromDate(s string) (time.Time, error) { return parseDate("from_date", s) }

// parseDate accepts the from_date formats of section 2.4 for field.
func parseDate(field, s string) (time.Time, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return time.Time{}, fmt.Errorf("%s cannot be empty", field)
	}
	if digits := strings.TrimPrefix(t, "+"); digits != "" && strings.Trim(digits, "0123456789") == "" {
		sig := strings.TrimLeft(digits, "0")
		n, err := strconv.ParseInt(orZero(sig), 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s %q: timestamp out of range", field, s)
		}
		if len(sig) <= 11 {
			return time.Unix(n, 0).UTC(), nil
		}
		return time.UnixMilli(n).UTC(), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05Z07:00"} {
		if v, err := time.Parse(layout, t); err == nil {
			return v.UTC(), nil
		}
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05"} {
		if v, err := time.ParseInLocation(layout, t, time.UTC); err == nil {
			return v, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q is not RFC 3339, 'YYYY-MM-DD HH:MM:SS[+offset]', or a unix timestamp", field, s)
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// condition is one identifier key of a watch/replay request. op is "" for a
// scalar (string equality) or one of the constraint operators.
type condition struct {
	key  string
	op   string
	vals []string  // scalar, eq, in
	nums []float64 // gt, gte, lt, lte (1), between (2)
}

var operators = []string{"eq", "in", "gt", "gte", "lt", "lte", "between"}

func parseCondition(key string, v json.RawMessage) (condition, error) {
	c := condition{key: key}
	v = bytes.TrimSpace(v)
	switch {
	case string(v) == "null":
		return c, fmt.Errorf("identifier %q: null is not allowed", key)
	case v[0] == '[':
		return c, fmt.Errorf("identifier %q: arrays are not allowed", key)
	case v[0] != '{':
		s, err := scalarText(v)
		if err != nil {
			return c, fmt.Errorf("identifier %q: %w", key, err)
		}
		c.vals = []string{s}
		return c, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(v, &obj); err != nil {
		return c, fmt.Errorf("identifier %q: %w", key, err)
	}
	if len(obj) != 1 {
		return c, fmt.Errorf("identifier %q: a constraint object needs exactly one operator, got %d", key, len(obj))
	}
	for op, arg := range obj {
		if !slices.Contains(operators, op) {
			return c, fmt.Errorf("identifier %q: unknown operator %q (allowed: %s)", key, op, strings.Join(operators, ", "))
		}
		c.op = op
		var args []json.RawMessage
		if op == "in" || op == "between" {
			if err := json.Unmarshal(arg, &args); err != nil {
				return c, fmt.Errorf("identifier %q: %s needs an array", key, op)
			}
		} else {
			args = []json.RawMessage{arg}
		}
		if op == "between" && len(args) != 2 {
			return c, fmt.Errorf("identifier %q: between needs [min,max]", key)
		}
		for _, a := range args {
			s, err := scalarText(bytes.TrimSpace(a))
			if err != nil {
				return c, fmt.Errorf("identifier %q: %s: %w", key, op, err)
			}
			if op == "eq" || op == "in" {
				c.vals = append(c.vals, s)
				continue
			}
			f, ok := number(s)
			if !ok {
				return c, fmt.Errorf("identifier %q: %s needs numbers, got %q", key, op, s)
			}
			c.nums = append(c.nums, f)
		}
	}
	return c, nil
}

// scalarText converts a JSON scalar to aviso's string form.
func scalarText(v json.RawMessage) (string, error) {
	if len(v) == 0 {
		return "", fmt.Errorf("empty value")
	}
	switch v[0] {
	case '"':
		var s string
		err := json.Unmarshal(v, &s)
		return s, err
	case '{', '[':
		return "", fmt.Errorf("nested values are not allowed")
	case 'n':
		return "", fmt.Errorf("null is not allowed")
	}
	return string(v), nil // number or boolean: its JSON text
}

func number(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
}

// match reports whether a stored identifier satisfies the condition; keys
// absent from the request are wildcards, keys absent from the notification
// never match.
func (c condition) match(ident map[string]string) bool {
	v, ok := ident[c.key]
	if !ok {
		return false
	}
	switch c.op {
	case "":
		return v == c.vals[0]
	case "eq", "in":
		for _, w := range c.vals {
			if v == w {
				return true
			}
			a, okA := number(v)
			b, okB := number(w)
			if okA && okB && a == b {
				return true
			}
		}
		return false
	}
	f, ok := number(v)
	if !ok {
		return false
	}
	switch c.op {
	case "gt":
		return f > c.nums[0]
	case "gte":
		return f >= c.nums[0]
	case "lt":
		return f < c.nums[0]
	case "lte":
		return f <= c.nums[0]
	case "between":
		return c.nums[0] <= f && f <= c.nums[1]
	}
	return false
}

func matchAll(conds []condition, ident map[string]string) bool {
	for _, c := range conds {
		if !c.match(ident) {
			return false
		}
	}
	return true
}
