package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// NewTransport builds the kafka-go Transport that the sink and the store
// share: client id, dial timeout, TLS (KAFKA_TLS*) and SASL
// (KAFKA_SASL_MECHANISM, KAFKA_USERNAME, KAFKA_PASSWORD/_FILE). Errors are
// *bridge.FieldError naming the fields to fix. Call
// CloseIdleConnections on it when every user is closed.
func NewTransport(cfg Config) (*kafkago.Transport, error) {
	cfg = cfg.withDefaults()
	tlsCfg, mech, err := cfg.security()
	if err != nil {
		return nil, err
	}
	return &kafkago.Transport{
		ClientID:    cfg.ClientID,
		DialTimeout: cfg.DialTimeout,
		TLS:         tlsCfg,
		SASL:        mech,
	}, nil
}

// brokerAddr is the bootstrap address of cfg.Brokers.
func brokerAddr(cfg Config) net.Addr { return kafkago.TCP(cfg.Brokers...) }

// tlsConfig returns nil when TLS is off.
func (c Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS && c.TLSCAFile == "" && c.TLSCertFile == "" && c.TLSKeyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, bridge.FieldErrorf("TLSCAFile", "%w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, bridge.FieldErrorf("TLSCAFile", "%s: no PEM certificate found", c.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile != "":
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, &bridge.FieldError{Fields: []string{"TLSCertFile", "TLSKeyFile"}, Err: err}
		}
		cfg.Certificates = []tls.Certificate{cert}
	case c.TLSCertFile != "", c.TLSKeyFile != "":
		return nil, &bridge.FieldError{Fields: []string{"TLSCertFile", "TLSKeyFile"}, Err: errors.New("must be set together")}
	}
	return cfg, nil
}

// saslMechanism returns nil when SASL is off.
func (c Config) saslMechanism() (sasl.Mechanism, error) {
	mech := strings.ToUpper(strings.TrimSpace(c.SASLMechanism))
	if mech == "" {
		if c.Username != "" {
			return nil, &bridge.FieldError{Fields: []string{"SASLMechanism", "Username"}, Err: errors.New("a mechanism is required with a user name (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")}
		}
		return nil, nil
	}
	if c.Username == "" {
		return nil, &bridge.FieldError{Fields: []string{"Username", "SASLMechanism"}, Err: fmt.Errorf("a user name is required with mechanism %s", mech)}
	}
	pass, err := c.password()
	if err != nil {
		return nil, err
	}
	switch mech {
	case "PLAIN":
		return plain.Mechanism{Username: c.Username, Password: pass}, nil
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		algo := scram.SHA256
		if mech == "SCRAM-SHA-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, c.Username, pass)
		if err != nil {
			return nil, &bridge.FieldError{Fields: []string{"Username", "Password"}, Err: err}
		}
		return m, nil
	}
	return nil, bridge.FieldErrorf("SASLMechanism", "unknown mechanism %q (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", c.SASLMechanism)
}

// security is the TLS configuration and SASL mechanism of cfg.
func (c Config) security() (*tls.Config, sasl.Mechanism, error) {
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	mech, err := c.saslMechanism()
	if err != nil {
		return nil, nil, err
	}
	return tlsCfg, mech, nil
}
