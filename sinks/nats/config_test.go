package nats

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none: valid
	}{
		{name: "defaults", cfg: Config{}},
		{name: "full", cfg: Config{
			ConnConfig: ConnConfig{URL: "nats://a:4222, tls://b:4222,c:4222", User: "u", Password: "p"},
			Mode:       ModeJetStream, Format: FormatStructured, Subject: "aviso.{event_type}.{identifier.date}",
			DLQSubject: "dlq.{event_type}", Stream: "AVISO", StreamCreate: true, StreamSubjects: []string{"aviso.>", "dlq.*"},
		}},
		{name: "unknown placeholder", cfg: Config{Subject: "aviso.{nope}"}, want: []string{"Subject: ", "{nope}"}},
		{name: "unknown dlq placeholder", cfg: Config{DLQSubject: "dlq.{x}"}, want: []string{"DLQSubject: ", "{x}"}},
		{name: "empty token", cfg: Config{Subject: "aviso..{event_type}"}, want: []string{"Subject: ", "empty token"}},
		{name: "wildcard literal", cfg: Config{Subject: "aviso.*.{event_type}"}, want: []string{"Subject: ", "wildcard"}},
		{name: "space", cfg: Config{DLQSubject: "aviso dlq"}, want: []string{"DLQSubject: ", "white space"}},
		{name: "bad format", cfg: Config{Format: "xml"}, want: []string{"Format: "}},
		{name: "bad mode", cfg: Config{Mode: "kafka"}, want: []string{"Mode: "}},
		{name: "create without stream", cfg: Config{StreamCreate: true}, want: []string{"Stream and StreamCreate: "}},
		{name: "bad stream name", cfg: Config{Stream: "a.b"}, want: []string{"Stream: "}},
		{name: "bad stream subject", cfg: Config{Stream: "S", StreamSubjects: []string{"a.>.b"}}, want: []string{"StreamSubjects: "}},
		{name: "negative pending", cfg: Config{MaxPending: -1}, want: []string{"MaxPending: "}},
		{name: "bad url scheme", cfg: Config{ConnConfig: ConnConfig{URL: "http://x:4222"}}, want: []string{"URL: ", "scheme"}},
		{name: "url password redacted", cfg: Config{ConnConfig: ConnConfig{URL: "http://me:hunter2@x:4222"}}, want: []string{"URL: ", "REDACTED"}},
		{name: "token twice", cfg: Config{ConnConfig: ConnConfig{Token: "a", TokenFile: tokenFile}}, want: []string{"Token and TokenFile: "}},
		{name: "two methods", cfg: Config{ConnConfig: ConnConfig{Token: "a", User: "u"}}, want: []string{"Token and User: ", "one NATS authentication method"}},
		{name: "password without user", cfg: Config{ConnConfig: ConnConfig{Password: "p"}}, want: []string{"User and Password: "}},
		{name: "cert without key", cfg: Config{ConnConfig: ConnConfig{TLSCertFile: "c.pem"}}, want: []string{"TLSCertFile and TLSKeyFile: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			mustContain(t, err, tt.want...)
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestAuthOptionsFiles(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name string
		cfg  ConnConfig
		want string
	}{
		{"token file", ConnConfig{TokenFile: missing}, "TokenFile"},
		{"password file", ConnConfig{User: "u", PasswordFile: missing}, "PasswordFile"},
		{"creds file", ConnConfig{CredsFile: missing}, "CredsFile"},
		{"nkey seed", ConnConfig{NKeySeedFile: missing}, "NKeySeedFile"},
		{"ca file", ConnConfig{TLSCAFile: missing}, "TLSCAFile"},
		{"cert file", ConnConfig{TLSCertFile: missing, TLSKeyFile: missing}, "TLSCertFile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.AuthOptions()
			var fe *bridge.FieldError
			if !errors.As(err, &fe) || fe.Fields[0] != tt.want {
				t.Fatalf("AuthOptions: %v, want a field error naming %s", err, tt.want)
			}
		})
	}
}

func TestSubjectCovers(t *testing.T) {
	tests := []struct {
		p, q string
		want bool
	}{
		{"aviso.*", "aviso.dlq", true},
		{"aviso.*", "aviso.*", true},
		{"aviso.>", "aviso.*.*", true},
		{"aviso.>", "aviso", false},
		{"aviso.*", "aviso.a.b", false},
		{"aviso.dlq", "aviso.*", false},
		{"aviso.*", "aviso.>", false},
		{">", "a.b.c", true},
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
	}
	for _, tt := range tests {
		if got := subjectCovers(tt.p, tt.q); got != tt.want {
			t.Errorf("subjectCovers(%q, %q) = %v, want %v", tt.p, tt.q, got, tt.want)
		}
	}
}

func TestStreamSubjectsDefault(t *testing.T) {
	tests := []struct {
		subject, dlq string
		deadLetters  bool
		explicit     []string
		want         []string
	}{
		{"", "", false, nil, []string{"aviso.*"}},
		{"", "", true, nil, []string{"aviso.*"}}, // aviso.* covers aviso.dlq
		// Dead letters off: no DLQ subject, so two bridges' streams do not overlap.
		{"aviso.{event_type}.{identifier.date}", "", false, nil, []string{"aviso.*.*"}},
		{"aviso.{event_type}.{identifier.date}", "", true, nil, []string{"aviso.*.*", "aviso.dlq"}},
		{"", "dead.{event_type}", false, nil, []string{"aviso.*"}},
		{"", "dead.{event_type}", true, nil, []string{"aviso.*", "dead.*"}},
		{"", "aviso.{event_type}", true, nil, []string{"aviso.*"}}, // already covered
		{"", "", true, []string{"x.>"}, []string{"x.>"}},
	}
	for _, tt := range tests {
		c, err := Config{Subject: tt.subject, DLQSubject: tt.dlq, DeadLetters: tt.deadLetters, StreamSubjects: tt.explicit}.compile()
		if err != nil {
			t.Fatal(err)
		}
		if got := c.streamSubjects(); !slices.Equal(got, tt.want) {
			t.Errorf("subject %q dlq %q dead letters %v: stream subjects %q, want %q", tt.subject, tt.dlq, tt.deadLetters, got, tt.want)
		}
	}
}

func TestDuplicateWindow(t *testing.T) {
	tests := []struct {
		interval, shutdown, want time.Duration
	}{
		{0, 0, 2 * time.Minute},
		{time.Second, 20 * time.Second, 2 * time.Minute},
		{time.Minute, 2 * time.Minute, 6 * time.Minute},
	}
	for _, tt := range tests {
		got := Config{CheckpointInterval: tt.interval, ShutdownTimeout: tt.shutdown}.DuplicateWindow()
		if got != tt.want {
			t.Errorf("DuplicateWindow(%v, %v) = %v, want %v", tt.interval, tt.shutdown, got, tt.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://u:p@host:4222", "nats://u:REDACTED@host:4222"},
		{"nats://tok@host:4222", "nats://REDACTED@host:4222"},
		{"host:4222", "host:4222"},
		{"nats://host:4222", "nats://host:4222"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
