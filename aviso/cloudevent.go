package aviso

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Notification is one aviso notification: a CloudEvent from a
// live-notification or replay frame. The byte slices (and, on the stream
// path, the strings) share memory with the received frame: treat them as
// read-only.
type Notification struct {
	// EventType and Sequence are split from ID at its last '@'.
	EventType string
	Sequence  uint64
	// ID, Source, Type, Time, DataSchema, DataContentType and SpecVersion are
	// the CloudEvent attributes exactly as received ("" when absent or null).
	ID, Source, Type, Time, DataSchema, DataContentType, SpecVersion string
	// Identifier is the raw JSON object data.identifier.
	Identifier json.RawMessage
	// Data is the raw CloudEvent data member ({"identifier":...,"payload":...}),
	// byte for byte as received.
	Data json.RawMessage
	// CloudEvent is the whole CloudEvent JSON, byte for byte as received
	// (except that invalid UTF-8, if any, is replaced by U+FFFD).
	CloudEvent json.RawMessage
}

// ParseEventID splits a CloudEvent id "<event_type>@<sequence>" at its last
// '@' ("weird@type@7" is event type "weird@type", sequence 7). The event type
// must be non-empty and the sequence a decimal uint64 (digits only).
func ParseEventID(id string) (eventType string, seq uint64, err error) {
	at := strings.LastIndexByte(id, '@')
	switch {
	case at < 0:
		return "", 0, fmt.Errorf("%w: id %q has no '@'", ErrMalformed, id)
	case at == 0:
		return "", 0, fmt.Errorf("%w: id %q has an empty event type", ErrMalformed, id)
	}
	digits := id[at+1:]
	for i := 0; i < len(digits); i++ {
		if !isDigit(digits[i]) {
			return "", 0, fmt.Errorf("%w: id %q: sequence is not a decimal number", ErrMalformed, id)
		}
	}
	seq, err = strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("%w: id %q: sequence out of range", ErrMalformed, id)
	}
	return id[:at], seq, nil
}

// ParseCloudEvent decodes one notification CloudEvent. It rejects invalid
// JSON, a value that is not an object, an id that is not
// "<event_type>@<uint64>", a missing data object, a data.identifier that is
// missing or not an object, and attributes that are neither strings nor null.
// Errors wrap ErrMalformed. The result does not alias raw.
func ParseCloudEvent(raw []byte) (Notification, error) {
	n, _, err := parseNotification(bytes.Clone(raw))
	return n, err
}

// Field states of the scanner.
const (
	absent uint8 = iota
	isString
	isNull
	isObject
	isOther
)

// CloudEvent attributes the scanner extracts.
const (
	attrID = iota
	attrSource
	attrType
	attrTime
	attrDataSchema
	attrDataContentType
	attrSpecVersion
	numAttrs
)

var attrNames = [numAttrs]string{"id", "source", "type", "time", "dataschema", "datacontenttype", "specversion"}

type attr struct {
	val   string
	state uint8
}

type ceScan struct {
	attrs           [numAttrs]attr
	data, ident     []byte
	dataSt, identSt uint8
	notObject       bool
}

// parseNotification decodes b, which it may alias (and replaces when it holds
// invalid UTF-8). ctlType is the top-level "type" when it is a string, so that
// the caller can recognise control frames sent as live-notification.
func parseNotification(b []byte) (n Notification, ctlType string, err error) {
	if !utf8.Valid(b) {
		b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
	}
	var c ceScan
	if err := c.scan(b); err != nil {
		return Notification{}, "", fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if c.attrs[attrType].state == isString {
		ctlType = c.attrs[attrType].val
	}
	if err := c.check(); err != nil {
		return Notification{}, ctlType, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	a := &c.attrs
	n = Notification{
		ID:              a[attrID].val,
		Source:          a[attrSource].val,
		Type:            a[attrType].val,
		Time:            a[attrTime].val,
		DataSchema:      a[attrDataSchema].val,
		DataContentType: a[attrDataContentType].val,
		SpecVersion:     a[attrSpecVersion].val,
		Identifier:      c.ident,
		Data:            c.data,
		CloudEvent:      b,
	}
	n.EventType, n.Sequence, err = ParseEventID(n.ID)
	if err != nil {
		return Notification{}, ctlType, err
	}
	return n, ctlType, nil
}

// scan validates b as one JSON value and records the attributes, data and
// data.identifier of a top-level object (the last occurrence of a duplicated
// key wins, as in encoding/json).
func (c *ceScan) scan(b []byte) error {
	i := skipWS(b, 0)
	var end int
	var err error
	if i < len(b) && b[i] == '{' {
		end, err = eachMember(b, i, func(key []byte, kesc bool, v int) (int, error) {
			k := decodeKey(key, kesc)
			if k == "data" {
				return c.scanData(b, v)
			}
			for j := range attrNames {
				if k == attrNames[j] {
					return scanAttr(b, v, &c.attrs[j])
				}
			}
			return skipValue(b, v, 1)
		})
	} else {
		end, err = skipValue(b, i, 0)
		c.notObject = true
	}
	if err != nil {
		return err
	}
	if end = skipWS(b, end); end != len(b) {
		return errAt(end, "data after the JSON value")
	}
	return nil
}

func scanAttr(b []byte, v int, a *attr) (int, error) {
	if v < len(b) && b[v] == '"' {
		end, esc, err := scanString(b, v)
		if err != nil {
			return 0, err
		}
		a.state = isString
		if esc {
			a.val = decodeEscaped(b[v+1 : end-1])
		} else {
			a.val = bytesString(b[v+1 : end-1])
		}
		return end, nil
	}
	end, err := skipValue(b, v, 1)
	if err != nil {
		return 0, err
	}
	a.val, a.state = "", isOther
	if b[v] == 'n' {
		a.state = isNull
	}
	return end, nil
}

func (c *ceScan) scanData(b []byte, v int) (int, error) {
	c.ident, c.identSt = nil, absent
	if v >= len(b) || b[v] != '{' {
		end, err := skipValue(b, v, 1)
		if err != nil {
			return 0, err
		}
		c.data, c.dataSt = b[v:end], isOther
		if b[v] == 'n' {
			c.dataSt = isNull
		}
		return end, nil
	}
	end, err := eachMember(b, v, func(key []byte, kesc bool, iv int) (int, error) {
		end, err := skipValue(b, iv, 2)
		if err == nil && decodeKey(key, kesc) == "identifier" {
			c.ident, c.identSt = b[iv:end], isOther
			if b[iv] == '{' {
				c.identSt = isObject
			}
		}
		return end, err
	})
	if err != nil {
		return 0, err
	}
	c.data, c.dataSt = b[v:end], isObject
	return end, nil
}

// check applies the shape rules once the JSON is known to be valid.
func (c *ceScan) check() error {
	if c.notObject {
		return fmt.Errorf("CloudEvent is not a JSON object")
	}
	switch c.attrs[attrID].state {
	case absent, isNull:
		return fmt.Errorf("CloudEvent has no id")
	case isOther:
		return fmt.Errorf("CloudEvent id is not a JSON string")
	}
	switch c.dataSt {
	case absent, isNull:
		return fmt.Errorf("CloudEvent %q has no data", c.attrs[attrID].val)
	case isOther:
		return fmt.Errorf("CloudEvent %q: data is not a JSON object", c.attrs[attrID].val)
	}
	switch c.identSt {
	case absent:
		return fmt.Errorf("CloudEvent %q has no data.identifier", c.attrs[attrID].val)
	case isOther:
		return fmt.Errorf("CloudEvent %q: data.identifier is not a JSON object", c.attrs[attrID].val)
	}
	for j, a := range c.attrs {
		if a.state == isOther {
			return fmt.Errorf("CloudEvent %q: %s is not a JSON string", c.attrs[attrID].val, attrNames[j])
		}
	}
	return nil
}
