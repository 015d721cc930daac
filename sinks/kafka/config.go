// Package kafka is the Kafka end of aviso-bridge: a bridge.Sink that
// publishes notifications with segmentio/kafka-go as CloudEvents (Kafka
// protocol binding, binary or structured mode), and a bridge.Store that
// keeps the checkpoint in a compacted topic.
//
// Data flow: ordered window and watermark (package bridge) -> Sink (this
// package) -> Kafka; the pipeline commits positions through Store (this
// package, CHECKPOINT_STORE=kafka) once the sink has acknowledged them.
//
// The ordering and duplicate rules this package implements (acks in publish
// order, fail-fast after a failure until the pipeline re-publishes, the
// start-up scan that skips records already in the topic) are described on
// Sink.
package kafka

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Defaults of the Config fields (interface.md section 2 where named there).
const (
	DefaultTopic           = "aviso.{event_type}"
	DefaultKey             = "{event_type}"
	DefaultAcks            = "all"
	DefaultBatchSize       = 100
	DefaultBatchTimeout    = 5 * time.Millisecond
	DefaultBatchBytes      = 1 << 20
	DefaultCompression     = "none"
	DefaultFormat          = FormatBinary
	DefaultDLQTopic        = "aviso-dlq"
	DefaultCheckpointTopic = "aviso-bridge-checkpoints"
	DefaultMaxInFlight     = 256
	DefaultMaxAttempts     = 3
	DefaultRetryBackoffMin = 10 * time.Millisecond
	DefaultRetryBackoffMax = 100 * time.Millisecond
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

// Config configures the sink and the checkpoint store. It mirrors the
// environment variables of interface.md section 2 (named on each field);
// main reads the environment and fills it. A zero field means its default.
type Config struct {
	// Brokers is KAFKA_BROKERS (required): bootstrap "host:port" addresses.
	Brokers []string
	// Topic is KAFKA_TOPIC: the topic template (default "aviso.{event_type}").
	Topic string
	// Key is KAFKA_KEY: the record key template (default "{event_type}").
	Key string
	// Acks is KAFKA_ACKS: "all" (default) or "one".
	Acks string
	// BatchSize is KAFKA_BATCH_SIZE (default 100 records).
	BatchSize int
	// BatchTimeout is KAFKA_BATCH_TIMEOUT (default 5ms).
	BatchTimeout time.Duration
	// BatchBytes is KAFKA_BATCH_BYTES (addition; default 1 MiB): the largest
	// produce batch; a single record larger than this is rejected permanently.
	BatchBytes int64
	// Compression is KAFKA_COMPRESSION: none (default), gzip, snappy, lz4, zstd.
	Compression string
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

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	setStr := func(p *string, d string) {
		if strings.TrimSpace(*p) == "" {
			*p = d
		}
	}
	setStr(&c.Topic, DefaultTopic)
	setStr(&c.Key, DefaultKey)
	setStr(&c.Acks, DefaultAcks)
	setStr(&c.Compression, DefaultCompression)
	setStr(&c.Format, DefaultFormat)
	setStr(&c.DLQTopic, DefaultDLQTopic)
	setStr(&c.CheckpointTopic, DefaultCheckpointTopic)
	setStr(&c.ClientID, DefaultClientID)
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryBackoffMin == 0 {
		c.RetryBackoffMin = DefaultRetryBackoffMin
	}
	if c.RetryBackoffMax == 0 {
		c.RetryBackoffMax = DefaultRetryBackoffMax
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.DedupeScanMax == 0 {
		c.DedupeScanMax = DefaultDedupeScanMax
	}
	if c.CheckpointReplicationFactor == 0 {
		c.CheckpointReplicationFactor = -1
	}
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

// Validate checks c (after defaults) and returns an error naming the
// environment variable to fix. It does not touch the network; files named
// by the TLS and password variables are read.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(c.Brokers) == 0 {
		add("KAFKA_BROKERS: required (comma-separated host:port)")
	}
	for _, b := range c.Brokers {
		if i := strings.LastIndexByte(b, ':'); i <= 0 || i == len(b)-1 {
			add("KAFKA_BROKERS: %q is not host:port", b)
		}
	}
	if _, err := bridge.ParseTemplate(c.Topic, bridge.EncodeKafkaTopic); err != nil {
		add("KAFKA_TOPIC: %w", err)
	}
	if _, err := bridge.ParseTemplate(c.Key, bridge.EncodeNone); err != nil {
		add("KAFKA_KEY: %w", err)
	}
	if _, err := bridge.ParseTemplate(c.DLQTopic, bridge.EncodeKafkaTopic); err != nil {
		add("BRIDGE_DLQ_TOPIC: %w", err)
	}
	if err := validTopicName(c.CheckpointTopic); err != nil {
		add("KAFKA_CHECKPOINT_TOPIC: %w", err)
	}
	if _, err := c.requiredAcks(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.compression(); err != nil {
		errs = append(errs, err)
	}
	switch c.Format {
	case FormatBinary, FormatStructured:
	default:
		add("SINK_FORMAT: unknown format %q (want binary or structured)", c.Format)
	}
	if c.BatchSize < 1 {
		add("KAFKA_BATCH_SIZE: must be at least 1, got %d", c.BatchSize)
	}
	if c.BatchTimeout < 0 {
		add("KAFKA_BATCH_TIMEOUT: must not be negative, got %s", c.BatchTimeout)
	}
	if c.BatchBytes < 1 {
		add("KAFKA_BATCH_BYTES: must be positive, got %d", c.BatchBytes)
	}
	if c.MaxInFlight < 1 {
		add("BRIDGE_MAX_IN_FLIGHT: must be at least 1, got %d", c.MaxInFlight)
	}
	if c.MaxAttempts < 1 {
		add("KAFKA_MAX_ATTEMPTS: must be at least 1, got %d", c.MaxAttempts)
	}
	if c.RetryBackoffMin < 0 || c.RetryBackoffMax < c.RetryBackoffMin {
		add("KAFKA_RETRY_BACKOFF_MIN/KAFKA_RETRY_BACKOFF_MAX: want 0 <= min <= max, got %s and %s", c.RetryBackoffMin, c.RetryBackoffMax)
	}
	if c.WriteTimeout < 0 {
		add("KAFKA_WRITE_TIMEOUT: must not be negative, got %s", c.WriteTimeout)
	}
	if c.DialTimeout < 0 {
		add("KAFKA_DIAL_TIMEOUT: must not be negative, got %s", c.DialTimeout)
	}
	if c.DedupeScan < -1 {
		add("KAFKA_DEDUPE_SCAN: want -1 (off), 0 (default) or a record count, got %d", c.DedupeScan)
	}
	if c.DedupeScanMax < 0 {
		add("KAFKA_DEDUPE_SCAN_MAX: must not be negative, got %d", c.DedupeScanMax)
	}
	if c.CheckpointReplicationFactor < -1 {
		add("KAFKA_CHECKPOINT_REPLICATION_FACTOR: want -1 (broker default) or a positive count, got %d", c.CheckpointReplicationFactor)
	}
	if _, err := c.saslMechanism(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.tlsConfig(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c Config) requiredAcks() (kafkago.RequiredAcks, error) {
	switch strings.ToLower(c.Acks) {
	case "all", "-1":
		return kafkago.RequireAll, nil
	case "one", "1":
		return kafkago.RequireOne, nil
	}
	return 0, fmt.Errorf("KAFKA_ACKS: unknown value %q (want all or one)", c.Acks)
}

func (c Config) compression() (kafkago.Compression, error) {
	switch strings.ToLower(c.Compression) {
	case "none", "":
		return 0, nil
	case "gzip":
		return kafkago.Gzip, nil
	case "snappy":
		return kafkago.Snappy, nil
	case "lz4":
		return kafkago.Lz4, nil
	case "zstd":
		return kafkago.Zstd, nil
	}
	return 0, fmt.Errorf("KAFKA_COMPRESSION: unknown codec %q (want none, gzip, snappy, lz4 or zstd)", c.Compression)
}

// password returns KAFKA_PASSWORD, or the trimmed content of
// KAFKA_PASSWORD_FILE.
func (c Config) password() (string, error) {
	if c.Password != "" && c.PasswordFile != "" {
		return "", errors.New("KAFKA_PASSWORD and KAFKA_PASSWORD_FILE: set only one")
	}
	if c.Password != "" || c.PasswordFile == "" {
		return c.Password, nil
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("KAFKA_PASSWORD_FILE: %w", err)
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
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
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
