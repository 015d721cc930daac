package listeners

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// MaxFileSize is the largest listener file read, in bytes.
const MaxFileSize = 8 << 20

// The keys of a listener, in the order the aviso CLI documents them.
const (
	keyName        = "name"
	keyEvent       = "event"
	keyIdentifiers = "identifiers"
	keyFromID      = "from_id"
	keyFromDate    = "from_date"
	keyTriggers    = "triggers"
	keyListeners   = "listeners"
)

const knownKeys = "name, event, identifiers, from_id, from_date, triggers"

// ParseFile reads the listener file at path. defaults (AVISO_FROM_ID or
// AVISO_FROM_DATE) is the start of listeners that set neither from_id nor
// from_date. Every configuration error is an *Error (several are joined with
// errors.Join, first error first); the listeners come back in file order.
func ParseFile(path string, defaults Start) ([]Listener, Warnings, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, Warnings{}, &Error{File: path, Err: err}
	}
	return Parse(path, data, defaults)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidValue, MaxFileSize)
	}
	return data, nil
}

// Parse is ParseFile on the file's contents; file names it in errors.
func Parse(file string, data []byte, defaults Start) ([]Listener, Warnings, error) {
	if defaults.FromID != nil && defaults.FromDate != "" {
		return nil, Warnings{}, fmt.Errorf("default start: %w", ErrBothStarts)
	}
	p := &parser{file: file, defaults: defaults, names: map[string]Listener{}, watches: map[string]Listener{}}
	items := p.listenerNodes(data)
	for i, item := range items {
		if len(p.errs) >= maxErrors {
			break
		}
		p.listener(item, i+1)
	}
	switch len(p.errs) {
	case 0:
		return p.out, p.warn, nil
	case 1:
		return nil, Warnings{}, p.errs[0]
	}
	return nil, Warnings{}, errors.Join(p.errs...)
}

type parser struct {
	file     string
	defaults Start
	conv     converter
	out      []Listener
	warn     Warnings
	errs     []error
	names    map[string]Listener // by name
	watches  map[string]Listener // by event and canonical identifiers
}

// fail records an error at node n (nil: no line) about listener pos
// (0: none) labelled label, at key; a *nodeError in err supplies its own
// node and key path.
func (p *parser) fail(n *yaml.Node, pos int, label, key string, err error) {
	var ne *nodeError
	if errors.As(err, &ne) {
		if ne.node != nil {
			n = ne.node
		}
		if ne.path != "" {
			key = ne.path
		}
		err = ne.err
	}
	e := &Error{File: p.file, Position: pos, Listener: label, Key: key, Err: err}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+):`)

// listenerNodes decodes the document and returns the entries of its
// listeners: list.
func (p *parser) listenerNodes(data []byte) []*yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, extra yaml.Node
	err := dec.Decode(&doc)
	if err == nil {
		if err2 := dec.Decode(&extra); !errors.Is(err2, io.EOF) {
			err = errors.New("more than one YAML document (---); put every listener under one listeners: list")
		}
	}
	switch {
	case errors.Is(err, io.EOF):
		p.fail(nil, 0, "", "", ErrNoListeners)
		return nil
	case err != nil:
		e := &Error{File: p.file, Err: fmt.Errorf("%w: %w", ErrSyntax, err)}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
		}
		p.errs = append(p.errs, e)
		return nil
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = deref(doc.Content[0])
	}
	return p.topLevel(root)
}

func (p *parser) topLevel(root *yaml.Node) []*yaml.Node {
	if root == nil || isNull(root) || root.Kind == yaml.DocumentNode {
		p.fail(root, 0, "", "", ErrNoListeners)
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.fail(root, 0, "", "", fmt.Errorf("%w: the file must be a mapping with one key, listeners", ErrInvalidValue))
		return nil
	}
	var list *yaml.Node
	err := eachPair(root, "", func(k string, kn, vn *yaml.Node) error {
		if k != keyListeners {
			p.fail(kn, 0, "", k, fmt.Errorf("%w: the file has one top-level key, listeners", ErrUnknownKey))
			return nil
		}
		list = deref(vn)
		return nil
	})
	switch {
	case err != nil:
		p.fail(root, 0, "", "", err)
		return nil
	case list == nil && len(p.errs) == 0, list != nil && isNull(list):
		p.fail(root, 0, "", keyListeners, ErrNoListeners)
		return nil
	case list == nil:
		return nil
	case list.Kind != yaml.SequenceNode:
		p.fail(list, 0, "", keyListeners, fmt.Errorf("%w: listeners must be a list of listeners (- event: ...)", ErrInvalidValue))
		return nil
	case len(list.Content) == 0:
		p.fail(list, 0, "", keyListeners, ErrNoListeners)
	}
	return list.Content
}

// listener reads entry pos of the list and keeps it when it has no error.
func (p *parser) listener(item *yaml.Node, pos int) {
	n := deref(item)
	if n == nil || n.Kind != yaml.MappingNode {
		p.fail(item, pos, "", "", fmt.Errorf("%w: a listener is a mapping with the keys %s", ErrInvalidValue, knownKeys))
		return
	}
	before := len(p.errs)
	f := p.fields(n, pos)
	name, named := p.name(f, pos)
	l := Listener{Name: name, Position: pos, Line: n.Line}
	l.EventType = p.event(n, f, pos, name)
	l.Identifier = p.identifiers(f, pos, name)
	l.Start, l.DefaultStart = p.start(f, pos, name)
	p.triggers(f, pos, name)
	if !named && l.EventType != "" {
		l.Name = l.EventType + "-" + strconv.Itoa(pos)
	}
	if len(p.errs) > before {
		return
	}
	p.keep(l, f)
}

// field is one key of a listener with its value.
type field struct{ key, value *yaml.Node }

// fields collects the keys of listener n; unknown keys are errors.
func (p *parser) fields(n *yaml.Node, pos int) map[string]field {
	f := map[string]field{}
	label := ""
	if nn := findKey(n, keyName); nn != nil && nn.Kind == yaml.ScalarNode && !isNull(nn) {
		label = nn.Value
	}
	err := eachPair(n, "", func(k string, kn, vn *yaml.Node) error {
		switch k {
		case keyName, keyEvent, keyIdentifiers, keyFromID, keyFromDate, keyTriggers:
			f[k] = field{kn, deref(vn)}
		case "request":
			p.fail(kn, pos, label, k, fmt.Errorf("%w: pyaviso's request: is identifiers: in the aviso CLI 2.x listener file", ErrUnknownKey))
		default:
			p.fail(kn, pos, label, k, fmt.Errorf("%w (known keys: %s)", ErrUnknownKey, knownKeys))
		}
		return nil
	})
	if err != nil {
		p.fail(n, pos, label, "", err)
	}
	return f
}

// findKey is the value of key k in mapping n, nil when absent.
func findKey(n *yaml.Node, k string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if kn := deref(n.Content[i]); kn != nil && kn.Value == k {
			return deref(n.Content[i+1])
		}
	}
	return nil
}

func (p *parser) name(f map[string]field, pos int) (string, bool) {
	v, ok := f[keyName]
	if !ok || isNull(v.value) {
		return "", false
	}
	if v.value.Kind != yaml.ScalarNode {
		p.fail(v.value, pos, "", keyName, fmt.Errorf("%w: name must be a string", ErrInvalidValue))
		return "", false
	}
	name := v.value.Value
	switch {
	case name == "":
		p.fail(v.value, pos, "", keyName, fmt.Errorf("%w: name must not be empty; leave it out for <event>-%d", ErrInvalidValue, pos))
	case hasControl(name):
		p.fail(v.value, pos, "", keyName, fmt.Errorf("%w: name %q holds control characters", ErrInvalidValue, name))
	}
	return name, true
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

func (p *parser) event(n *yaml.Node, f map[string]field, pos int, label string) string {
	v, ok := f[keyEvent]
	switch {
	case !ok:
		p.fail(n, pos, label, keyEvent, ErrMissingEvent)
	case v.value.Kind != yaml.ScalarNode:
		p.fail(v.value, pos, label, keyEvent, fmt.Errorf("%w: event must be a string (the aviso event type)", ErrInvalidValue))
	case isNull(v.value) || v.value.Value == "":
		p.fail(v.value, pos, label, keyEvent, ErrMissingEvent)
	case hasControl(v.value.Value):
		p.fail(v.value, pos, label, keyEvent, fmt.Errorf("%w: event %q holds control characters", ErrInvalidValue, v.value.Value))
	default:
		return v.value.Value
	}
	return ""
}

// identifiers is the JSON of the identifiers mapping ({} when absent or
// null).
func (p *parser) identifiers(f map[string]field, pos int, label string) json.RawMessage {
	v, ok := f[keyIdentifiers]
	if !ok || isNull(v.value) {
		return json.RawMessage("{}")
	}
	if v.value.Kind != yaml.MappingNode {
		p.fail(v.value, pos, label, keyIdentifiers, fmt.Errorf("%w: identifiers must be a mapping, e.g. {class: od, step: {in: [0, 6]}}", ErrInvalidValue))
		return nil
	}
	m, err := p.conv.mapping(v.value, keyIdentifiers, 0)
	if err != nil {
		p.fail(v.value, pos, label, keyIdentifiers, err)
		return nil
	}
	raw, err := marshal(m)
	if err == nil {
		_, err = bridge.CanonicalJSON(raw) // the checkpoint key will need it
	}
	if err != nil {
		p.fail(v.value, pos, label, keyIdentifiers, fmt.Errorf("%w: %w", ErrInvalidValue, err))
		return nil
	}
	return raw
}

// marshal is compact JSON with keys sorted and numbers exactly as resolved
// (no float64 rounding of large integers), HTML characters unescaped.
func marshal(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
