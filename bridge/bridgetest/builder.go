package bridgetest

import (
	"strconv"
	"strings"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Source is the CloudEvent source of built notifications.
const Source = "http://aviso.test:8000"

// Option changes a notification built by Notification.
type Option func(*spec)

type spec struct {
	eventType    string
	identifier   string
	dataSize     int
	size         int
	time         time.Time
	noDataSchema bool
}

// EventType sets the aviso event type (default "mars").
func EventType(et string) Option { return func(s *spec) { s.eventType = et } }

// Identifier sets data.identifier, a JSON object (default
// {"class":"od","date":"20260304","step":"<sequence mod 4>"}).
func Identifier(json string) Option { return func(s *spec) { s.identifier = json } }

// DataSize pads the payload so that the CloudEvent data member is exactly
// n bytes (when n is larger than the unpadded member).
func DataSize(n int) Option { return func(s *spec) { s.dataSize = n } }

// Size pads the payload so that the whole CloudEvent is exactly n bytes
// (when n is larger than the unpadded CloudEvent).
func Size(n int) Option { return func(s *spec) { s.size = n } }

// Time sets the CloudEvent time (default 2026-03-04T10:00:00Z plus the
// sequence in milliseconds).
func Time(t time.Time) Option { return func(s *spec) { s.time = t } }

// NoDataSchema leaves the dataschema attribute out.
func NoDataSchema() Option { return func(s *spec) { s.noDataSchema = true } }

// Notification returns the notification of sequence seq as package aviso
// decodes it from aviso-server: ID, Data, Identifier and the attributes
// consistent with the CloudEvent JSON, whose compact text it holds (Data
// and Identifier alias it).
func Notification(seq uint64, opts ...Option) *bridge.Notification {
	s := spec{eventType: "mars"}
	for _, o := range opts {
		o(&s)
	}
	if s.identifier == "" {
		s.identifier = `{"class":"od","date":"20260304","step":"` + strconv.FormatUint(seq%4, 10) + `"}`
	}
	if s.time.IsZero() {
		s.time = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC).Add(time.Duration(seq) * time.Millisecond)
	}
	id := bridge.EventID(s.eventType, seq)
	typ := "int.ecmwf.aviso." + s.eventType
	schema := ""
	if !s.noDataSchema {
		schema = Source + "/schema/" + s.eventType
	}
	timeRaw := s.time.UTC().Format(time.RFC3339Nano)
	head := `{"data":`
	tail := `,"datacontenttype":"application/json",`
	if schema != "" {
		tail += `"dataschema":"` + schema + `",`
	}
	tail += `"id":"` + id + `","source":"` + Source + `","specversion":"1.0","time":"` + timeRaw + `","type":"` + typ + `"}`
	data := func(pad int) string {
		return `{"identifier":` + s.identifier + `,"payload":{"note":"data is ready` + strings.Repeat("x", max(pad, 0)) + `"}}`
	}
	d := data(0)
	if s.dataSize > len(d) {
		d = data(s.dataSize - len(d))
	}
	if n := len(head) + len(d) + len(tail); s.size > n {
		d = data(len(d) - len(data(0)) + s.size - n)
	}
	ce := []byte(head + d + tail)
	start, end := len(head), len(head)+len(d)
	identStart := start + len(`{"identifier":`)
	return &bridge.Notification{
		EventType:       s.eventType,
		Sequence:        seq,
		ID:              id,
		Source:          Source,
		Type:            typ,
		DataSchema:      schema,
		DataContentType: "application/json",
		TimeRaw:         timeRaw,
		Time:            s.time,
		Identifier:      ce[identStart : identStart+len(s.identifier) : identStart+len(s.identifier)],
		Data:            ce[start:end:end],
		CloudEvent:      ce,
		Received:        time.Now(),
	}
}

// Notifications returns count notifications with sequences first,
// first+1, ..., each built by Notification with opts.
func Notifications(first uint64, count int, opts ...Option) []*bridge.Notification {
	out := make([]*bridge.Notification, count)
	for i := range out {
		out[i] = Notification(first+uint64(i), opts...)
	}
	return out
}
