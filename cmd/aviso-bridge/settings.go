package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// The typed values of Config: each decodes (envconfig.Decoder) and refuses
// what it cannot be at load, so that run parses nothing. envconfig prefixes
// the error with the field, which nameVariable turns into the variable.

// sinkKind is SINK.
type sinkKind string

const (
	sinkStdout    sinkKind = "stdout"
	sinkNATS      sinkKind = "nats"
	sinkJetStream sinkKind = "jetstream"
	sinkKafka     sinkKind = "kafka"
)

// EnvDecode implements envconfig.Decoder.
func (k *sinkKind) EnvDecode(v string) error {
	return decodeChoice(k, v, sinkStdout, sinkNATS, sinkJetStream, sinkKafka)
}

// decodeChoice sets *dst to v (trimmed) when it is one of choices.
func decodeChoice[T ~string](dst *T, v string, choices ...T) error {
	if s := T(strings.TrimSpace(v)); slices.Contains(choices, s) {
		*dst = s
		return nil
	}
	names := make([]string, len(choices))
	for i, c := range choices {
		names[i] = string(c)
	}
	return fmt.Errorf("%q is not one of %s", v, strings.Join(names, ", "))
}

// avisoMode is AVISO_MODE.
type avisoMode aviso.Mode

// EnvDecode implements envconfig.Decoder.
func (m *avisoMode) EnvDecode(v string) error {
	switch strings.TrimSpace(v) {
	case aviso.Watch.String():
		*m = avisoMode(aviso.Watch)
	case aviso.Replay.String():
		*m = avisoMode(aviso.Replay)
	default:
		return fmt.Errorf("%q is not watch or replay", v)
	}
	return nil
}

func (m avisoMode) String() string { return aviso.Mode(m).String() }

// rejectPolicy is BRIDGE_ON_REJECT, as package bridge parses it.
type rejectPolicy bridge.RejectPolicy

// EnvDecode implements envconfig.Decoder.
func (p *rejectPolicy) EnvDecode(v string) error {
	rp, err := bridge.ParseRejectPolicy(strings.TrimSpace(v))
	if err != nil {
		return err
	}
	*p = rejectPolicy(rp)
	return nil
}

// sequence is an optional aviso sequence (AVISO_FROM_ID, AVISO_TO_ID):
// the decimal digits, checked at load; empty when unset.
type sequence string

// EnvDecode implements envconfig.Decoder.
func (s *sequence) EnvDecode(v string) error {
	t := strings.TrimSpace(v)
	if t == "" {
		*s = "" // unset (envconfig decodes unset variables too)
		return nil
	}
	if _, err := strconv.ParseUint(t, 10, 64); err != nil {
		return fmt.Errorf("%q is not a non-negative integer sequence", v)
	}
	*s = sequence(t)
	return nil
}

func (s sequence) set() bool { return s != "" }

// value is the sequence (0 when unset); EnvDecode checked it.
func (s sequence) value() uint64 {
	n, _ := strconv.ParseUint(string(s), 10, 64)
	return n
}

// ptr is the sequence as the aviso request takes it: nil when unset.
func (s sequence) ptr() *uint64 {
	if !s.set() {
		return nil
	}
	n := s.value()
	return &n
}

// storeKind is CHECKPOINT_STORE.
type storeKind string

const (
	storeFile   storeKind = "file"
	storeNATSKV storeKind = "nats-kv"
	storeKafka  storeKind = "kafka"
	storeNone   storeKind = "none"
)

// EnvDecode implements envconfig.Decoder.
func (k *storeKind) EnvDecode(v string) error {
	return decodeChoice(k, v, storeFile, storeNATSKV, storeKafka, storeNone)
}
