package bridge

import (
	"fmt"
	"strings"
)

// FieldError is a configuration value a library refuses. Fields are the Go
// fields of the library's configuration struct that the problem involves
// (the first is the one to fix): the library knows no environment variable,
// and the program that filled the struct names what its operator set
// (cmd/aviso-bridge maps each field to its variable). Its text is
// "Field and Other: problem".
type FieldError struct {
	Fields []string
	Err    error
}

func (e *FieldError) Error() string { return strings.Join(e.Fields, " and ") + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// FieldErrorf returns a *FieldError for field with a formatted problem
// (%w wraps as in fmt.Errorf).
func FieldErrorf(field, format string, args ...any) error {
	return &FieldError{Fields: []string{field}, Err: fmt.Errorf(format, args...)}
}
