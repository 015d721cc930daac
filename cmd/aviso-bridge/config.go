package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/listeners"
	natssink "github.com/aviso-bridge/aviso-bridge/sinks/nats"
)

// Config is every environment variable of interface.md section 2 (plus a
// few additions documented in the README). It is filled only by loadConfig.
type Config struct {
	Aviso      AvisoConfig      `env:", prefix=AVISO_"`
	Sink       sinkKind         `env:"SINK, default=stdout" lib:"nats.Mode"`
	SinkFormat string           `env:"SINK_FORMAT, default=binary" lib:"nats.Format kafka.Format"`
	NATS       NATSConfig       `env:", prefix=NATS_"`
	Kafka      KafkaConfig      `env:", prefix=KAFKA_"`
	Checkpoint CheckpointConfig `env:", prefix=CHECKPOINT_"`
	Bridge     BridgeConfig     `env:", prefix=BRIDGE_"`
	LogLevel   string           `env:"LOG_LEVEL, default=info"`
	LogFormat  string           `env:"LOG_FORMAT, default=json"`

	// avisoURLUser and avisoURLPassword are the user info taken out of
	// AVISO_URL by loadConfig: basic credentials, never printed or logged.
	avisoURLUser, avisoURLPassword string
	// fileSecrets are the contents of the *_FILE secrets read by
	// loadConfig, so that the log handler can scrub them.
	fileSecrets []string
	// listeners are the configured listeners with their checkpoint keys
	// (AVISO_LISTENERS_FILE, or the single AVISO_EVENT_TYPE), and
	// listenerWarnings what the file holds that the bridge ignores.
	listeners        []listenerSpec
	listenerWarnings listeners.Warnings
}

// AvisoConfig is the source: aviso-server.
type AvisoConfig struct {
	URL                string        `env:"URL" redact:"url" lib:"supervisor.Client.BaseURL"`
	EventType          string        `env:"EVENT_TYPE" lib:"kafka.EventType supervisor.EventType"`
	Identifier         string        `env:"IDENTIFIER, default={}" lib:"supervisor.Identifier"`
	FromID             sequence      `env:"FROM_ID" lib:"supervisor.Start.FromID"`
	FromDate           string        `env:"FROM_DATE" lib:"supervisor.Start.FromDate"`
	ToID               sequence      `env:"TO_ID" lib:"supervisor.ToID"`
	ToDate             string        `env:"TO_DATE" lib:"supervisor.ToDate"`
	Mode               avisoMode     `env:"MODE, default=watch" lib:"supervisor.Mode"`
	Token              string        `env:"TOKEN" secret:"true" lib:"supervisor.Client.Credentials"`
	TokenFile          string        `env:"TOKEN_FILE" secretfile:"true" lib:"supervisor.Client.Credentials"`
	Username           string        `env:"USERNAME" lib:"supervisor.Client.Credentials"`
	Password           string        `env:"PASSWORD" secret:"true" lib:"supervisor.Client.Credentials"`
	PasswordFile       string        `env:"PASSWORD_FILE" secretfile:"true" lib:"supervisor.Client.Credentials"`
	CAFile             string        `env:"CA_FILE"`
	InsecureSkipVerify bool          `env:"INSECURE_SKIP_VERIFY, default=false"`
	AllowPlaintextAuth bool          `env:"ALLOW_PLAINTEXT_AUTH, default=false"`
	HeartbeatInterval  time.Duration `env:"HEARTBEAT_INTERVAL, default=30s"`
	IdleTimeout        time.Duration `env:"IDLE_TIMEOUT"` // default max(3 x interval, interval + 30s)
	MaxEventSize       ByteSize      `env:"MAX_EVENT_SIZE, default=8MiB"`
	// ListenersFile is the aviso CLI listener file (several listeners);
	// ListenerName names the single listener of EventType.
	ListenersFile string `env:"LISTENERS_FILE"`
	ListenerName  string `env:"LISTENER_NAME"`
}

// NATSConfig is the nats and jetstream sinks and the nats-kv store.
type NATSConfig struct {
	URL            string        `env:"URL, default=nats://127.0.0.1:4222" redact:"url"`
	Subject        string        `env:"SUBJECT, default=aviso.{event_type}"`
	Stream         string        `env:"STREAM"`
	StreamCreate   bool          `env:"STREAM_CREATE, default=false"`
	StreamSubjects string        `env:"STREAM_SUBJECTS"`
	MaxPending     int           `env:"MAX_PENDING, default=256"`
	PublishTimeout time.Duration `env:"PUBLISH_TIMEOUT, default=5s"`
	CredsFile      string        `env:"CREDS_FILE" secretfile:"true"`
	NKeySeedFile   string        `env:"NKEY_SEED_FILE" secretfile:"true"`
	Token          string        `env:"TOKEN" secret:"true"`
	TokenFile      string        `env:"TOKEN_FILE" secretfile:"true"`
	User           string        `env:"USER"`
	Password       string        `env:"PASSWORD" secret:"true"`
	PasswordFile   string        `env:"PASSWORD_FILE" secretfile:"true"`
	TLSCAFile      string        `env:"TLS_CA_FILE"`
	TLSCertFile    string        `env:"TLS_CERT_FILE"`
	TLSKeyFile     string        `env:"TLS_KEY_FILE" secretfile:"true"`
	KVBucket       string        `env:"KV_BUCKET, default=aviso_bridge" lib:"store.Bucket"`
}

// KafkaConfig is the kafka sink and the kafka store.
type KafkaConfig struct {
	Brokers         string        `env:"BROKERS"`
	Topic           string        `env:"TOPIC, default=aviso.{event_type}"`
	Key             string        `env:"KEY, default={event_type}"`
	Acks            string        `env:"ACKS, default=all"`
	BatchSize       int           `env:"BATCH_SIZE, default=100"`
	BatchTimeout    time.Duration `env:"BATCH_TIMEOUT, default=5ms"`
	Compression     string        `env:"COMPRESSION, default=none"`
	SASLMechanism   string        `env:"SASL_MECHANISM"`
	Username        string        `env:"USERNAME"`
	Password        string        `env:"PASSWORD" secret:"true"`
	PasswordFile    string        `env:"PASSWORD_FILE" secretfile:"true"`
	TLS             bool          `env:"TLS, default=false"`
	TLSCAFile       string        `env:"TLS_CA_FILE"`
	TLSCertFile     string        `env:"TLS_CERT_FILE"`
	TLSKeyFile      string        `env:"TLS_KEY_FILE" secretfile:"true"`
	CheckpointTopic string        `env:"CHECKPOINT_TOPIC, default=aviso-bridge-checkpoints"`
	WriteTimeout    time.Duration `env:"WRITE_TIMEOUT, default=10s" lib:"store.Timeout"`
	BatchBytes      ByteSize      `env:"BATCH_BYTES, default=1MiB"`
	MaxAttempts     int           `env:"MAX_ATTEMPTS, default=3"`
	DedupeScan      int           `env:"DEDUPE_SCAN, default=0"`
	DedupeScanMax   int           `env:"DEDUPE_SCAN_MAX, default=100000"`
	ClientID        string        `env:"CLIENT_ID, default=aviso-bridge"`
}

// CheckpointConfig is where the committed position lives.
type CheckpointConfig struct {
	Store    storeKind     `env:"STORE, default=file"`
	File     string        `env:"FILE, default=data/checkpoint.json"`
	Key      string        `env:"KEY" lib:"store.Key"`
	Interval time.Duration `env:"INTERVAL, default=1s" lib:"nats.CheckpointInterval bridge.CheckpointInterval"`
	// LeaseTTL is the lease of the nats-kv and kafka stores (checked by
	// validateStore).
	LeaseTTL time.Duration `env:"LEASE_TTL, default=6s"`
}

// BridgeConfig is the pipeline and the process.
type BridgeConfig struct {
	MaxInFlight      int           `env:"MAX_IN_FLIGHT, default=256" lib:"nats.MaxInFlight kafka.MaxInFlight bridge.MaxInFlight"`
	MaxInFlightBytes ByteSize      `env:"MAX_IN_FLIGHT_BYTES, default=64MiB" lib:"bridge.MaxInFlightBytes"`
	OnReject         rejectPolicy  `env:"ON_REJECT, default=fail" lib:"bridge.OnReject"`
	DLQSubject       string        `env:"DLQ_SUBJECT, default=aviso.dlq" lib:"nats.DLQSubject"`
	DLQTopic         string        `env:"DLQ_TOPIC, default=aviso-dlq" lib:"kafka.DLQTopic"`
	ShutdownTimeout  time.Duration `env:"SHUTDOWN_TIMEOUT, default=20s" lib:"nats.ShutdownTimeout bridge.ShutdownTimeout"`
	HTTPAddr         string        `env:"HTTP_ADDR, default=:8080"`
	ReadyStall       time.Duration `env:"READY_STALL, default=2m"`
	// Standby: listeners whose lease another live bridge holds wait, and
	// listeners spread across the bridges sharing the store.
	Standby bool `env:"STANDBY, default=false"`
	// InstanceID names this process as a lease holder and fleet member
	// (default: host name + random suffix, set by loadConfig).
	InstanceID string `env:"INSTANCE_ID"`
}

// ByteSize is a size such as 8MiB, 512KiB, 1MB or 1048576.
type ByteSize int64

// EnvDecode implements envconfig.Decoder.
func (b *ByteSize) EnvDecode(v string) error {
	n, err := parseByteSize(v)
	if err != nil {
		return err
	}
	*b = ByteSize(n)
	return nil
}

func (b ByteSize) String() string {
	switch {
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", b>>20)
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", b>>10)
	}
	return strconv.FormatInt(int64(b), 10)
}

func parseByteSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("invalid size %q (examples: 8MiB, 512KiB, 1048576)", v)
	}
	return n * mult, nil
}

// ConfigError is a configuration problem; the process exits 2.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return "configuration error: " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// keepEmpty lists variables whose empty value means something (an empty
// BRIDGE_HTTP_ADDR disables the endpoints); every other variable set to the
// empty string counts as unset, as an operator writing VAR= in a compose
// file expects.
var keepEmpty = map[string]bool{"BRIDGE_HTTP_ADDR": true}

func emptyAsUnset(l envconfig.Lookuper) envconfig.Lookuper {
	return envconfig.LookuperFunc(func(key string) (string, bool) {
		v, ok := l.Lookup(key)
		if ok && strings.TrimSpace(v) == "" && !keepEmpty[key] {
			return "", false
		}
		return v, ok
	})
}

// loadConfig reads the configuration through lookup (os environment in
// production, a map in tests), reads the _FILE secrets, and validates.
func loadConfig(ctx context.Context, lookup envconfig.Lookuper) (*Config, error) {
	var c Config
	err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &c, Lookuper: emptyAsUnset(lookup)})
	if err != nil {
		return nil, &ConfigError{Err: nameVariable(err)}
	}
	if c.Aviso.IdleTimeout == 0 {
		c.Aviso.IdleTimeout = idleBudget(c.Aviso.HeartbeatInterval)
	}
	if c.Bridge.InstanceID == "" {
		c.Bridge.InstanceID = defaultInstanceID()
	}
	if err := c.takeURLCredentials(); err != nil {
		return nil, &ConfigError{Err: err}
	}
	if err := c.validate(); err != nil {
		return nil, &ConfigError{Err: err}
	}
	// What run builds from the configuration (the sink's and store's
	// settings, the aviso client's TLS, the checkpoint key) is checked here
	// too, so that `config` refuses exactly what `run` refuses.
	if err := c.validateComponents(); err != nil {
		return nil, &ConfigError{Err: err}
	}
	return &c, nil
}

// idleBudget is the default AVISO_IDLE_TIMEOUT: max(3 x interval, interval + 30s).
func idleBudget(interval time.Duration) time.Duration {
	return max(3*interval, interval+30*time.Second)
}

// validate checks what the libraries do not: the source, the choice of
// sink and store, and the process settings. The sink's and the store's own
// settings are the libraries' to check (validateComponents).
func (c *Config) validate() error {
	var errs []error
	for _, check := range []func() []error{c.validateSource, c.validateRange, c.validateCredentials, c.readFiles,
		c.validateSink, c.validateCheckpoint, c.validateBridge, c.validateFleet} {
		errs = append(errs, check()...)
	}
	if len(errs) == 0 {
		errs = append(errs, c.loadListeners()...)
	}
	return errors.Join(errs...)
}

// problems collects configuration problems, one fmt line each.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

func (c *Config) validateSource() []error {
	var p problems
	if c.Aviso.URL == "" {
		p.add("AVISO_URL is required (base URL of aviso-server, e.g. https://aviso.example.int/)")
	} else if u, err := url.Parse(c.Aviso.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add("AVISO_URL: %q is not an http(s) URL with a host", redactURL(c.Aviso.URL))
	}
	if c.Aviso.ListenersFile != "" {
		p = append(p, c.validateListenersFile()...)
	} else {
		if c.Aviso.EventType == "" {
			p.add("AVISO_EVENT_TYPE is required (the aviso event type to watch, e.g. mars), or AVISO_LISTENERS_FILE for several listeners")
		}
		var ident map[string]json.RawMessage
		if err := json.Unmarshal([]byte(c.Aviso.Identifier), &ident); err != nil || ident == nil {
			p.add("AVISO_IDENTIFIER: must be a JSON object such as {\"class\":\"od\"}: %q", c.Aviso.Identifier)
		}
	}
	if c.Aviso.HeartbeatInterval <= 0 {
		p.add("AVISO_HEARTBEAT_INTERVAL: must be positive")
	}
	if c.Aviso.IdleTimeout <= 0 {
		p.add("AVISO_IDLE_TIMEOUT: must be positive")
	}
	return p
}

// validateRange checks the mode and where the stream starts and ends.
func (c *Config) validateRange() []error {
	var p problems
	if c.Aviso.FromID.set() && c.Aviso.FromDate != "" {
		p.add("AVISO_FROM_ID and AVISO_FROM_DATE are both set; set at most one")
	}
	if (c.Aviso.ToID.set() || c.Aviso.ToDate != "") && aviso.Mode(c.Aviso.Mode) != aviso.Replay {
		p.add("AVISO_TO_ID and AVISO_TO_DATE apply only to AVISO_MODE=replay (the end of a replay); AVISO_MODE is %q", c.Aviso.Mode)
	}
	if c.Aviso.ToID.set() && c.Aviso.ToDate != "" {
		p.add("AVISO_TO_ID and AVISO_TO_DATE are both set; set at most one")
	}
	if c.Aviso.ToID.set() && c.Aviso.FromID.set() && c.Aviso.ToID.value() < c.Aviso.FromID.value() {
		p.add("AVISO_TO_ID: %d is below AVISO_FROM_ID %d", c.Aviso.ToID.value(), c.Aviso.FromID.value())
	}
	return p
}

func (c *Config) validateCredentials() []error {
	var p problems
	a := c.Aviso
	if a.Token != "" && a.TokenFile != "" {
		p.add("AVISO_TOKEN and AVISO_TOKEN_FILE are both set; set one")
	}
	if a.Password != "" && a.PasswordFile != "" {
		p.add("AVISO_PASSWORD and AVISO_PASSWORD_FILE are both set; set one")
	}
	if (a.Password != "" || a.PasswordFile != "") && a.Username == "" {
		p.add("AVISO_PASSWORD(_FILE) is set without AVISO_USERNAME")
	}
	if a.Username != "" && a.Password == "" && a.PasswordFile == "" {
		p.add("AVISO_USERNAME is set without AVISO_PASSWORD or AVISO_PASSWORD_FILE")
	}
	if (a.Token != "" || a.TokenFile != "") && a.Username != "" {
		p.add("AVISO_TOKEN(_FILE) and AVISO_USERNAME are both set; choose bearer or basic credentials")
	}
	if c.avisoHasCredentials() && !a.AllowPlaintextAuth && plaintextToRemote(a.URL) {
		p.add("AVISO_URL: refusing to send credentials over plain http:// to a non-loopback host; use https:// or set AVISO_ALLOW_PLAINTEXT_AUTH=true")
	}
	if c.avisoURLUser != "" && c.avisoURLPassword == "" {
		p.add("AVISO_URL: holds a user name without a password; put basic credentials in the URL as user:password@ or use AVISO_USERNAME and AVISO_PASSWORD(_FILE)")
	}
	return p
}

// validateSink checks the sink's format and the settings that cmd reads for
// a sink or store; the libraries check the rest (validateComponents).
func (c *Config) validateSink() []error {
	var p problems
	switch c.SinkFormat {
	case "binary", "structured":
	default:
		p.add("SINK_FORMAT: %q is not binary or structured", c.SinkFormat)
	}
	// The libraries read a zero as "the default": an explicit zero is
	// refused here.
	if c.usesNATS() && c.NATS.MaxPending <= 0 {
		p.add("NATS_MAX_PENDING: must be positive")
	}
	if c.usesKafka() {
		if strings.TrimSpace(c.Kafka.Brokers) == "" {
			p.add("KAFKA_BROKERS is required for SINK=kafka or CHECKPOINT_STORE=kafka (comma-separated host:port)")
		}
		if c.Kafka.BatchSize <= 0 {
			p.add("KAFKA_BATCH_SIZE: must be positive")
		}
		if c.Kafka.BatchTimeout <= 0 {
			p.add("KAFKA_BATCH_TIMEOUT: must be positive")
		}
	}
	return p
}

func (c *Config) validateCheckpoint() []error {
	var p problems
	switch c.Checkpoint.Store {
	case "file":
		if c.Checkpoint.File == "" {
			p.add("CHECKPOINT_FILE is required for CHECKPOINT_STORE=file")
		}
	case "nats-kv":
		if c.NATS.KVBucket == "" {
			p.add("NATS_KV_BUCKET is required for CHECKPOINT_STORE=nats-kv")
		}
	case "kafka":
		if c.Kafka.CheckpointTopic == "" {
			p.add("KAFKA_CHECKPOINT_TOPIC is required for CHECKPOINT_STORE=kafka")
		}
	}
	if c.Checkpoint.Key != "" && !isHexKey(c.Checkpoint.Key) {
		p.add("CHECKPOINT_KEY: %q must be 64 lowercase hex characters (a SHA-256 digest)", c.Checkpoint.Key)
	}
	if c.Checkpoint.Interval <= 0 {
		p.add("CHECKPOINT_INTERVAL: must be positive")
	}
	return p
}

func (c *Config) validateBridge() []error {
	var p problems
	for _, d := range []struct {
		name string
		v    int64
	}{
		{"BRIDGE_MAX_IN_FLIGHT", int64(c.Bridge.MaxInFlight)}, {"BRIDGE_MAX_IN_FLIGHT_BYTES", int64(c.Bridge.MaxInFlightBytes)},
		{"BRIDGE_SHUTDOWN_TIMEOUT", int64(c.Bridge.ShutdownTimeout)}, {"BRIDGE_READY_STALL", int64(c.Bridge.ReadyStall)},
	} {
		if d.v <= 0 {
			p.add("%s: must be positive", d.name)
		}
	}
	if c.Bridge.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.Bridge.HTTPAddr); err != nil {
			p.add("BRIDGE_HTTP_ADDR: %q is not host:port (or :port; empty disables)", c.Bridge.HTTPAddr)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		p.add("LOG_LEVEL: %q is not debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		p.add("LOG_FORMAT: %q is not json or text", c.LogFormat)
	}
	return p
}

func (c *Config) avisoHasCredentials() bool {
	return c.Aviso.Token != "" || c.Aviso.TokenFile != "" || c.Aviso.Username != "" || c.avisoURLUser != ""
}

// plaintextToRemote reports whether raw is http:// to a host that is not loopback.
func plaintextToRemote(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return false
	}
	ip := net.ParseIP(h)
	return ip == nil || !ip.IsLoopback()
}

func isHexKey(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Variable describes one environment variable of Config.
type Variable struct {
	Name    string
	Default string
	// Secret: the value is a secret (never printed). SecretFile: the value
	// names a file whose contents are a secret. Redact "url": the value is
	// a URL (or a comma-separated list) whose user info is hidden.
	Secret     bool
	SecretFile bool
	Redact     string
	Value      reflect.Value
	// Section is the Config field holding it ("NATS", "Kafka"; empty at
	// the top level), Field its Go field name, and Lib its lib tag: the
	// library fields it fills besides its section's (see libraryFields).
	Section, Field, Lib string
}

// variables lists every environment variable Config reads, in declaration order.
func variables(c *Config) []Variable {
	var out []Variable
	var walk func(v reflect.Value, section, prefix string)
	walk = func(v reflect.Value, section, prefix string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("env")
			name, opts, _ := strings.Cut(tag, ",")
			name = strings.TrimSpace(name)
			if name == "" {
				p := ""
				for _, o := range strings.Split(opts, ",") {
					if o = strings.TrimSpace(o); strings.HasPrefix(o, "prefix=") {
						p = strings.TrimPrefix(o, "prefix=")
					}
				}
				walk(v.Field(i), f.Name, prefix+p)
				continue
			}
			def := ""
			for _, o := range strings.Split(opts, ",") {
				if o = strings.TrimSpace(o); strings.HasPrefix(o, "default=") {
					def = strings.TrimPrefix(o, "default=")
				}
			}
			out = append(out, Variable{Name: prefix + name, Default: def, Secret: f.Tag.Get("secret") == "true",
				SecretFile: f.Tag.Get("secretfile") == "true", Redact: f.Tag.Get("redact"), Value: v.Field(i),
				Section: section, Field: f.Name, Lib: f.Tag.Get("lib")})
		}
	}
	walk(reflect.ValueOf(c).Elem(), "", "")
	return out
}

// fieldVariables maps envconfig's error path ("Aviso: HeartbeatInterval") to
// the variable name, so parse errors name the variable to fix.
func fieldVariables() map[string]string {
	m := map[string]string{}
	var walk func(t reflect.Type, path, prefix string)
	walk = func(t reflect.Type, path, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("env"), ",")
			p := path + f.Name + ": "
			if strings.TrimSpace(name) == "" {
				pre := ""
				for _, o := range strings.Split(opts, ",") {
					if o = strings.TrimSpace(o); strings.HasPrefix(o, "prefix=") {
						pre = strings.TrimPrefix(o, "prefix=")
					}
				}
				walk(f.Type, p, prefix+pre)
				continue
			}
			m[p] = prefix + strings.TrimSpace(name)
		}
	}
	walk(reflect.TypeOf(Config{}), "", "")
	return m
}

func nameVariable(err error) error {
	msg := err.Error()
	best := ""
	for path := range fieldVariables() {
		if strings.HasPrefix(msg, path) && len(path) > len(best) {
			best = path
		}
	}
	if best == "" {
		return err
	}
	return fmt.Errorf("%s: %s", fieldVariables()[best], strings.TrimPrefix(msg, best))
}

// redacted renders the effective configuration, one VAR=value per line,
// secrets replaced.
func (c *Config) redacted() string {
	vars := variables(c)
	lines := make([]string, 0, len(vars))
	for _, v := range vars {
		val := fmt.Sprint(v.Value.Interface())
		switch {
		case v.Secret && val != "":
			val = "[redacted]"
		case v.Redact == "url" && v.Name == "NATS_URL":
			val = natssink.RedactURLs(val)
		case v.Redact == "url":
			val = redactURL(val)
		}
		if v.Name == "AVISO_URL" && c.avisoURLUser != "" {
			// Say that AVISO_URL carries credentials, without them.
			val = withRedactedUserInfo(val)
		}
		lines = append(lines, v.Name+"="+val)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// secrets returns every secret value this configuration holds (including
// contents of _FILE secrets), so tests and the log handler can prove none
// is ever printed.
func (c *Config) secretValues() []string {
	var out []string
	for _, v := range variables(c) {
		s := fmt.Sprint(v.Value.Interface())
		switch {
		case v.Secret && s != "":
			out = append(out, s)
		case v.Redact == "url":
			out = append(out, urlSecrets(s)...)
		}
	}
	for _, s := range []string{c.avisoURLUser, c.avisoURLPassword} {
		if s != "" {
			out = append(out, s)
		}
	}
	return append(out, c.fileSecrets...)
}
