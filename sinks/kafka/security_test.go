package kafka_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
)

func TestSASL(t *testing.T) {
	cl := kafkatest.NewCluster(t, kfake.EnableSASL(), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1),
		kfake.Superuser("PLAIN", "plainuser", "plainpass"),
		kfake.Superuser("SCRAM-SHA-256", "scram256", "pass256"),
		kfake.Superuser("SCRAM-SHA-512", "scram512", "pass512"))
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte("pass512\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	readOpts := []kgo.Opt{kgo.SASL(plain.Auth{User: "plainuser", Pass: "plainpass"}.AsMechanism())}
	for _, tc := range []struct {
		name string
		cfg  kafka.Config
	}{
		{"PLAIN", kafka.Config{SASLMechanism: "PLAIN", Username: "plainuser", Password: "plainpass"}},
		{"SCRAM-SHA-256", kafka.Config{SASLMechanism: "SCRAM-SHA-256", Username: "scram256", Password: "pass256"}},
		{"SCRAM-SHA-512 from a file", kafka.Config{SASLMechanism: "SCRAM-SHA-512", Username: "scram512", PasswordFile: pwFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Topic = "sasl-" + strings.ReplaceAll(strings.ToLower(tc.name), " ", "-")
			s := newSink(t, cl, cfg)
			drive(t, s, bridgetest.Notifications(1, 5), bridgetest.DriveConfig{})
			recs, err := cl.Records(testContext(t, 20*time.Second), cfg.Topic, readOpts...)
			if err != nil || len(recs) != 5 {
				t.Fatalf("read back %d records, %v", len(recs), err)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		// kfake closes the connection on bad credentials; a real broker
		// answers SASL_AUTHENTICATION_FAILED first. Answer like one.
		k := cl.Kfake()
		k.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
			k.KeepControl()
			r := req.(*kmsg.SASLAuthenticateRequest)
			if !bytes.HasSuffix(r.SASLAuthBytes, []byte("\x00wrong")) {
				return nil, nil, false
			}
			resp := r.ResponseKind().(*kmsg.SASLAuthenticateResponse)
			resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
			msg := "Authentication failed: Invalid username or password"
			resp.ErrorMessage = &msg
			return resp, nil, true
		})
		cfg := kafka.Config{Brokers: []string{cl.Addr}, EventType: "mars", SASLMechanism: "PLAIN", Username: "plainuser", Password: "wrong"}
		if _, err := kafka.NewSink(testContext(t, 20*time.Second), cfg, kafka.Options{}); !bridge.IsPermanent(err) {
			t.Fatalf("NewSink with a wrong password = %v, want a permanent error", err)
		}
		// Without the start-up scan the failure surfaces at Publish, as a
		// permanent error naming the topic.
		cfg.DedupeScan = -1
		s, err := kafka.NewSink(testContext(t, 20*time.Second), cfg, kafka.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(testContext(t, 5*time.Second)) })
		err = s.Publish(testContext(t, 20*time.Second), bridgetest.Notification(1))
		if !bridge.IsPermanent(err) || !strings.Contains(err.Error(), `"aviso.mars"`) || !errors.Is(err, kafkago.SASLAuthenticationFailed) {
			t.Fatalf("Publish = %v, want a permanent SASL error naming the topic", err)
		}
	})
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	serverCert := issue(t, ca, caKey, "kfake", x509.ExtKeyUsageServerAuth)
	clientCert := issue(t, ca, caKey, "aviso-bridge", x509.ExtKeyUsageClientAuth)
	caFile := writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw)
	certFile := writePEM(t, dir, "client.pem", "CERTIFICATE", clientCert.Certificate[0])
	keyDER, err := x509.MarshalPKCS8PrivateKey(clientCert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writePEM(t, dir, "client-key.pem", "PRIVATE KEY", keyDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1), kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}))

	t.Run("client certificate", func(t *testing.T) {
		s := newSink(t, cl, kafka.Config{Topic: "tls", TLS: true, TLSCAFile: caFile, TLSCertFile: certFile, TLSKeyFile: keyFile})
		drive(t, s, bridgetest.Notifications(1, 5), bridgetest.DriveConfig{})
		recs, err := cl.Records(testContext(t, 20*time.Second), "tls",
			kgo.DialTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}, ServerName: "127.0.0.1"}))
		if err != nil || len(recs) != 5 {
			t.Fatalf("read back %d records, %v", len(recs), err)
		}
	})
	t.Run("unknown CA", func(t *testing.T) {
		other, _ := newCA(t)
		otherFile := writePEM(t, t.TempDir(), "other.pem", "CERTIFICATE", other.Raw)
		cfg := kafka.Config{Brokers: []string{cl.Addr}, EventType: "mars", TLS: true, TLSCAFile: otherFile,
			TLSCertFile: certFile, TLSKeyFile: keyFile, DedupeScan: -1}
		s, err := kafka.NewSink(testContext(t, 20*time.Second), cfg, kafka.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(testContext(t, 5*time.Second)) })
		err = s.Publish(testContext(t, 20*time.Second), bridgetest.Notification(1))
		if !bridge.IsPermanent(err) {
			t.Fatalf("Publish = %v, want a permanent certificate error", err)
		}
	})
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
