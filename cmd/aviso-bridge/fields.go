package main

import (
	"strings"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// Libraries know no environment variable: their configuration errors name
// the Go fields of their Config structs (*bridge.FieldError, and the
// supervisor's *supervisor.ConfigError with its {Field} settings). cmd
// fills those structs from its own Config, so it maps each library field
// back to the variables it came from.

// Library names in the lib tags of Config: libStore is the remote
// checkpoint stores (checkpoint/natskv and checkpoint/kafkatopic, whose
// fields do not collide), libBridge the pipeline (bridge.PipelineConfig).
const (
	libNATS       = "nats"
	libKafka      = "kafka"
	libSupervisor = "supervisor"
	libStore      = "store"
	libBridge     = "bridge"
)

// libraryFields maps, for each library, a Go field of its configuration to
// the variable cmd fills it from. A field of NATSConfig fills the nats
// library's field of the same name, a field of KafkaConfig the kafka
// library's; a lib tag ("nats.Format kafka.Format") names the others. A
// field filled from several variables (the supervisor's Client.Credentials)
// names them all, joined with '/'.
func libraryFields() map[string]map[string]string {
	out := map[string]map[string]string{}
	add := func(lib, field, variable string) {
		if out[lib] == nil {
			out[lib] = map[string]string{}
		}
		if v := out[lib][field]; v != "" {
			variable = v + "/" + variable
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

// nameFields rewrites every field error in err ("Acks: ...", "check
// {EventType}: ...") to name the variables instead ("KAFKA_ACKS: ...",
// "check AVISO_EVENT_TYPE: ..."); a field cmd does not fill keeps its Go
// name. The result wraps err.
func nameFields(err error, fields map[string]string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	walkFieldErrors(err, func(old, named string) { msg = strings.Replace(msg, old, named, 1) }, func(f string) string { return fields[f] })
	if msg == err.Error() {
		return err
	}
	return &namedError{msg: msg, err: err}
}

// walkFieldErrors calls replace with the text of each field error in err's
// tree, in order (not below one), and that text with the fields named.
func walkFieldErrors(err error, replace func(old, named string), name func(field string) string) {
	switch u := err.(type) { //nolint:errorlint // walks the tree itself
	case *bridge.FieldError:
		names := make([]string, len(u.Fields))
		for i, f := range u.Fields {
			names[i] = f
			if v := name(f); v != "" {
				names[i] = v
			}
		}
		replace(u.Error(), (&bridge.FieldError{Fields: names, Err: u.Err}).Error())
	case *supervisor.ConfigError:
		replace(u.Check(nil), u.Check(name))
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walkFieldErrors(e, replace, name)
		}
	case interface{ Unwrap() error }:
		if e := u.Unwrap(); e != nil {
			walkFieldErrors(e, replace, name)
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
