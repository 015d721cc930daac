package listeners_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/listeners"
)

func u64(v uint64) *uint64 { return &v }

func parse(t *testing.T, src string, defaults listeners.Start) ([]listeners.Listener, listeners.Warnings, error) {
	t.Helper()
	return listeners.Parse("l.yaml", []byte(src), defaults)
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		defaults listeners.Start
		want     []listeners.Listener // Name, EventType, Identifier, Start, DefaultStart, Position, Line
		warn     listeners.Warnings
	}{
		{
			name: "minimal",
			src:  "listeners:\n  - event: mars\n",
			want: []listeners.Listener{{Name: "mars-1", EventType: "mars", Identifier: []byte(`{}`), DefaultStart: true, Position: 1, Line: 2}},
		},
		{
			name: "names, default names by 1-based position, identifiers canonical",
			src: `listeners:
  - name: od
    event: mars
    identifiers:
      stream: enfo
      class: od
      step: [1, 2, 3]
  - event: mars
    identifiers: {class: rd}
  - event: dissemination
    identifiers: {destination: FOO}
`,
			want: []listeners.Listener{
				{Name: "od", EventType: "mars", Identifier: []byte(`{"class":"od","step":[1,2,3],"stream":"enfo"}`), DefaultStart: true, Position: 1, Line: 2},
				{Name: "mars-2", EventType: "mars", Identifier: []byte(`{"class":"rd"}`), DefaultStart: true, Position: 2, Line: 8},
				{Name: "dissemination-3", EventType: "dissemination", Identifier: []byte(`{"destination":"FOO"}`), DefaultStart: true, Position: 3, Line: 10},
			},
		},
		{
			name: "scalars resolve as in the aviso CLI (serde_yaml, YAML 1.2)",
			src: `listeners:
  - event: mars
    identifiers:
      expver: 0001
      date: 2024-01-15
      flag: yes
      on: true
      hex: 0x1F
      oct: 0o17
      bin: 0b101
      neg: -3
      plus: +4
      float: 1.50
      exp: 1e3
      half: .5
      big: 1e400
      nothing: ~
      quoted: "12"
      single: '0x10'
      inf: inf
      str: !!str 7
      int: !!int "8"
`,
			want: []listeners.Listener{{Name: "mars-1", EventType: "mars", DefaultStart: true, Position: 1, Line: 2,
				Identifier: []byte(`{"big":"1e400","bin":5,"date":"2024-01-15","exp":1000,"expver":"0001","flag":"yes","float":1.5,"half":0.5,` +
					`"hex":31,"inf":"inf","int":8,"neg":-3,"nothing":null,"oct":15,"on":true,"plus":4,"quoted":"12","single":"0x10","str":"7"}`)}},
		},
		{
			name: "constraints and polygons",
			src: `listeners:
  - name: weather
    event: weather
    identifiers:
      severity: {gte: 5}
      anomaly: {between: [40, 50]}
      region: {in: [north, south]}
  - name: alps
    event: observations
    identifiers:
      polygon:
        - [46, 8]
        - [46, 9.5]
        - [47, 9]
        - [46, 8]
`,
			want: []listeners.Listener{
				{Name: "weather", EventType: "weather", DefaultStart: true, Position: 1, Line: 2,
					Identifier: []byte(`{"anomaly":{"between":[40,50]},"region":{"in":["north","south"]},"severity":{"gte":5}}`)},
				{Name: "alps", EventType: "observations", DefaultStart: true, Position: 2, Line: 8,
					Identifier: []byte(`{"polygon":[[46,8],[46,9.5],[47,9],[46,8]]}`)},
			},
		},
		{
			name:     "start fields: integer, quoted integer, date; defaults only where neither is set",
			defaults: listeners.Start{FromDate: "2020-01-01T00:00:00Z"},
			src: `listeners:
  - {name: a, event: e, from_id: 42}
  - {name: b, event: e, identifiers: {k: 1}, from_id: "7"}
  - {name: c, event: e, identifiers: {k: 2}, from_date: 2024-01-15T00:00:00Z}
  - {name: d, event: e, identifiers: {k: 3}}
  - {name: e, event: e, identifiers: {k: 4}, from_id: ~}
  - {name: f, event: e, identifiers: {k: 5}, from_id: 0}
`,
			want: []listeners.Listener{
				{Name: "a", EventType: "e", Identifier: []byte(`{}`), Start: listeners.Start{FromID: u64(42)}, Position: 1, Line: 2},
				{Name: "b", EventType: "e", Identifier: []byte(`{"k":1}`), Start: listeners.Start{FromID: u64(7)}, Position: 2, Line: 3},
				{Name: "c", EventType: "e", Identifier: []byte(`{"k":2}`), Start: listeners.Start{FromDate: "2024-01-15T00:00:00Z"}, Position: 3, Line: 4},
				{Name: "d", EventType: "e", Identifier: []byte(`{"k":3}`), Start: listeners.Start{FromDate: "2020-01-01T00:00:00Z"}, DefaultStart: true, Position: 4, Line: 5},
				{Name: "e", EventType: "e", Identifier: []byte(`{"k":4}`), Start: listeners.Start{FromDate: "2020-01-01T00:00:00Z"}, DefaultStart: true, Position: 5, Line: 6},
				{Name: "f", EventType: "e", Identifier: []byte(`{"k":5}`), Start: listeners.Start{FromID: u64(0)}, Position: 6, Line: 7},
			},
		},
		{
			name: "triggers accepted, not run, counted; null identifiers and triggers are empty",
			src: `listeners:
  - event: mars
    identifiers: ~
    triggers:
      - type: echo
      - type: command
        command: "echo {{ notification.sequence }}"
  - event: dissemination
    triggers: []
  - event: other
    triggers:
`,
			want: []listeners.Listener{
				{Name: "mars-1", EventType: "mars", Identifier: []byte(`{}`), DefaultStart: true, Position: 1, Line: 2},
				{Name: "dissemination-2", EventType: "dissemination", Identifier: []byte(`{}`), DefaultStart: true, Position: 2, Line: 8},
				{Name: "other-3", EventType: "other", Identifier: []byte(`{}`), DefaultStart: true, Position: 3, Line: 10},
			},
			warn: listeners.Warnings{Triggers: 2, TriggerListeners: 1},
		},
		{
			name: "large integers stay exact, HTML characters unescaped",
			src:  "listeners:\n  - event: e\n    identifiers: {id: 12345678901234567890, neg: -0x8000000000000001, tag: \"<a&b>\"}\n",
			want: []listeners.Listener{{Name: "e-1", EventType: "e", DefaultStart: true, Position: 1, Line: 2,
				Identifier: []byte(`{"id":12345678901234567890,"neg":-9223372036854775809,"tag":"<a&b>"}`)}},
		},
		{
			name: "anchors and aliases",
			src: `listeners:
  - name: a
    event: mars
    identifiers: &od {class: od, step: [0, 6]}
  - name: b
    event: dissemination
    identifiers: *od
`,
			want: []listeners.Listener{
				{Name: "a", EventType: "mars", Identifier: []byte(`{"class":"od","step":[0,6]}`), DefaultStart: true, Position: 1, Line: 2},
				{Name: "b", EventType: "dissemination", Identifier: []byte(`{"class":"od","step":[0,6]}`), DefaultStart: true, Position: 2, Line: 5},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warn, err := parse(t, tt.src, tt.defaults)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if warn != tt.warn {
				t.Errorf("warnings = %+v, want %+v", warn, tt.warn)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d listeners, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				assertListener(t, got[i], tt.want[i])
			}
		})
	}
}

func assertListener(t *testing.T, got, want listeners.Listener) {
	t.Helper()
	if got.Name != want.Name || got.EventType != want.EventType || string(got.Identifier) != string(want.Identifier) ||
		got.DefaultStart != want.DefaultStart || got.Position != want.Position || got.Line != want.Line || got.FromDate != want.FromDate {
		t.Errorf("listener\n got  %s %s %s default=%v pos=%d line=%d from_date=%q\n want %s %s %s default=%v pos=%d line=%d from_date=%q",
			got.Name, got.EventType, got.Identifier, got.DefaultStart, got.Position, got.Line, got.FromDate,
			want.Name, want.EventType, want.Identifier, want.DefaultStart, want.Position, want.Line, want.FromDate)
	}
	if (got.FromID == nil) != (want.FromID == nil) || (got.FromID != nil && *got.FromID != *want.FromID) {
		t.Errorf("listener %s: from_id = %v, want %v", got.Name, deref(got.FromID), deref(want.FromID))
	}
}

func deref(p *uint64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		is   error
		// want is the first error: line, position, listener label, key, and
		// a fragment of the message.
		line     int
		position int
		listener string
		key      string
		fragment string
	}{
		{name: "empty file", src: "", is: listeners.ErrNoListeners},
		{name: "only a comment", src: "# nothing\n", is: listeners.ErrNoListeners},
		{name: "no listeners key", src: "listeners: ~\n", is: listeners.ErrNoListeners, line: 1, key: "listeners"},
		{name: "empty list", src: "listeners: []\n", is: listeners.ErrNoListeners, line: 1, key: "listeners"},
		{name: "syntax", src: "listeners: [\n", is: listeners.ErrSyntax, line: 1},
		{name: "two documents", src: "listeners: [{event: a}]\n---\nlisteners: [{event: b}]\n", is: listeners.ErrSyntax, fragment: "more than one YAML document"},
		{name: "top level is a list", src: "- event: a\n", is: listeners.ErrInvalidValue, line: 1},
		{name: "unknown top-level key", src: "listeners: [{event: a}]\nbase_url: http://x\n", is: listeners.ErrUnknownKey, line: 2, key: "base_url"},
		{name: "listeners not a list", src: "listeners: {event: a}\n", is: listeners.ErrInvalidValue, line: 1, key: "listeners"},
		{name: "listener not a mapping", src: "listeners:\n  - mars\n", is: listeners.ErrInvalidValue, line: 2, position: 1},
		{name: "unknown listener key, named", src: "listeners:\n  - name: od\n    event: mars\n    form_id: 3\n",
			is: listeners.ErrUnknownKey, line: 4, position: 1, listener: "od", key: "form_id", fragment: "known keys: name, event"},
		{name: "pyaviso request key", src: "listeners:\n  - event: mars\n    request: {class: od}\n",
			is: listeners.ErrUnknownKey, line: 3, position: 1, key: "request", fragment: "identifiers:"},
		{name: "key twice", src: "listeners:\n  - event: mars\n    event: dissemination\n", is: listeners.ErrDuplicateKey, line: 3, position: 1, key: "event"},
		{name: "identifier key twice", src: "listeners:\n  - event: mars\n    identifiers:\n      class: od\n      class: rd\n",
			is: listeners.ErrDuplicateKey, line: 5, position: 1, key: "identifiers.class"},
		{name: "missing event", src: "listeners:\n  - event: a\n  - name: x\n    identifiers: {class: od}\n", is: listeners.ErrMissingEvent, line: 3, position: 2, listener: "x", key: "event"},
		{name: "null event", src: "listeners:\n  - event: ~\n", is: listeners.ErrMissingEvent, line: 2, position: 1, key: "event"},
		{name: "empty event", src: "listeners:\n  - event: ''\n", is: listeners.ErrMissingEvent, line: 2, position: 1, key: "event"},
		{name: "event a list", src: "listeners:\n  - event: [a]\n", is: listeners.ErrInvalidValue, line: 2, position: 1, key: "event"},
		{name: "both start fields", src: "listeners:\n  - name: a\n    event: e\n    from_id: 1\n    from_date: 2024-01-01T00:00:00Z\n",
			is: listeners.ErrBothStarts, line: 5, position: 1, listener: "a", key: "from_date"},
		{name: "from_id negative", src: "listeners:\n  - event: e\n    from_id: -1\n", is: listeners.ErrInvalidValue, line: 3, position: 1, key: "from_id"},
		{name: "from_id not a number", src: "listeners:\n  - event: e\n    from_id: latest\n", is: listeners.ErrInvalidValue, line: 3, position: 1, key: "from_id"},
		{name: "from_id a float", src: "listeners:\n  - event: e\n    from_id: 1.5\n", is: listeners.ErrInvalidValue, line: 3, position: 1, key: "from_id"},
		{name: "from_id too big", src: "listeners:\n  - event: e\n    from_id: 18446744073709551616\n", is: listeners.ErrInvalidValue, line: 3, position: 1, key: "from_id"},
		{name: "from_date a mapping", src: "listeners:\n  - event: e\n    from_date: {a: 1}\n", is: listeners.ErrInvalidValue, line: 3, position: 1, key: "from_date"},
		{name: "identifiers a list", src: "listeners:\n  - event: e\n    identifiers: [a]\n", is: listeners.ErrInvalidValue, line: 3, position: 1, key: "identifiers"},
		{name: "identifier .inf", src: "listeners:\n  - event: e\n    identifiers:\n      step: {gte: .inf}\n",
			is: listeners.ErrInvalidValue, line: 4, position: 1, key: "identifiers.step.gte"},
		{name: "identifier key a list", src: "listeners:\n  - event: e\n    identifiers:\n      [a]: 1\n", is: listeners.ErrInvalidValue, line: 4, position: 1, key: "identifiers"},
		{name: "merge key", src: "listeners:\n  - event: e\n    identifiers:\n      <<: {class: od}\n", is: listeners.ErrInvalidValue, line: 4, position: 1, key: "identifiers.<<", fragment: "merge"},
		{name: "custom tag", src: "listeners:\n  - event: e\n    identifiers: {a: !secret x}\n", is: listeners.ErrInvalidValue, line: 3, position: 1, key: "identifiers.a"},
		{name: "triggers a mapping", src: "listeners:\n  - event: e\n    triggers: {type: echo}\n", is: listeners.ErrInvalidValue, line: 3, position: 1, key: "triggers"},
		{name: "duplicate names", src: "listeners:\n  - {name: a, event: e}\n  - {name: a, event: f}\n",
			is: listeners.ErrDuplicateName, line: 3, position: 2, listener: "a", key: "name", fragment: "listener #1 (line 2)"},
		{name: "default name collides with an explicit one", src: "listeners:\n  - {name: e-2, event: x}\n  - {event: e}\n",
			is: listeners.ErrDuplicateName, line: 3, position: 2, listener: "e-2", key: "name"},
		{name: "same event and identifiers", src: "listeners:\n  - {name: a, event: mars, identifiers: {class: od, step: 1}}\n  - {name: b, event: mars, identifiers: {step: 1.0, class: \"od\"}}\n",
			is: listeners.ErrDuplicateListener, line: 3, position: 2, listener: "b", key: "identifiers", fragment: `listener "a" (#1, line 2)`},
		{name: "same event, both without identifiers", src: "listeners:\n  - {event: mars}\n  - {event: mars, identifiers: {}}\n",
			is: listeners.ErrDuplicateListener, line: 3, position: 2, listener: "mars-2", key: "identifiers"},
		{name: "name with a newline", src: "listeners:\n  - {name: \"a\\nb\", event: e}\n", is: listeners.ErrInvalidValue, line: 2, position: 1, key: "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := parse(t, tt.src, listeners.Start{})
			if err == nil {
				t.Fatalf("Parse: no error, listeners %+v", got)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %v, want %v", err, tt.is)
			}
			var e *listeners.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not a *listeners.Error", err, err)
			}
			if e.File != "l.yaml" || !strings.HasPrefix(e.Error(), "listener file l.yaml") {
				t.Errorf("error %q does not name the file", e)
			}
			if tt.line != 0 && e.Line != tt.line {
				t.Errorf("line = %d, want %d (%v)", e.Line, tt.line, e)
			}
			if e.Position != tt.position || e.Listener != tt.listener || e.Key != tt.key {
				t.Errorf("position, listener, key = %d, %q, %q; want %d, %q, %q (%v)", e.Position, e.Listener, e.Key, tt.position, tt.listener, tt.key, e)
			}
			if !strings.Contains(e.Error(), tt.fragment) {
				t.Errorf("error %q lacks %q", e, tt.fragment)
			}
			if got != nil {
				t.Errorf("listeners returned with an error: %+v", got)
			}
		})
	}
}

func TestParseAliasBomb(t *testing.T) {
	_, _, err := parse(t, aliasBomb(), listeners.Start{})
	var e *listeners.Error
	if !errors.Is(err, listeners.ErrInvalidValue) || !errors.As(err, &e) || e.Position != 1 ||
		!strings.HasPrefix(e.Key, "identifiers.a") || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("alias bomb: %v", err)
	}
}

// aliasBomb expands to 10^9 nodes through nine levels of aliases.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	return "listeners:\n  - event: e\n    identifiers:\n" + indent(b.String(), "      ")
}

func indent(s, pre string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pre + l
		}
	}
	return strings.Join(lines, "")
}

func TestParseReportsEveryListenerError(t *testing.T) {
	src := "listeners:\n  - {event: a, bogus: 1}\n  - {name: b}\n  - {event: c, from_id: x}\n"
	_, _, err := parse(t, src, listeners.Start{})
	for _, want := range []error{listeners.ErrUnknownKey, listeners.ErrMissingEvent, listeners.ErrInvalidValue} {
		if !errors.Is(err, want) {
			t.Errorf("joined error %v lacks %v", err, want)
		}
	}
	if n := strings.Count(err.Error(), "listener file l.yaml"); n != 3 {
		t.Errorf("%d errors reported, want 3:\n%v", n, err)
	}
}

func TestParseDefaultsBothSet(t *testing.T) {
	_, _, err := parse(t, "listeners: [{event: e}]\n", listeners.Start{FromID: u64(1), FromDate: "2024-01-01"})
	if !errors.Is(err, listeners.ErrBothStarts) {
		t.Fatalf("error %v, want ErrBothStarts", err)
	}
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "listeners.yaml")
	if err := os.WriteFile(path, []byte("listeners:\n  - event: mars\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ls, _, err := listeners.ParseFile(path, listeners.Start{FromID: u64(5)})
	if err != nil || len(ls) != 1 || ls[0].FromID == nil || *ls[0].FromID != 5 {
		t.Fatalf("ParseFile = %+v, %v", ls, err)
	}

	_, _, err = listeners.ParseFile(filepath.Join(dir, "missing.yaml"), listeners.Start{})
	var e *listeners.Error
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &e) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, listeners.MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := listeners.ParseFile(big, listeners.Start{}); !errors.Is(err, listeners.ErrInvalidValue) {
		t.Errorf("file over MaxFileSize: %v", err)
	}
}

func TestErrorMessage(t *testing.T) {
	e := &listeners.Error{File: "/etc/l.yaml", Line: 7, Column: 5, Position: 2, Listener: "od", Key: "form_id", Err: listeners.ErrUnknownKey}
	want := `listener file /etc/l.yaml:7:5: listener "od" (#2): key "form_id": unknown key`
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	e = &listeners.Error{File: "l.yaml", Position: 3, Err: listeners.ErrMissingEvent}
	if got := e.Error(); !strings.HasPrefix(got, "listener file l.yaml: listener #3: event is required") {
		t.Errorf("Error() = %q", got)
	}
}
