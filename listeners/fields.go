package listeners

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// start reads from_id and from_date; with neither, the defaults apply.
func (p *parser) start(f map[string]field, pos int, label string) (Start, bool) {
	var s Start
	if v, ok := f[keyFromID]; ok && !isNull(v.value) {
		id, err := fromID(v.value)
		if err != nil {
			p.fail(v.value, pos, label, keyFromID, err)
		}
		s.FromID = &id
	}
	if v, ok := f[keyFromDate]; ok && !isNull(v.value) {
		if v.value.Kind != yaml.ScalarNode || strings.TrimSpace(v.value.Value) == "" {
			p.fail(v.value, pos, label, keyFromDate, fmt.Errorf("%w: from_date must be a date string such as 2024-01-15T00:00:00Z", ErrInvalidValue))
		}
		s.FromDate = strings.TrimSpace(v.value.Value)
	}
	switch {
	case s.FromID != nil && s.FromDate != "":
		p.fail(f[keyFromDate].key, pos, label, keyFromDate, ErrBothStarts)
	case s.IsZero():
		return p.defaults, true
	}
	return s, false
}

// fromID reads a non-negative integer, or a string of decimal digits.
func fromID(n *yaml.Node) (uint64, error) {
	bad := fmt.Errorf("%w: from_id must be a non-negative integer sequence such as 42", ErrInvalidValue)
	if n.Kind != yaml.ScalarNode {
		return 0, bad
	}
	v, err := scalarValue(n)
	if err != nil {
		return 0, err
	}
	var text string
	switch x := v.(type) {
	case json.Number:
		text = x.String()
	case string:
		text = x
	default:
		return 0, bad
	}
	if !isDigits(text, 10) {
		return 0, fmt.Errorf("%w: got %q", bad, n.Value)
	}
	id, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q does not fit 64 bits", bad, n.Value)
	}
	return id, nil
}

// triggers counts the trigger entries; they are accepted and not run.
func (p *parser) triggers(f map[string]field, pos int, label string) {
	v, ok := f[keyTriggers]
	if !ok || isNull(v.value) {
		return
	}
	if v.value.Kind != yaml.SequenceNode {
		p.fail(v.value, pos, label, keyTriggers, fmt.Errorf("%w: triggers must be a list (they are accepted and not run: the sink replaces them)", ErrInvalidValue))
		return
	}
	if k := len(v.value.Content); k > 0 {
		p.warn.Triggers += k
		p.warn.TriggerListeners++
	}
}

// keep adds a valid listener unless its name or its watch is taken.
func (p *parser) keep(l Listener, f map[string]field) {
	at := f[keyName].value
	if at == nil {
		at = f[keyEvent].value
	}
	if other, ok := p.names[l.Name]; ok {
		p.fail(at, l.Position, l.Name, keyName, fmt.Errorf("%w: %q is also the name of listener #%d (line %d)",
			ErrDuplicateName, l.Name, other.Position, other.Line))
		return
	}
	canon, _ := bridge.CanonicalJSON(l.Identifier) // checked in identifiers
	watch := l.EventType + "\x00" + string(canon)
	if other, ok := p.watches[watch]; ok {
		at := f[keyIdentifiers].value
		if at == nil {
			at = f[keyEvent].value
		}
		p.fail(at, l.Position, l.Name, keyIdentifiers, fmt.Errorf("%w: listener %q (#%d, line %d) watches event %q with the same identifiers; both would share one checkpoint key",
			ErrDuplicateListener, other.Name, other.Position, other.Line, l.EventType))
		return
	}
	p.names[l.Name] = l
	p.watches[watch] = l
	p.out = append(p.out, l)
}
