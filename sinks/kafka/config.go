// Package kafka is the Kafka end of aviso-bridge: a bridge.Sink that
// publishes notifications with segmentio/kafka-go as CloudEvents (Kafka
// protocol binding, binary or structured mode), and the transport it shares
// with the checkpoint store in a compacted topic (package
// checkpoint/kafkatopic).
//
// Data flow: ordered window and watermark (package bridge) -> Sink (this
// package) -> Kafka; the pipeline commits positions through the configured
// store once the sink has acknowledged them.
//
// The ordering and duplicate rules this package implements (acks in publish
// order, fail-fast after a failure until the pipeline re-publishes, the
// start-up scan that skips records already in the topic) are described on
// Sink.
package kafka

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Defaults of the Config fields (README, "Configuration", where named there).
const (
	DefaultTopic           = "aviso.{event_type}"
	DefaultKey             = "{event_type}"
	DefaultAcks            = AcksAll
	DefaultBatchSize       = 100
	DefaultBatchTimeout    = 5 * time.Millisecond
	DefaultBatchBytes      = 1 << 20
	DefaultCompression     = CompressionNone
	DefaultFormat          = FormatBinary
	DefaultDLQTopic        = "aviso-dlq"
	DefaultCheckpointTopic = "aviso-bridge-checkpoints"
	DefaultMaxInFlight     = 256
	DefaultMaxAttempts     = 3
	DefaultRetryBackoffMin = 10 * time.Millisecond  //nolint:revive // the field is RetryBackoffMin
	DefaultRetryBackoffMax = 100 * time.Millisecond //nolint:revive // the field is RetryBackoffMax
	DefaultWriteTimeout    = 10 * time.Second
	DefaultDialTimeout     = 5 * time.Second
	DefaultClientID        = "aviso-bridge"
	// MinDedupeScan is the fewest records per partition the start-up scan
	// reads back (it reads at least 2 x MaxInFlight).
	MinDedupeScan = 1024
	// DefaultDedupeScanMax bounds the start-up scan per partition.
	DefaultDedupeScanMax = 100000
)

// SINK_FORMAT values.
const (
	FormatBinary     = "binary"
	FormatStructured = "structured"
)

// Acks is how many replicas acknowledge a produce request (KAFKA_ACKS).
type Acks string

// Acks values. ParseAcks also takes "-1" and "1".
const (
	AcksAll Acks = "all"
	AcksOne Acks = "one"
)

// ParseAcks parses an Acks value: all (or -1) or one (or 1), any case.
func ParseAcks(s string) (Acks, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "all", "-1":
		return AcksAll, nil
	case "one", "1":
		return AcksOne, nil
	}
	return "", fmt.Errorf("unknown value %q (want all or one)", s)
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseAcks.
func (a *Acks) UnmarshalText(b []byte) error {
	v, err := ParseAcks(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Compression is the produce batch codec (KAFKA_COMPRESSION).
type Compression string

// Compression values.
const (
	CompressionNone   Compression = "none"
	CompressionGzip   Compression = "gzip"
	CompressionSnappy Compression = "snappy"
	CompressionLz4    Compression = "lz4"
	CompressionZstd   Compression = "zstd"
)

// ParseCompression parses a Compression value, any case.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(strings.ToLower(strings.TrimSpace(s))); c {
	case CompressionNone, CompressionGzip, CompressionSnappy, CompressionLz4, CompressionZstd:
		return c, nil
	}
	return "", fmt.Errorf("unknown codec %q (want none, gzip, snappy, lz4 or zstd)", s)
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseCompression.
func (c *Compression) UnmarshalText(b []byte) error {
	v, err := ParseCompression(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Config configures the sink and the checkpoint store; main fills it (each
// field names the environment variable it comes from). A zero field means
// its default. Validate's errors name the Go field ("Acks: ..."), which the
// caller maps to what its operator set.
type Config struct {
	// Brokers is KAFKA_BROKERS (required): bootstrap "host:port" addresses.
	Brokers []string
	// Topic is KAFKA_TOPIC: the topic template (default "aviso.{event_type}").
	Topic string
	// Key is KAFKA_KEY: the record key template (default "{event_type}").
	Key string
	// Acks is KAFKA_ACKS: "all" (default) or "one".
	Acks Acks
	// BatchSize is KAFKA_BATCH_SIZE (default 100 records).
	BatchSize int
	// BatchTimeout is KAFKA_BATCH_TIMEOUT (default 5ms).
	BatchTimeout time.Duration
	// BatchBytes is KAFKA_BATCH_BYTES (addition; default 1 MiB): the largest
	// produce batch; a single record larger than this is rejected permanently.
	BatchBytes int64
	// Compression is KAFKA_COMPRESSION: none (default), gzip, snappy, lz4, zstd.
	Compression Compression
	// SASLMechanism is KAFKA_SASL_MECHANISM: "", PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
	SASLMechanism string
	// Username is KAFKA_USERNAME.
	Username string
	// Password is KAFKA_PASSWORD (secret; never logged).
	Password string
	// PasswordFile is KAFKA_PASSWORD_FILE: read when Password is empty.
	PasswordFile string
	// TLS is KAFKA_TLS: connect with TLS (implied by any TLS file below).
	TLS bool
	// TLSCAFile is KAFKA_TLS_CA_FILE: PEM CA bundle added to the system roots.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are KAFKA_TLS_CERT_FILE and
	// KAFKA_TLS_KEY_FILE: the client certificate (both or neither).
	TLSCertFile string
	TLSKeyFile  string
	// Format is SINK_FORMAT: "binary" (default) or "structured".
	Format string
	// DLQTopic is BRIDGE_DLQ_TOPIC: the dead-letter topic template
	// (default "aviso-dlq").
	DLQTopic string
	// CheckpointTopic is KAFKA_CHECKPOINT_TOPIC (default
	// "aviso-bridge-checkpoints"): the compacted topic of the Kafka store.
	CheckpointTopic string
	// CheckpointReplicationFactor is KAFKA_CHECKPOINT_REPLICATION_FACTOR
	// (addition): used when the store creates its topic; 0 or -1 means the
	// broker's default.
	CheckpointReplicationFactor int
	// MaxInFlight is BRIDGE_MAX_IN_FLIGHT (default 256): the Acks buffer and
	// the lower bound of the start-up scan (2 x MaxInFlight records). Use
	// the pipeline's value: a pipeline with a larger window could fill the
	// Acks buffer and stall.
	MaxInFlight int
	// EventType is AVISO_EVENT_TYPE: renders the topic for the start-up
	// scan and the dead-letter topic of malformed frames.
	EventType string
	// DedupeScan is KAFKA_DEDUPE_SCAN (addition): the fewest records read
	// back per partition at start-up; 0 means max(2 x MaxInFlight, 1024)
	// (also the floor); -1 disables the scan.
	DedupeScan int
	// DedupeScanMax is KAFKA_DEDUPE_SCAN_MAX (addition; default 100000):
	// the most records read back per partition while looking for
	// ResumeAfter.
	DedupeScanMax int
	// ResumeAfter is the sequence this run resumes after: the loaded
	// checkpoint (or AVISO_FROM_ID-1); 0 when unknown. The start-up scan
	// reads back until it has passed a record of this event type at or
	// below it, so that everything the run re-publishes and the topic
	// already holds is acknowledged without being written again. Not an
	// environment variable: main fills it after loading the checkpoint.
	ResumeAfter uint64
	// MaxAttempts is KAFKA_MAX_ATTEMPTS (addition; default 3): produce
	// attempts inside kafka-go before a failure is reported to the bridge,
	// which then re-publishes in order.
	MaxAttempts int
	// RetryBackoffMin and RetryBackoffMax are KAFKA_RETRY_BACKOFF_MIN/_MAX
	// (additions; default 10ms, 100ms): kafka-go's backoff between attempts.
	RetryBackoffMin time.Duration
	RetryBackoffMax time.Duration
	// WriteTimeout is KAFKA_WRITE_TIMEOUT (addition; default 10s): one
	// produce request.
	WriteTimeout time.Duration
	// DialTimeout is KAFKA_DIAL_TIMEOUT (addition; default 5s): connection
	// set-up including TLS and SASL.
	DialTimeout time.Duration
	// ClientID is KAFKA_CLIENT_ID (addition; default "aviso-bridge").
	ClientID string
}

// withDefaults returns c with every zero field set to its default (a
// blank string counts as zero).
func (c Config) withDefaults() Config {
	c.Topic = orBlank(c.Topic, DefaultTopic)
	c.Key = orBlank(c.Key, DefaultKey)
	c.Acks = orBlank(c.Acks, DefaultAcks)
	c.Compression = orBlank(c.Compression, DefaultCompression)
	c.Format = orBlank(c.Format, DefaultFormat)
	c.DLQTopic = orBlank(c.DLQTopic, DefaultDLQTopic)
	c.CheckpointTopic = orBlank(c.CheckpointTopic, DefaultCheckpointTopic)
	c.ClientID = orBlank(c.ClientID, DefaultClientID)
	c.BatchSize = cmp.Or(c.BatchSize, DefaultBatchSize)
	c.BatchTimeout = cmp.Or(c.BatchTimeout, DefaultBatchTimeout)
	c.BatchBytes = cmp.Or(c.BatchBytes, DefaultBatchBytes)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, DefaultMaxInFlight)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultMaxAttempts)
	c.RetryBackoffMin = cmp.Or(c.RetryBackoffMin, DefaultRetryBackoffMin)
	c.RetryBackoffMax = cmp.Or(c.RetryBackoffMax, DefaultRetryBackoffMax)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	c.DialTimeout = cmp.Or(c.DialTimeout, DefaultDialTimeout)
	c.DedupeScanMax = cmp.Or(c.DedupeScanMax, DefaultDedupeScanMax)
	c.CheckpointReplicationFactor = cmp.Or(c.CheckpointReplicationFactor, -1)
	var brokers []string
	for _, b := range c.Brokers {
		for _, p := range strings.Split(b, ",") {
			if p = strings.TrimSpace(p); p != "" {
				brokers = append(brokers, p)
			}
		}
	}
	c.Brokers = brokers
	return c
}

// orBlank is s, or d when s is empty or white space.
func orBlank[S ~string](s, d S) S {
	if strings.TrimSpace(string(s)) == "" {
		return d
	}
	return s
}

// Validate checks c (after defaults). Each problem is a
// *bridge.FieldError naming the Go fields to fix ("Acks: ..."); several are
// joined. It does not touch the network; the TLS and password files are
// read.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	errs = append(errs, c.validateNames()...)
	errs = append(errs, c.validateLimits()...)
	errs = append(errs, c.validateSecurity()...)
	return errors.Join(errs...)
}

// validateNames checks the brokers, the templates, the topic and the
// choices.
func (c Config) validateNames() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, bridge.FieldErrorf(field, format, args...))
	}
	if len(c.Brokers) == 0 {
		add("Brokers", "required (comma-separated host:port)")
	}
	for _, b := range c.Brokers {
		if i := strings.LastIndexByte(b, ':'); i <= 0 || i == len(b)-1 {
			add("Brokers", "%q is not host:port", b)
		}
	}
	for _, t := range []struct {
		field, src string
		enc        bridge.Encoding
	}{{"Topic", c.Topic, bridge.EncodeKafkaTopic}, {"Key", c.Key, bridge.EncodeNone}, {"DLQTopic", c.DLQTopic, bridge.EncodeKafkaTopic}} {
		if _, err := bridge.ParseTemplate(t.src, t.enc); err != nil {
			add(t.field, "%w", err)
		}
	}
	if err := validTopicName(c.CheckpointTopic); err != nil {
		add("CheckpointTopic", "%w", err)
	}
	if _, err := c.requiredAcks(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.compression(); err != nil {
		errs = append(errs, err)
	}
	if c.Format != FormatBinary && c.Format != FormatStructured {
		add("Format", "unknown format %q (want binary or structured)", c.Format)
	}
	return errs
}

// validateLimits checks the sizes, counts and durations.
func (c Config) validateLimits() []error {
	var errs []error
	for _, l := range []struct {
		field string
		bad   bool
		want  string
		got   any
	}{
		{"BatchSize", c.BatchSize < 1, "must be at least 1", c.BatchSize},
		{"BatchTimeout", c.BatchTimeout < 0, "must not be negative", c.BatchTimeout},
		{"BatchBytes", c.BatchBytes < 1, "must be positive", c.BatchBytes},
		{"MaxInFlight", c.MaxInFlight < 1, "must be at least 1", c.MaxInFlight},
		{"MaxAttempts", c.MaxAttempts < 1, "must be at least 1", c.MaxAttempts},
		{"WriteTimeout", c.WriteTimeout < 0, "must not be negative", c.WriteTimeout},
		{"DialTimeout", c.DialTimeout < 0, "must not be negative", c.DialTimeout},
		{"DedupeScan", c.DedupeScan < -1, "want -1 (off), 0 (default) or a record count", c.DedupeScan},
		{"DedupeScanMax", c.DedupeScanMax < 0, "must not be negative", c.DedupeScanMax},
		{"CheckpointReplicationFactor", c.CheckpointReplicationFactor < -1, "want -1 (broker default) or a positive count", c.CheckpointReplicationFactor},
	} {
		if l.bad {
			errs = append(errs, bridge.FieldErrorf(l.field, "%s, got %v", l.want, l.got))
		}
	}
	if c.RetryBackoffMin < 0 || c.RetryBackoffMax < c.RetryBackoffMin {
		errs = append(errs, &bridge.FieldError{Fields: []string{"RetryBackoffMin", "RetryBackoffMax"},
			Err: fmt.Errorf("want 0 <= min <= max, got %s and %s", c.RetryBackoffMin, c.RetryBackoffMax)})
	}
	return errs
}

// validateSecurity checks the SASL credentials and the TLS files.
func (c Config) validateSecurity() []error {
	var errs []error
	sasl := strings.TrimSpace(c.SASLMechanism) != ""
	if c.Password != "" && c.PasswordFile != "" && !sasl {
		errs = append(errs, errPasswordTwice())
	}
	if sasl && c.Username != "" && c.Password == "" && c.PasswordFile == "" {
		errs = append(errs, &bridge.FieldError{Fields: []string{"Password", "PasswordFile"},
			Err: fmt.Errorf("one is required with SASL mechanism %s", c.SASLMechanism)})
	}
	if _, err := c.saslMechanism(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.tlsConfig(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

func (c Config) requiredAcks() (kafkago.RequiredAcks, error) {
	a, err := ParseAcks(string(c.Acks))
	if err != nil {
		return 0, bridge.FieldErrorf("Acks", "%w", err)
	}
	if a == AcksOne {
		return kafkago.RequireOne, nil
	}
	return kafkago.RequireAll, nil
}

func (c Config) compression() (kafkago.Compression, error) {
	if strings.TrimSpace(string(c.Compression)) == "" {
		return 0, nil
	}
	v, err := ParseCompression(string(c.Compression))
	if err != nil {
		return 0, bridge.FieldErrorf("Compression", "%w", err)
	}
	return map[Compression]kafkago.Compression{CompressionGzip: kafkago.Gzip, CompressionSnappy: kafkago.Snappy,
		CompressionLz4: kafkago.Lz4, CompressionZstd: kafkago.Zstd}[v], nil
}

// errPasswordTwice is the error of Password and PasswordFile both set.
func errPasswordTwice() error {
	return &bridge.FieldError{Fields: []string{"Password", "PasswordFile"}, Err: errors.New("set only one")}
}

// password returns Password, or the trimmed content of PasswordFile.
func (c Config) password() (string, error) {
	if c.Password != "" && c.PasswordFile != "" {
		return "", errPasswordTwice()
	}
	if c.Password != "" || c.PasswordFile == "" {
		return c.Password, nil
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", bridge.FieldErrorf("PasswordFile", "%w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// validTopicName applies Kafka's rules for a literal topic name.
func validTopicName(t string) error {
	if t == "" {
		return errors.New("empty topic name")
	}
	if t == "." || t == ".." {
		return fmt.Errorf("topic name %q is not allowed", t)
	}
	if len(t) > 249 {
		return fmt.Errorf("topic name %q is longer than 249 characters", t)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("topic name %q: character %q is not in [A-Za-z0-9._-]", t, c)
		}
	}
	return nil
}

// PlaintextSASLBrokers returns the KAFKA_BROKERS that this configuration
// would send a SASL PLAIN password to without TLS: KAFKA_SASL_MECHANISM is
// PLAIN, KAFKA_TLS is off and no KAFKA_TLS_* file is set (a file implies
// TLS), and the broker's host is not loopback. SCRAM never sends the
// password. Empty means nothing to warn about.
func (c Config) PlaintextSASLBrokers() []string {
	c = c.withDefaults()
	if !strings.EqualFold(strings.TrimSpace(c.SASLMechanism), "PLAIN") {
		return nil
	}
	if c.TLS || c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != "" {
		return nil
	}
	var out []string
	for _, b := range c.Brokers {
		host, _, err := net.SplitHostPort(b)
		if err != nil {
			host = b
		}
		if !isLoopbackHost(host) {
			out = append(out, b)
		}
	}
	return out
}

// isLoopbackHost reports whether host is "localhost" or a loopback address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
