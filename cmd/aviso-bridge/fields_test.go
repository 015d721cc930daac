package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// A library's field errors come out naming the variables, wherever they sit
// in the error (joined, wrapped), and the rest of the text is kept.
func TestNameFields(t *testing.T) {
	fields := map[string]string{"Acks": "KAFKA_ACKS", "TLSCertFile": "KAFKA_TLS_CERT_FILE", "TLSKeyFile": "KAFKA_TLS_KEY_FILE"}
	sentinel := errors.New("unknown value")
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"one field", bridge.FieldErrorf("Acks", "%w", sentinel), "KAFKA_ACKS: unknown value"},
		{"two fields", &bridge.FieldError{Fields: []string{"TLSCertFile", "TLSKeyFile"}, Err: errors.New("must be set together")},
			"KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE: must be set together"},
		{"joined and wrapped", errors.Join(fmt.Errorf("kafka sink: %w", bridge.FieldErrorf("Acks", "%w", sentinel)), errors.New("other")),
			"kafka sink: KAFKA_ACKS: unknown value\nother"},
		{"nested join", errors.Join(errors.Join(bridge.FieldErrorf("Acks", "x")), bridge.FieldErrorf("TLSKeyFile", "y")),
			"KAFKA_ACKS: x\nKAFKA_TLS_KEY_FILE: y"},
		{"unknown field keeps its name", bridge.FieldErrorf("DialTimeout", "negative"), "DialTimeout: negative"},
		{"no field error", errors.New("KAFKA_BROKERS: dial"), "KAFKA_BROKERS: dial"},
	} {
		got := nameFields(tc.err, fields)
		if got.Error() != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got.Error(), tc.want)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("%s: the result does not wrap the library's error", tc.name)
		}
	}
	if nameFields(nil, fields) != nil {
		t.Error("nil error named")
	}
}

// Every library field cmd fills maps to its variable, including the ones
// filled from another section (SINK is the NATS sink's Mode).
func TestLibraryFields(t *testing.T) {
	fields := libraryFields()
	for _, tc := range []struct{ lib, field, want string }{
		{libNATS, "URL", "NATS_URL"},
		{libNATS, "Mode", "SINK"},
		{libNATS, "Format", "SINK_FORMAT"},
		{libNATS, "DLQSubject", "BRIDGE_DLQ_SUBJECT"},
		{libNATS, "CheckpointInterval", "CHECKPOINT_INTERVAL"},
		{libNATS, "ShutdownTimeout", "BRIDGE_SHUTDOWN_TIMEOUT"},
		{libNATS, "MaxInFlight", "BRIDGE_MAX_IN_FLIGHT"},
		{libKafka, "Acks", "KAFKA_ACKS"},
		{libStore, "Bucket", "NATS_KV_BUCKET"},
		{libStore, "Key", "CHECKPOINT_KEY"},
		{libStore, "Timeout", "KAFKA_WRITE_TIMEOUT"},
		{libBridge, "OnReject", "BRIDGE_ON_REJECT"},
		{libBridge, "MaxInFlightBytes", "BRIDGE_MAX_IN_FLIGHT_BYTES"},
		{libBridge, "CheckpointInterval", "CHECKPOINT_INTERVAL"},
		{libKafka, "Format", "SINK_FORMAT"},
		{libKafka, "DLQTopic", "BRIDGE_DLQ_TOPIC"},
		{libKafka, "EventType", "AVISO_EVENT_TYPE"},
		{libKafka, "TLSKeyFile", "KAFKA_TLS_KEY_FILE"},
	} {
		if got := fields[tc.lib][tc.field]; got != tc.want {
			t.Errorf("%s.%s -> %q, want %q", tc.lib, tc.field, got, tc.want)
		}
	}
}

// Configuration errors the libraries find name the variables.
func TestLibraryErrorsNameVariables(t *testing.T) {
	cert := filepath.Join(t.TempDir(), "c.pem")
	if err := os.WriteFile(cert, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"SINK": "jetstream", "NATS_STREAM_CREATE": "true"}, "NATS_STREAM and NATS_STREAM_CREATE: "},
		{map[string]string{"SINK": "nats", "NATS_TLS_CERT_FILE": cert}, "NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE: must be set together"},
		{map[string]string{"CHECKPOINT_STORE": "nats-kv", "NATS_URL": "http://x:4222"}, "NATS_URL: "},
		{map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k:9092", "KAFKA_ACKS": "none"}, "KAFKA_ACKS: unknown value"},
		{map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k:9092", "BRIDGE_DLQ_TOPIC": "d.{x}"}, "BRIDGE_DLQ_TOPIC: "},
		{map[string]string{"SINK": "kafka", "KAFKA_BROKERS": "k:9092", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_USERNAME": "u"},
			"KAFKA_PASSWORD and KAFKA_PASSWORD_FILE: "},
	} {
		_, err := load(t, minimal(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one containing %q", tc.env, err, tc.want)
		}
	}
}

// The supervisor's configuration errors name the variables too.
func TestSupervisorErrorsNameVariables(t *testing.T) {
	for _, tc := range []struct {
		setting, want string
	}{
		{"{EventType}", "check AVISO_EVENT_TYPE: x"},
		{"{Identifier} or {Start.FromDate}", "check AVISO_IDENTIFIER or AVISO_FROM_DATE: x"},
		{"{ToID} or {Start.FromID}", "check AVISO_TO_ID or AVISO_FROM_ID: x"},
		{"{Client.BaseURL}", "check AVISO_URL: x"},
		{"{Client.Credentials} (this identity may not read the stream)",
			"check AVISO_TOKEN/AVISO_TOKEN_FILE/AVISO_USERNAME/AVISO_PASSWORD/AVISO_PASSWORD_FILE (this identity may not read the stream): x"},
	} {
		err := asConfigError(fmt.Errorf("aviso: %w", &supervisor.ConfigError{Setting: tc.setting, Err: errors.New("x")}))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Err.Error() != "aviso: "+tc.want {
			t.Errorf("%s: %v, want a ConfigError %q", tc.setting, err, "aviso: "+tc.want)
		}
	}
}

// The pipeline's own stop (a rejection under BRIDGE_ON_REJECT=fail) names
// the variable in the exit message, and stays a *bridge.RejectedError.
func TestOutcomeNamesPipelineFields(t *testing.T) {
	rej := &bridge.RejectedError{ID: "mars@2", Sequence: 2, Err: errors.New("too large")}
	err := outcome(errPipelineReturned, bridge.FieldErrorf("OnReject", "fail: %w", rej), nil, false)
	var got *bridge.RejectedError
	if err == nil || !strings.HasPrefix(err.Error(), "BRIDGE_ON_REJECT: fail: ") || !errors.As(err, &got) {
		t.Fatalf("outcome: %v, want BRIDGE_ON_REJECT named and the RejectedError kept", err)
	}
}
