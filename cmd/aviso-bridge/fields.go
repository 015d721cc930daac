package main

import (
	"strings"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Libraries know no environment variable: their configuration errors are
// *bridge.FieldError values naming the Go fields of their Config structs.
// cmd fills those structs from its own Config, so it maps each library
// field back to the variable it came from.

// Library names in the lib tags of Config.
const (
	libNATS  = "nats"
	libKafka = "kafka"
)

// libraryFields maps, for each library, a Go field of its configuration to
// the variable cmd fills it from. A field of NATSConfig fills the nats
// library's field of the same name, a field of KafkaConfig the kafka
// library's; a lib tag ("nats.Format kafka.Format") names the others.
func libraryFields() map[string]map[string]string {
	out := map[string]map[string]string{}
	add := func(lib, field, variable string) {
		if out[lib] == nil {
			out[lib] = map[string]string{}
		}
		out[lib][field] = variable
	}
	for _, v := range variables(&Config{}) {
		switch v.Section {
		case "NATS":
			add(libNATS, v.Field, v.Name)
		case "Kafka":
			add(libKafka, v.Field, v.Name)
		}
		for _, t := range strings.Fields(v.Lib) {
			if lib, field, ok := strings.Cut(t, "."); ok {
				add(lib, field, v.Name)
			}
		}
	}
	return out
}

// libraryError names the variables in err, an error of library lib.
func libraryError(lib string, err error) error {
	if err == nil {
		return nil
	}
	return nameFields(err, libraryFields()[lib])
}

// nameFields rewrites every *bridge.FieldError in err ("Acks: ...") to name
// the variables instead ("KAFKA_ACKS: ..."); a field cmd does not fill keeps
// its Go name. The result wraps err.
func nameFields(err error, fields map[string]string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	walkFieldErrors(err, func(fe *bridge.FieldError) {
		names := make([]string, len(fe.Fields))
		for i, f := range fe.Fields {
			names[i] = f
			if v, ok := fields[f]; ok {
				names[i] = v
			}
		}
		named := (&bridge.FieldError{Fields: names, Err: fe.Err}).Error()
		msg = strings.Replace(msg, fe.Error(), named, 1)
	})
	if msg == err.Error() {
		return err
	}
	return &namedError{msg: msg, err: err}
}

// walkFieldErrors calls f for each *bridge.FieldError in err's tree, in
// order (not below a FieldError).
func walkFieldErrors(err error, f func(*bridge.FieldError)) {
	switch u := err.(type) { //nolint:errorlint // walks the tree itself
	case *bridge.FieldError:
		f(u)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walkFieldErrors(e, f)
		}
	case interface{ Unwrap() error }:
		if e := u.Unwrap(); e != nil {
			walkFieldErrors(e, f)
		}
	}
}

// namedError is a library error with the variables named.
type namedError struct {
	msg string
	err error
}

func (e *namedError) Error() string { return e.msg }
func (e *namedError) Unwrap() error { return e.err }
