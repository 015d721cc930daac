package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
)

// takeURLCredentials moves a user and password written inside AVISO_URL
// (https://alice:pw@host/) out of the URL: they become basic credentials,
// under the same rules as AVISO_USERNAME/AVISO_PASSWORD, and are never
// printed or logged. Setting them both ways is a configuration error.
func (c *Config) takeURLCredentials() error {
	raw := strings.TrimSpace(c.Aviso.URL)
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			// url.Parse's error repeats the URL: leave it out.
			return fmt.Errorf("AVISO_URL: %q is not a valid URL; percent-encode reserved characters of the user name and password, or use AVISO_USERNAME and AVISO_PASSWORD", redactURL(raw))
		}
		return nil // validate names the problem
	}
	if u.User == nil {
		return nil
	}
	user := u.User.Username()
	password, _ := u.User.Password()
	u.User = nil
	c.Aviso.URL = u.String()
	c.avisoURLUser, c.avisoURLPassword = user, password
	var also []string
	for _, v := range []struct{ name, value string }{
		{"AVISO_USERNAME", c.Aviso.Username}, {"AVISO_PASSWORD", c.Aviso.Password}, {"AVISO_PASSWORD_FILE", c.Aviso.PasswordFile},
		{"AVISO_TOKEN", c.Aviso.Token}, {"AVISO_TOKEN_FILE", c.Aviso.TokenFile},
	} {
		if v.value != "" {
			also = append(also, v.name)
		}
	}
	if len(also) > 0 {
		return fmt.Errorf("AVISO_URL holds credentials (user info) and %s is set too; keep one of them", strings.Join(also, ", "))
	}
	if user == "" {
		return errors.New("AVISO_URL holds a password without a user name; write user:password@ or use AVISO_USERNAME and AVISO_PASSWORD")
	}
	return nil
}

// usesVariable reports whether the variable name matters for this
// configuration: NATS_* only with a NATS sink or the nats-kv store,
// KAFKA_* only with the Kafka sink or store.
func (c *Config) usesVariable(name string) bool {
	switch {
	case strings.HasPrefix(name, "NATS_"):
		return c.usesNATS()
	case strings.HasPrefix(name, "KAFKA_"):
		return c.usesKafka()
	}
	return true
}

func (c *Config) usesNATS() bool {
	return c.Sink == "nats" || c.Sink == "jetstream" || c.Checkpoint.Store == "nats-kv"
}

func (c *Config) usesKafka() bool { return c.Sink == "kafka" || c.Checkpoint.Store == "kafka" }

// readFiles reads every *_FILE this configuration uses (the checkpoint file
// aside, which the store creates): an unreadable file is a configuration
// error naming the variable, and the contents of secret files are kept for
// the log scrubber.
func (c *Config) readFiles() []error {
	var errs []error
	c.fileSecrets = nil
	for _, v := range variables(c) {
		if !strings.HasSuffix(v.Name, "_FILE") || v.Name == "CHECKPOINT_FILE" || v.Value.Kind() != reflect.String {
			continue
		}
		path := v.Value.String()
		if path == "" || !c.usesVariable(v.Name) {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: cannot read the file: %w", v.Name, err))
			continue
		}
		if v.SecretFile {
			c.fileSecrets = append(c.fileSecrets, secretParts(string(b))...)
		}
	}
	return errs
}

// secretParts returns what of a secret file's contents the log scrubber
// looks for: the whole trimmed contents, and each line that looks like key
// material (no spaces, 8 bytes or more, not a PEM or creds-file banner), so
// that a seed or a key line quoted alone is caught too.
func secretParts(contents string) []string {
	var out []string
	if s := strings.TrimSpace(contents); s != "" {
		out = append(out, s)
	}
	for _, l := range strings.Split(contents, "\n") {
		l = strings.TrimSpace(l)
		if len(l) < 8 || strings.ContainsAny(l, " \t") || strings.HasPrefix(l, "-----") || strings.Trim(l, "*") == "" || l == strings.TrimSpace(contents) {
			continue
		}
		out = append(out, l)
	}
	return out
}

// validateComponents builds, without connecting, what run builds from the
// configuration: the checkpoint key, the NATS sink and KV store settings,
// the Kafka settings (its password and TLS files read), and the aviso
// client (its CA file parsed).
func (c *Config) validateComponents() error {
	var errs []error
	add := func(err error) {
		if err == nil {
			return
		}
		var ce *ConfigError
		if errors.As(err, &ce) {
			err = ce.Err
		}
		errs = append(errs, err)
	}
	key := ""
	if len(c.listeners) > 0 {
		key = c.listeners[0].Key
	}
	switch {
	case c.Sink == sinkNATS || c.Sink == sinkJetStream:
		add(libraryError(libNATS, natsSinkConfig(c).Validate()))
	case c.usesNATS():
		add(libraryError(libNATS, natsConn(c).Validate()))
	}
	if key != "" {
		add(libraryError(libStore, validateStore(c, key)))
	}
	if c.usesKafka() {
		_, err := kafkaConfig(c)
		add(err)
	}
	if c.usesNATS() {
		add(checkTLSFiles("NATS", c.NATS.TLSCAFile, c.NATS.TLSCertFile, c.NATS.TLSKeyFile))
	}
	if c.usesKafka() {
		add(checkTLSFiles("KAFKA", c.Kafka.TLSCAFile, c.Kafka.TLSCertFile, c.Kafka.TLSKeyFile))
	}
	_, err := avisoClient(c)
	add(err)
	return joinUnique(errs)
}

// checkTLSFiles parses a CA bundle and a certificate/key pair the way the
// connection will, so that a wrong file is a configuration error (exit 2)
// at start-up and in `config`, not a failure at the first connect. The
// errors name the variables, never the contents.
func checkTLSFiles(prefix, caFile, certFile, keyFile string) error {
	var errs []error
	if caFile != "" {
		if pem, err := os.ReadFile(caFile); err == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			errs = append(errs, fmt.Errorf("%s_TLS_CA_FILE: %s holds no PEM certificate", prefix, caFile))
		}
	}
	if certFile != "" && keyFile != "" {
		if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			errs = append(errs, fmt.Errorf("%s_TLS_CERT_FILE and %s_TLS_KEY_FILE: not a usable certificate and key: %w", prefix, prefix, err))
		}
	}
	return errors.Join(errs...)
}

// joinUnique joins errs, leaving out a line already reported (the sink's
// and the store's checks share the connection settings).
func joinUnique(errs []error) error {
	seen := map[string]bool{}
	var out []error
	for _, e := range errs {
		for _, l := range strings.Split(e.Error(), "\n") {
			if l = strings.TrimSpace(l); l != "" && !seen[l] {
				seen[l] = true
				out = append(out, errors.New(l))
			}
		}
	}
	return errors.Join(out...)
}

// redactURL hides the user info of a URL for printing:
// "https://alice:pw@host/" -> "https://[redacted]@host/". A URL that does
// not parse loses everything up to its last '@'.
func redactURL(raw string) string {
	prefix, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	parseable := raw
	if prefix == "" {
		parseable = "nats://" + raw
	}
	if u, err := url.Parse(parseable); err == nil {
		if u.User == nil {
			return raw
		}
		at := strings.LastIndexByte(rest, '@')
		if end := strings.IndexAny(rest, "/?#"); end >= 0 && at > end {
			at = strings.LastIndexByte(rest[:end], '@')
		}
		if at >= 0 {
			return prefix + "[redacted]@" + rest[at+1:]
		}
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		return prefix + "[redacted]@" + rest[at+1:]
	}
	return raw
}

// withRedactedUserInfo marks a URL whose credentials were taken out:
// "https://host/" -> "https://[redacted]@host/".
func withRedactedUserInfo(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		return raw[:i+3] + "[redacted]@" + raw[i+3:]
	}
	return raw
}

// urlSecrets returns the user info secrets of each URL of a comma-separated
// list: the password, or the user alone when it is a token (nats://token@host).
func urlSecrets(list string) []string {
	var out []string
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		raw := p
		if !strings.Contains(p, "://") {
			raw = "nats://" + p
		}
		u, err := url.Parse(raw)
		if err != nil {
			// Unparseable: everything between the scheme and the last '@'.
			rest := raw[strings.Index(raw, "://")+3:]
			if at := strings.LastIndexByte(rest, '@'); at > 0 {
				out = append(out, rest[:at])
				if _, pw, ok := strings.Cut(rest[:at], ":"); ok && pw != "" {
					out = append(out, pw)
				}
			}
			continue
		}
		if u.User == nil {
			continue
		}
		if pw, ok := u.User.Password(); ok && pw != "" {
			out = append(out, pw)
		} else if name := u.User.Username(); name != "" {
			out = append(out, name)
		}
	}
	return out
}

// securityWarning is a setting that sends a secret in clear.
type securityWarning struct {
	Event   string // log event name
	Message string
}

// securityWarnings lists the settings that send a password or token in
// clear to a host that is not loopback: NATS credentials over plain nats://
// (or ws://) without NATS TLS, Kafka SASL PLAIN without TLS.
func (c *Config) securityWarnings() []securityWarning {
	var out []securityWarning
	if c.usesNATS() {
		if hosts := natsConn(c).PlaintextCredentialHosts(); len(hosts) > 0 {
			out = append(out, securityWarning{Event: "nats.auth.plaintext", Message: fmt.Sprintf(
				"NATS credentials (token or password) go in clear to %s: NATS_URL is nats:// or ws:// and no NATS_TLS_* file is set; use tls:// or wss://, or set NATS_TLS_CA_FILE",
				strings.Join(hosts, ", "))})
		}
	}
	if c.usesKafka() {
		if brokers := kafkaSettings(c).PlaintextSASLBrokers(); len(brokers) > 0 {
			out = append(out, securityWarning{Event: "kafka.sasl.plaintext", Message: fmt.Sprintf(
				"KAFKA_SASL_MECHANISM=PLAIN sends the Kafka password in clear to %s: set KAFKA_TLS=true, or use SCRAM-SHA-256/SCRAM-SHA-512",
				strings.Join(brokers, ", "))})
		}
	}
	return out
}

// redirectPolicy is the aviso client's CheckRedirect: follow 307/308, which
// repeat the POST with its body, and stop at 301/302/303, which would turn
// the watch into a GET (405 from aviso; the response is then reported as an
// error naming AVISO_URL). With credentials configured, a redirect to
// another scheme, host or port is refused: credentials follow a redirect
// only to the origin of AVISO_URL.
func redirectPolicy(withCredentials bool) func(req *http.Request, via []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if req.Method != http.MethodPost || len(via) >= 5 {
			return http.ErrUseLastResponse
		}
		if withCredentials && len(via) > 0 && !sameOrigin(via[0].URL, req.URL) {
			return fmt.Errorf("refusing to follow the redirect to %s with the aviso credentials: they follow a redirect only to the scheme, host and port of AVISO_URL (%s); point AVISO_URL at the new address if it is trusted",
				redactURL(req.URL.String()), origin(via[0].URL))
		}
		return nil
	}
}

// origin is scheme://host:port with the default port made explicit.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

func sameOrigin(a, b *url.URL) bool { return origin(a) == origin(b) }
