package nats

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"unicode/utf8"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Header names of README, "What lands in the sink" and of the dead-letter messages.
const (
	HeaderMsgID       = jetstream.MsgIDHeader // "Nats-Msg-Id"
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderSource      = "ce-source"
	HeaderType        = "ce-type"
	HeaderTime        = "ce-time"
	HeaderDataSchema  = "ce-dataschema"
	// HeaderDataContentType is what CloudEvents SDKs read in NATS binary
	// mode (the Go SDK ignores Content-Type there); Content-Type stays for
	// every other consumer.
	HeaderDataContentType = "ce-datacontenttype"
	HeaderContentType     = "Content-Type"
	HeaderDLQKind         = "Aviso-Bridge-Dlq-Kind"
	HeaderDLQReason       = "Aviso-Bridge-Dlq-Reason"
	HeaderDLQEvent        = "Aviso-Bridge-Dlq-Event"
	// HeaderDLQBodyOmitted is set, to the body's size in bytes, on a dead
	// letter sent without its body because the body was too large for the
	// server (max_payload) or the stream (max message size).
	HeaderDLQBodyOmitted = "Aviso-Bridge-Dlq-Body-Omitted"
	ContentTypeJSON      = "application/json"
	ContentTypeCloudEvt  = "application/cloudevents+json"

	// maxReasonLen bounds the reason header of a dead letter.
	maxReasonLen = 1024
)

// encoder turns notifications into NATS messages.
type encoder struct {
	subject    *bridge.Template
	dlq        *bridge.Template
	structured bool
	// stream, when set, is sent as Nats-Expected-Stream (JetStream only).
	stream string
}

// message builds the message of n for subject subj.
func (e *encoder) message(n *bridge.Notification, subj string) *natsgo.Msg {
	m := &natsgo.Msg{}
	e.fill(m, new([maxHeaders]string), n, subj)
	return m
}

// maxHeaders is the most headers message sets.
const maxHeaders = 10

// fill makes m the message of n for subject subj, reusing m's header map
// and vals (the backing array of all header values). Header keys are set
// directly: nats.go headers are case-sensitive.
func (e *encoder) fill(m *natsgo.Msg, vals *[maxHeaders]string, n *bridge.Notification, subj string) {
	h := m.Header
	if h == nil {
		h = make(natsgo.Header, maxHeaders)
	} else {
		clear(h)
	}
	i := 0
	set := func(k, v string) {
		vals[i] = v
		h[k] = vals[i : i+1 : i+1]
		i++
	}
	set(HeaderMsgID, n.ID)
	if e.stream != "" {
		set(jetstream.ExpectedStreamHeader, e.stream)
	}
	m.Subject, m.Reply, m.Header = subj, "", h
	if e.structured {
		set(HeaderContentType, ContentTypeCloudEvt)
		m.Data = n.CloudEvent
		return
	}
	setCE(set, n)
	set(HeaderDataContentType, ContentTypeJSON)
	set(HeaderContentType, ContentTypeJSON)
	m.Data = n.Data
}

// setCE sets the ce- headers of n.
func setCE(set func(k, v string), n *bridge.Notification) {
	set(HeaderSpecVersion, "1.0")
	set(HeaderID, n.ID)
	set(HeaderSource, n.Source)
	set(HeaderType, n.Type)
	if n.TimeRaw != "" {
		set(HeaderTime, n.TimeRaw)
	}
	if n.DataSchema != "" {
		set(HeaderDataSchema, n.DataSchema)
	}
}

// deadLetter builds the dead-letter message of dl.
func (e *encoder) deadLetter(dl bridge.DeadLetter) *natsgo.Msg {
	h := make(natsgo.Header, 10)
	set := func(k, v string) { h[k] = []string{v} }
	var subj string
	if n := dl.Notification; n != nil {
		subj = e.dlq.Render(n)
		setCE(set, n)
		if n.ID != "" {
			set(HeaderMsgID, "dlq:"+n.ID)
		}
	} else {
		subj = e.dlq.Render(&bridge.Notification{Listener: dl.Listener})
	}
	set(HeaderDLQKind, string(dl.Kind))
	reason := dl.Reason
	if len(reason) > maxReasonLen {
		cut := maxReasonLen
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	set(HeaderDLQReason, reason)
	if dl.Kind == bridge.DeadLetterMalformed {
		set(HeaderDLQEvent, dl.Event)
	}
	return &natsgo.Msg{Subject: subj, Header: h, Data: dl.Raw}
}

// payloadSize is what the server counts against max_payload (and a stream
// against its max message size): the encoded headers plus the body.
func payloadSize(m *natsgo.Msg) int {
	return m.Size() - len(m.Subject) - len(m.Reply)
}

// tooLargeForConn reports whether m exceeds the connection's max_payload
// (nats.go would refuse it with ErrMaxPayload).
func tooLargeForConn(nc *natsgo.Conn, m *natsgo.Msg) bool {
	limit := nc.MaxPayload()
	return limit > 0 && int64(payloadSize(m)) > limit
}

// isTooLarge reports a publish refused for its size: over the server's
// max_payload, or over the stream's max message size.
func isTooLarge(err error) bool {
	if errors.Is(err, natsgo.ErrMaxPayload) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum
}

// omitDeadLetterBody drops the body of the dead letter m, keeping its
// headers (ce-id names the notification, the Aviso-Bridge-Dlq-* headers the
// reason) and recording the body's size in HeaderDLQBodyOmitted. A body too
// large for the sink is usually too large for the dead-letter subject too;
// without this the dead letter could never be published. cause says why.
func omitDeadLetterBody(log *slog.Logger, m *natsgo.Msg, cause string) {
	size := len(m.Data)
	m.Data = nil
	m.Header[HeaderDLQBodyOmitted] = []string{strconv.Itoa(size)}
	log.Warn("sink.nats.deadletter.body_omitted", "subject", m.Subject, "id", m.Header.Get(HeaderID),
		"kind", m.Header.Get(HeaderDLQKind), "bytes", size, "error", cause)
}

// publishSubject renders n's subject and checks it can be published to; a
// bad subject is a permanent rejection naming NATS_SUBJECT.
func (e *encoder) publishSubject(n *bridge.Notification) (string, error) {
	subj := e.subject.Render(n)
	if err := checkPublishSubject(subj); err != nil {
		return "", bridge.Permanent(fmt.Errorf("publish %s: subject %q (subject template %q): %w", n.ID, subj, e.subject, err))
	}
	return subj, nil
}
