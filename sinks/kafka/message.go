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
	perNotice bool // uses {sequence}, {id} or {identifier.*}

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
// notifications of the same event type.
func perNotification(t *bridge.Template) bool {
	src := t.String()
	return strings.Contains(src, "{sequence}") || strings.Contains(src, "{id}") || strings.Contains(src, "{identifier.")
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
	t.render(n)
	t.mu.Lock()
	defer t.mu.Unlock()
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

// ceHeaders returns the binary-mode CloudEvents headers of n (without
// content-type), appended to h.
func ceHeaders(h []kafkago.Header, n *bridge.Notification) []kafkago.Header {
	h = append(h,
		kafkago.Header{Key: HeaderSpecVersion, Value: specVersion1},
		kafkago.Header{Key: HeaderID, Value: []byte(n.ID)},
		kafkago.Header{Key: HeaderSource, Value: []byte(n.Source)},
		kafkago.Header{Key: HeaderType, Value: []byte(n.Type)},
	)
	if n.TimeRaw != "" {
		h = append(h, kafkago.Header{Key: HeaderTime, Value: []byte(n.TimeRaw)})
	}
	if n.DataSchema != "" {
		h = append(h, kafkago.Header{Key: HeaderDataSchema, Value: []byte(n.DataSchema)})
	}
	return h
}

// buildMessage returns the record for n: binary mode (ce_ headers, body =
// data) or structured mode (body = the whole CloudEvent).
func buildMessage(n *bridge.Notification, topic string, key []byte, structured bool) kafkago.Message {
	m := kafkago.Message{Topic: topic, Key: key, Time: recordTime(n)}
	if structured {
		m.Value = n.CloudEvent
		m.Headers = []kafkago.Header{{Key: HeaderContentType, Value: contentStructure}}
		return m
	}
	m.Value = n.Data
	h := make([]kafkago.Header, 0, 7)
	h = ceHeaders(h, n)
	m.Headers = append(h, kafkago.Header{Key: HeaderContentType, Value: contentJSON})
	return m
}
