package listeners

import (
	"fmt"
	"strconv"
	"strings"
)

// ErrorKind is a kind of configuration error; an *Error wraps one of the
// constants below (compare with errors.Is).
type ErrorKind string

func (k ErrorKind) Error() string { return string(k) }

// The kinds of configuration error.
const (
	ErrSyntax            ErrorKind = "not valid YAML"
	ErrNoListeners       ErrorKind = "no listeners: the file needs a non-empty listeners: list"
	ErrUnknownKey        ErrorKind = "unknown key"
	ErrDuplicateKey      ErrorKind = "key given twice"
	ErrMissingEvent      ErrorKind = "event is required (the aviso event type to watch, e.g. mars)"
	ErrBothStarts        ErrorKind = "from_id and from_date are both set; set at most one"
	ErrDuplicateName     ErrorKind = "duplicate listener name"
	ErrDuplicateListener ErrorKind = "same event and identifiers as another listener"
	ErrInvalidValue      ErrorKind = "invalid value"
)

// Error is a configuration error in a listener file. It names what an
// operator fixes: the file, the line, the listener and the key.
type Error struct {
	File string
	// Line and Column locate the offending node (0: unknown).
	Line, Column int
	// Position is the listener's 1-based place in the list (0: not about one
	// listener); Listener its name when it has one.
	Position int
	Listener string
	// Key is the key at fault, dotted below identifiers
	// (identifiers.step.in); empty when none.
	Key string
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("listener file ")
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteString(":" + strconv.Itoa(e.Column))
		}
	}
	switch {
	case e.Position > 0 && e.Listener != "":
		fmt.Fprintf(&b, ": listener %q (#%d)", e.Listener, e.Position)
	case e.Position > 0:
		fmt.Fprintf(&b, ": listener #%d", e.Position)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": key %q", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// maxErrors bounds how many errors one file reports.
const maxErrors = 20
