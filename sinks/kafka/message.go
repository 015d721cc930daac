package kafka

import (
	"strings"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Header names of the CloudEvents Kafka protocol binding and the DLQ.
const (
	HeaderSpecVersion = "ce_specversion"
	HeaderID          = "ce_id"
	HeaderSource      = "ce_source"
	HeaderType        = "ce_type"
	HeaderTime        = "ce_time"
	HeaderDataSchema  = "ce_dataschema"
	HeaderContentType = "content-type"

	HeaderDLQKind   = "aviso_bridge_dlq_kind"
	HeaderDLQReason = "aviso_bridge_dlq_reason"
	HeaderDLQEvent  = "aviso_bridge_dlq_event"
	// HeaderDLQBodyOmitted is set (to the body's size in bytes) on a dead
	// letter whose body was itself too large for the dead-letter topic.
	HeaderDLQBodyOmitted = "aviso_bridge_dlq_body_omitted"

	ContentTypeJSON       = "application/json"
	ContentTypeCloudEvent = "application/cloudevents+json"
)

var (
	specVersion1     = []byte("1.0")
	contentJSON      = []byte(ContentTypeJSON)
	contentStructure = []byte(ContentTypeCloudEvent)
)

// template renders one of KAFKA_TOPIC, KAFKA_KEY, BRIDGE_DLQ_TOPIC. When the
// template depends on nothing but the event type, the last rendering is
// memoised (a bridge watches one event type).
type template struct {
	t         *bridge.Template
	perNotice bool // uses {sequence}, {id}, {identifier.*} or {listener}

	mu       sync.Mutex
	lastType string
	lastText string
	lastKey  []byte
	have     bool
}

func newTemplate(t *bridge.Template) *template {
	return &template{t: t, perNotice: perNotification(t)}
}

// perNotification reports whether t renders differently for two
// notifications of the same event type (two listeners may share the sink).
func perNotification(t *bridge.Template) bool {
	src := t.String()
	return strings.Contains(src, "{sequence}") || strings.Contains(src, "{id}") || strings.Contains(src, "{identifier.") ||
		strings.Contains(src, "{listener}")
}

func (t *template) render(n *bridge.Notification) string {
	if t.perNotice {
		return t.t.Render(n)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.have || t.lastType != n.EventType {
		t.lastType, t.lastText, t.have = n.EventType, t.t.Render(n), true
		t.lastKey = []byte(t.lastText)
	}
	return t.lastText
}

// renderBytes returns the rendering as bytes; the memoised slice is shared
// and must not be modified.
func (t *template) renderBytes(n *bridge.Notification) []byte {
	if t.perNotice {
		return []byte(t.t.Render(n))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.have || t.lastType != n.EventType {
		t.lastType, t.lastText, t.have = n.EventType, t.t.Render(n), true
		t.lastKey = []byte(t.lastText)
	}
	return t.lastKey
}

// recordTime is the record timestamp: the CloudEvent time, else the receipt
// time, else now.
func recordTime(n *bridge.Notification) time.Time {
	switch {
	case !n.Time.IsZero():
		return n.Time
	case !n.Received.IsZero():
		return n.Received
	}
	return time.Now()
}

// maxHeaders is the most headers a notification record carries.
const maxHeaders = 7

// attrCache memoises the byte form of the CloudEvent attributes that every
// notification of a watch shares (source, type, dataschema), so that a
// record costs one allocation for its own values (id, time). Not safe for
// concurrent use; the zero value is ready.
type attrCache struct{ source, typ, schema memoBytes }

type memoBytes struct {
	s string
	b []byte
}

func (m *memoBytes) get(s string) []byte {
	if m.b == nil || m.s != s {
		m.s, m.b = s, []byte(s)
	}
	return m.b
}

// ceHeaders appends the binary-mode CloudEvents headers of n (without
// content-type) to h. The per-record values (id, time) are copied into buf,
// reused when it has room; it returns the headers and the buffer.
func (c *attrCache) ceHeaders(h []kafkago.Header, n *bridge.Notification, buf []byte) ([]kafkago.Header, []byte) {
	buf = append(append(buf[:0], n.ID...), n.TimeRaw...)
	h = append(h,
		kafkago.Header{Key: HeaderSpecVersion, Value: specVersion1},
		kafkago.Header{Key: HeaderID, Value: buf[:len(n.ID):len(n.ID)]},
		kafkago.Header{Key: HeaderSource, Value: c.source.get(n.Source)},
		kafkago.Header{Key: HeaderType, Value: c.typ.get(n.Type)},
	)
	if n.TimeRaw != "" {
		h = append(h, kafkago.Header{Key: HeaderTime, Value: buf[len(n.ID):]})
	}
	if n.DataSchema != "" {
		h = append(h, kafkago.Header{Key: HeaderDataSchema, Value: c.schema.get(n.DataSchema)})
	}
	return h, buf
}

// message returns the record for n: binary mode (ce_ headers, body = data)
// or structured mode (body = the whole CloudEvent). The headers are
// appended to hdr (len 0, room for maxHeaders avoids an allocation) and the
// per-record header values copied into buf (reused when it has room); it
// returns the buffer it used.
func (c *attrCache) message(n *bridge.Notification, topic string, key []byte, structured bool, hdr []kafkago.Header, buf []byte) (kafkago.Message, []byte) {
	m := kafkago.Message{Topic: topic, Key: key, Time: recordTime(n)}
	if structured {
		m.Value = n.CloudEvent
		m.Headers = append(hdr, kafkago.Header{Key: HeaderContentType, Value: contentStructure})
		return m, buf
	}
	m.Value = n.Data
	h, buf := c.ceHeaders(hdr, n, buf)
	m.Headers = append(h, kafkago.Header{Key: HeaderContentType, Value: contentJSON})
	return m, buf
}

// BuildMessage returns the record the sink writes for n to topic with key:
// in format "binary" the ce_ headers and body = data, in "structured" body =
// the whole CloudEvent. Benchmarks use it to feed a bare kafka-go Writer the
// same records.
func BuildMessage(n *bridge.Notification, topic string, key []byte, format string) kafkago.Message {
	var c attrCache
	m, _ := c.message(n, topic, key, format == FormatStructured, make([]kafkago.Header, 0, maxHeaders), nil)
	return m
}
