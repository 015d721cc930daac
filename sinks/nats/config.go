package nats

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Defaults of the settings in README, "Configuration". A zero field of
// Config or ConnConfig takes the default named in its comment.
const (
	DefaultURL                = "nats://127.0.0.1:4222"
	DefaultSubject            = "aviso.{event_type}"
	DefaultDLQSubject         = "aviso.dlq"
	DefaultMaxPending         = 256
	DefaultMaxInFlight        = 256
	DefaultPublishTimeout     = 5 * time.Second
	DefaultCheckpointInterval = time.Second
	DefaultShutdownTimeout    = 20 * time.Second
	DefaultKVBucket           = "aviso_bridge"
	// MinDuplicateWindow is the shortest duplicate window of a stream this
	// package creates (JetStream's own default).
	MinDuplicateWindow = 2 * time.Minute
)

// Mode is the SINK value that selects one of this package's sinks.
type Mode string

const (
	// ModeCore is SINK=nats: core NATS publish, a flush round-trip as the
	// acknowledgement.
	ModeCore Mode = "nats"
	// ModeJetStream is SINK=jetstream: asynchronous JetStream publish,
	// acknowledged by the stream.
	ModeJetStream Mode = "jetstream"
)

// Format is SINK_FORMAT.
type Format string

const (
	// FormatBinary is CloudEvents binary content mode: attributes in ce-
	// headers, body = the CloudEvent data exactly as received.
	FormatBinary Format = "binary"
	// FormatStructured is structured content mode: body = the whole
	// CloudEvent JSON exactly as received.
	FormatStructured Format = "structured"
)

// ConnConfig is the connection part of the NATS settings, shared by the
// sinks and the KV store. Secrets are never logged or put in errors.
type ConnConfig struct {
	// URL is NATS_URL: comma-separated server URLs (default DefaultURL).
	URL string
	// CredsFile is NATS_CREDS_FILE: a JWT + nkey seed .creds file.
	CredsFile string
	// NKeySeedFile is NATS_NKEY_SEED_FILE: an nkey user seed file.
	NKeySeedFile string
	// Token is NATS_TOKEN; TokenFile is NATS_TOKEN_FILE (read at every
	// connect, so a rotated token is picked up on reconnect).
	Token     string
	TokenFile string
	// User is NATS_USER; Password is NATS_PASSWORD; PasswordFile is
	// NATS_PASSWORD_FILE (read at every connect).
	User         string
	Password     string
	PasswordFile string
	// TLSCAFile, TLSCertFile and TLSKeyFile are NATS_TLS_CA_FILE,
	// NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE. Any of them turns TLS on.
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string
	// Name is the client connection name shown by the server (not an
	// environment variable; default "aviso-bridge").
	Name string
	// ReconnectWait is the pause between reconnect attempts to one server
	// (not an environment variable; default 1s).
	ReconnectWait time.Duration
}

// Config is the sink part of the NATS settings. main fills it from the
// environment; each field names the variable it mirrors.
type Config struct {
	ConnConfig

	// Mode is SINK: ModeCore ("nats") or ModeJetStream ("jetstream").
	// Only New looks at it.
	Mode Mode
	// Format is SINK_FORMAT (default FormatBinary).
	Format Format
	// Subject is NATS_SUBJECT, a template (default DefaultSubject).
	Subject string
	// DLQSubject is BRIDGE_DLQ_SUBJECT, a template (default DefaultDLQSubject).
	DLQSubject string
	// Stream is NATS_STREAM: JetStream publishes expect this stream.
	Stream string
	// StreamCreate is NATS_STREAM_CREATE: create Stream when it is missing.
	StreamCreate bool
	// StreamSubjects is NATS_STREAM_SUBJECTS (split on commas): the subjects
	// of a created stream. Default: Subject's wildcard, plus DLQSubject's
	// when DeadLetters is set and it is not already covered.
	StreamSubjects []string
	// DeadLetters is true when dead letters are enabled
	// (BRIDGE_ON_REJECT=dlq). Only then does a created stream include
	// BRIDGE_DLQ_SUBJECT and does the sink check that the stream captures
	// it, so that several bridges can each create their own stream on one
	// NATS server without their default DLQ subjects overlapping.
	DeadLetters bool
	// MaxPending is NATS_MAX_PENDING: JetStream async publishes awaiting
	// acks (default DefaultMaxPending).
	MaxPending int
	// MaxInFlight is BRIDGE_MAX_IN_FLIGHT: the pipeline's window; the Acks
	// channel is buffered to it (default DefaultMaxInFlight).
	MaxInFlight int
	// PublishTimeout is NATS_PUBLISH_TIMEOUT: how long a JetStream ack, a
	// core flush or a dead-letter publish may take (default
	// DefaultPublishTimeout).
	PublishTimeout time.Duration
	// CheckpointInterval is CHECKPOINT_INTERVAL and ShutdownTimeout is
	// BRIDGE_SHUTDOWN_TIMEOUT; together they size the duplicate window of a
	// created stream (see DuplicateWindow).
	CheckpointInterval time.Duration
	ShutdownTimeout    time.Duration
}

// SplitList splits a comma-separated environment value (NATS_URL,
// NATS_STREAM_SUBJECTS), trimming spaces and dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (c ConnConfig) withDefaults() ConnConfig {
	if strings.TrimSpace(c.URL) == "" {
		c.URL = DefaultURL
	}
	c.Name = cmp.Or(c.Name, "aviso-bridge")
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = time.Second
	}
	return c
}

func (c Config) withDefaults() Config {
	c.ConnConfig = c.ConnConfig.withDefaults()
	c.Format = cmp.Or(c.Format, FormatBinary)
	c.Subject = cmp.Or(c.Subject, DefaultSubject)
	c.DLQSubject = cmp.Or(c.DLQSubject, DefaultDLQSubject)
	c.MaxPending = cmp.Or(c.MaxPending, DefaultMaxPending)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, DefaultMaxInFlight)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, DefaultPublishTimeout)
	c.CheckpointInterval = cmp.Or(c.CheckpointInterval, DefaultCheckpointInterval)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	return c
}

// Validate checks the connection settings. Each error is a
// *bridge.FieldError naming the fields to fix; several problems are joined.
func (c ConnConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(fields []string, format string, a ...any) {
		errs = append(errs, &bridge.FieldError{Fields: fields, Err: fmt.Errorf(format, a...)})
	}

	urls := SplitList(c.URL)
	if len(urls) == 0 {
		add([]string{"URL"}, "no server URL")
	}
	for _, u := range urls {
		if err := checkServerURL(u); err != nil {
			add([]string{"URL"}, "%v", err)
		}
	}
	var methods []string
	for _, m := range []struct {
		field string
		set   bool
	}{
		{"CredsFile", c.CredsFile != ""}, {"NKeySeedFile", c.NKeySeedFile != ""},
		{"Token", c.Token != "" || c.TokenFile != ""}, {"User", c.User != ""},
	} {
		if m.set {
			methods = append(methods, m.field)
		}
	}
	if len(methods) > 1 {
		add(methods, "all set; choose one NATS authentication method")
	}
	if c.Token != "" && c.TokenFile != "" {
		add([]string{"Token", "TokenFile"}, "both set; set one")
	}
	if c.Password != "" && c.PasswordFile != "" {
		add([]string{"Password", "PasswordFile"}, "both set; set one")
	}
	if (c.Password != "" || c.PasswordFile != "") && c.User == "" {
		add([]string{"User", "Password"}, "a password is set without a user")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		add([]string{"TLSCertFile", "TLSKeyFile"}, "must be set together")
	}
	return errors.Join(errs...)
}

// checkServerURL accepts what nats.go accepts: a URL with scheme nats, tls,
// ws or wss, or a bare host:port.
func checkServerURL(s string) error {
	raw := s
	if !strings.Contains(s, "://") {
		raw = "nats://" + s
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL", RedactURL(s))
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("%q: scheme %q is not one of nats, tls, ws, wss", RedactURL(s), u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", RedactURL(s))
	}
	return nil
}

// Validate checks the whole sink configuration, including both subject
// templates. Each error is a *bridge.FieldError naming the fields to fix.
func (c Config) Validate() error {
	_, err := c.compile()
	return err
}

// compiled is a validated Config with its templates parsed.
type compiled struct {
	Config
	subject *bridge.Template
	dlq     *bridge.Template
}

func (c Config) compile() (*compiled, error) {
	c = c.withDefaults()
	var errs []error
	add := func(field, format string, a ...any) { errs = append(errs, bridge.FieldErrorf(field, format, a...)) }
	if err := c.ConnConfig.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.Mode {
	case "", ModeCore, ModeJetStream:
	default:
		add("Mode", "%q is not a NATS sink (want %s or %s)", c.Mode, ModeCore, ModeJetStream)
	}
	switch c.Format {
	case FormatBinary, FormatStructured:
	default:
		add("Format", "%q is not one of binary, structured", c.Format)
	}
	subject, err := parseSubjectTemplate(c.Subject)
	if err != nil {
		add("Subject", "%w", err)
	}
	dlq, err := parseSubjectTemplate(c.DLQSubject)
	if err != nil {
		add("DLQSubject", "%w", err)
	}
	if c.Stream != "" && !validStreamName(c.Stream) {
		add("Stream", "%q is not a valid stream name (no spaces, '.', '*', '>', '/' or '\\')", c.Stream)
	}
	if c.StreamCreate && c.Stream == "" {
		errs = append(errs, &bridge.FieldError{Fields: []string{"Stream", "StreamCreate"}, Err: errors.New("required to create a stream (the name of the stream)")})
	}
	for _, s := range c.StreamSubjects {
		if err := checkFilterSubject(s); err != nil {
			add("StreamSubjects", "%q: %w", s, err)
		}
	}
	if c.MaxPending < 0 {
		add("MaxPending", "%d: must be positive", c.MaxPending)
	}
	if c.MaxInFlight < 0 {
		add("MaxInFlight", "%d: must be positive", c.MaxInFlight)
	}
	if c.PublishTimeout < 0 {
		add("PublishTimeout", "%v: must be positive", c.PublishTimeout)
	}
	if c.CheckpointInterval < 0 {
		add("CheckpointInterval", "%v: must be positive", c.CheckpointInterval)
	}
	if c.ShutdownTimeout < 0 {
		add("ShutdownTimeout", "%v: must be positive", c.ShutdownTimeout)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &compiled{Config: c, subject: subject, dlq: dlq}, nil
}

// DuplicateWindow is the duplicate window this package gives a stream it
// creates, and the shortest one it accepts without a warning: twice the
// longest replay a restart can cause (CHECKPOINT_INTERVAL plus
// BRIDGE_SHUTDOWN_TIMEOUT), and at least MinDuplicateWindow.
func (c Config) DuplicateWindow() time.Duration {
	c = c.withDefaults()
	return max(MinDuplicateWindow, 2*(c.CheckpointInterval+c.ShutdownTimeout))
}

// parseSubjectTemplate parses a NATS subject template and checks that
// every rendering is a valid publish subject.
func parseSubjectTemplate(src string) (*bridge.Template, error) {
	t, err := bridge.ParseTemplate(src, bridge.EncodeNATSSubject)
	if err != nil {
		return nil, err
	}
	// Substituted values are single non-empty tokens without wildcards, so
	// checking one rendering checks the literal parts.
	sample := &bridge.Notification{EventType: "x", Sequence: 1, ID: "x@1", Identifier: []byte(`{}`)}
	if err := checkPublishSubject(t.Render(sample)); err != nil {
		return nil, fmt.Errorf("template %q: %w", src, err)
	}
	return t, nil
}

// checkPublishSubject reports why s cannot be published to.
func checkPublishSubject(s string) error {
	if s == "" {
		return errors.New("empty subject")
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch s[i] {
			case ' ', '\t', '\r', '\n':
				return errors.New("subject contains white space")
			case '.':
			default:
				continue
			}
		}
		tok := s[start:i]
		switch tok {
		case "":
			return errors.New("subject has an empty token")
		case "*", ">":
			return errors.New("subject contains a wildcard token")
		}
		start = i + 1
	}
	return nil
}

// checkFilterSubject reports why s is not a valid stream subject.
func checkFilterSubject(s string) error {
	if s == "" {
		return errors.New("empty subject")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return errors.New("subject contains white space")
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		if t == "" {
			return errors.New("subject has an empty token")
		}
		if t == ">" && i != len(toks)-1 {
			return errors.New("'>' must be the last token")
		}
	}
	return nil
}

func validStreamName(s string) bool {
	return s != "" && !strings.ContainsAny(s, " \t\r\n.*>/\\")
}

// subjectCovers reports whether every subject matching pattern q also
// matches pattern p ('*' one token, '>' one or more trailing tokens).
func subjectCovers(p, q string) bool {
	pt, qt := strings.Split(p, "."), strings.Split(q, ".")
	for i, t := range pt {
		if t == ">" {
			return len(qt) > i
		}
		if i >= len(qt) {
			return false
		}
		switch {
		case qt[i] == ">":
			return false
		case t == "*":
		case t != qt[i]:
			return false
		}
	}
	return len(pt) == len(qt)
}
