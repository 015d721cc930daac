package bridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Encoding says how substituted template values are made safe for a destination.
type Encoding int

const (
	// EncodeNATSSubject makes each substituted value exactly one subject
	// token: bytes outside [A-Za-z0-9_-] are percent-encoded ('.' -> %2E).
	EncodeNATSSubject Encoding = iota
	// EncodeKafkaTopic replaces bytes outside [A-Za-z0-9._-] with '_'.
	EncodeKafkaTopic
	// EncodeNone substitutes values verbatim (record keys).
	EncodeNone
)

// missingValue renders an identifier key the notification does not carry.
const missingValue = "_"

type partKind uint8

const (
	partLiteral partKind = iota
	partEventType
	partSequence
	partID
	partIdentifier
	partListener
)

type templatePart struct {
	kind partKind
	text string // literal text, or the identifier key
}

// Template is a parsed NATS_SUBJECT / KAFKA_TOPIC / KAFKA_KEY / DLQ name
// with placeholders {event_type}, {sequence}, {id}, {identifier.KEY} and
// {listener} (README, "What lands in the sink").
type Template struct {
	src   string
	parts []templatePart
	enc   Encoding
}

// ParseTemplate parses src. An unknown placeholder or an unbalanced brace is
// an error that quotes the template.
func ParseTemplate(src string, enc Encoding) (*Template, error) {
	t := &Template{src: src, enc: enc}
	rest := src
	for rest != "" {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			t.parts = append(t.parts, templatePart{kind: partLiteral, text: rest})
			break
		}
		if rest[open] == '}' {
			return nil, fmt.Errorf("template %q: '}' without a matching '{'", src)
		}
		if open > 0 {
			t.parts = append(t.parts, templatePart{kind: partLiteral, text: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("template %q: '{' without a matching '}'", src)
		}
		name := rest[open+1 : open+end]
		switch {
		case name == "event_type":
			t.parts = append(t.parts, templatePart{kind: partEventType})
		case name == "sequence":
			t.parts = append(t.parts, templatePart{kind: partSequence})
		case name == "id":
			t.parts = append(t.parts, templatePart{kind: partID})
		case name == "listener":
			t.parts = append(t.parts, templatePart{kind: partListener})
		case strings.HasPrefix(name, "identifier.") && len(name) > len("identifier.") && !strings.ContainsAny(name, "{"):
			t.parts = append(t.parts, templatePart{kind: partIdentifier, text: strings.TrimPrefix(name, "identifier.")})
		default:
			return nil, fmt.Errorf("template %q: unknown placeholder {%s} (known: {event_type}, {sequence}, {id}, {identifier.KEY}, {listener})", src, name)
		}
		rest = rest[open+end+1:]
	}
	return t, nil
}

// String returns the template source.
func (t *Template) String() string { return t.src }

// Static reports whether the template has no placeholder.
func (t *Template) Static() bool {
	for _, p := range t.parts {
		if p.kind != partLiteral {
			return false
		}
	}
	return true
}

// Render substitutes n's values into the template.
func (t *Template) Render(n *Notification) string {
	if len(t.parts) == 1 && t.parts[0].kind == partLiteral {
		return t.parts[0].text
	}
	var b strings.Builder
	b.Grow(len(t.src) + 16)
	var ids map[string]json.RawMessage // parsed once, on the first identifier placeholder
	parsed := false
	for _, p := range t.parts {
		switch p.kind {
		case partLiteral:
			b.WriteString(p.text)
		case partEventType:
			t.writeValue(&b, n.EventType)
		case partSequence:
			b.WriteString(strconv.FormatUint(n.Sequence, 10))
		case partID:
			t.writeValue(&b, n.ID)
		case partListener:
			t.writeValue(&b, n.Listener)
		case partIdentifier:
			if !parsed {
				ids, parsed = parseIdentifier(n.Identifier), true
			}
			v, ok := lookupIdentifier(ids, p.text)
			if !ok {
				b.WriteString(missingValue)
				continue
			}
			t.writeValue(&b, v)
		}
	}
	return b.String()
}

// Wildcard returns the NATS subject that matches every rendering of the
// template: each token holding a placeholder becomes '*'.
func (t *Template) Wildcard() string {
	// Rebuild the source with placeholders marked, then split into tokens.
	var b strings.Builder
	for _, p := range t.parts {
		if p.kind == partLiteral {
			b.WriteString(p.text)
		} else {
			b.WriteByte(0)
		}
	}
	tokens := strings.Split(b.String(), ".")
	for i, tok := range tokens {
		if strings.IndexByte(tok, 0) >= 0 {
			tokens[i] = "*"
		}
	}
	return strings.Join(tokens, ".")
}

func (t *Template) writeValue(b *strings.Builder, v string) {
	if v == "" && t.enc != EncodeNone {
		b.WriteString(missingValue)
		return
	}
	switch t.enc {
	case EncodeNone:
		b.WriteString(v)
	case EncodeKafkaTopic:
		for i := 0; i < len(v); i++ {
			c := v[i]
			if isAlnum(c) || c == '.' || c == '_' || c == '-' {
				b.WriteByte(c)
			} else {
				b.WriteByte('_')
			}
		}
	case EncodeNATSSubject:
		const hex = "0123456789ABCDEF"
		for i := 0; i < len(v); i++ {
			c := v[i]
			if isAlnum(c) || c == '_' || c == '-' {
				b.WriteByte(c)
			} else {
				b.WriteByte('%')
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&15])
			}
		}
	}
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// identifierValue extracts key k from a raw JSON object.
func identifierValue(obj json.RawMessage, k string) (string, bool) {
	return lookupIdentifier(parseIdentifier(obj), k)
}

// parseIdentifier decodes a raw JSON object (nil when it is not one).
func parseIdentifier(obj json.RawMessage) map[string]json.RawMessage {
	if len(obj) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil
	}
	return m
}

// lookupIdentifier returns key k of a parsed identifier as template text.
func lookupIdentifier(m map[string]json.RawMessage, k string) (string, bool) {
	raw, ok := m[k]
	if !ok {
		return "", false
	}
	raw = bytes.TrimSpace(raw)
	if bytes.Equal(raw, []byte("null")) {
		return "", false
	}
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			return s, true
		}
	}
	var c bytes.Buffer
	if err := json.Compact(&c, raw); err != nil {
		return string(raw), true
	}
	return c.String(), true
}
