package nats

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuthentication(t *testing.T) {
	tests := []struct {
		name   string
		server func(*server.Options)
		conn   func(t *testing.T) ConnConfig
		bad    ConnConfig
	}{
		{
			name:   "token file",
			server: func(o *server.Options) { o.Authorization = "s3cret-token" },
			conn: func(t *testing.T) ConnConfig {
				return ConnConfig{TokenFile: writeFile(t, "token", "s3cret-token\n")}
			},
			bad: ConnConfig{Token: "wrong"},
		},
		{
			name:   "user and password file",
			server: func(o *server.Options) { o.Username, o.Password = "bridge", "pa55" },
			conn: func(t *testing.T) ConnConfig {
				return ConnConfig{User: "bridge", PasswordFile: writeFile(t, "pw", "pa55\n")}
			},
			bad: ConnConfig{User: "bridge", Password: "nope"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := natstest.NewServer(t, natstest.WithOptions(tt.server))
			cc := tt.conn(t)
			cc.URL = srv.URL
			nc, err := Connect(testCtx(t, 10*time.Second), cc, ConnectOptions{})
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			nc.Close()
			bad := tt.bad
			bad.URL = srv.URL
			_, err = Connect(testCtx(t, 10*time.Second), bad, ConnectOptions{})
			mustContain(t, err, "URL: ", srv.URL)
			for _, secret := range []string{"wrong", "nope", "s3cret", "pa55"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks a secret: %v", err)
				}
			}
		})
	}
}

// TLS with a CA file and a client certificate (mutual TLS).
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := makeCert(t, nil, nil, "test CA", true)
	srvCert, srvKey := makeCert(t, caCert, caKey, "127.0.0.1", false)
	cliCert, cliKey := makeCert(t, caCert, caKey, "bridge", false)
	write := func(name string, der []byte, typ string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	caFile := write("ca.pem", caCert.Raw, "CERTIFICATE")
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	serverTLS := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
	srv := natstest.NewServer(t, natstest.WithOptions(func(o *server.Options) {
		o.TLSConfig, o.TLS, o.TLSVerify, o.TLSTimeout = serverTLS, true, true, 5
	}))
	cc := ConnConfig{URL: srv.URL, TLSCAFile: caFile,
		TLSCertFile: write("client.pem", cliCert.Raw, "CERTIFICATE"),
		TLSKeyFile:  write("client.key", keyDER(cliKey), "EC PRIVATE KEY")}
	nc, err := Connect(testCtx(t, 10*time.Second), cc, ConnectOptions{})
	if err != nil {
		t.Fatalf("Connect with TLS: %v", err)
	}
	if !nc.TLSRequired() {
		t.Error("connection is not TLS")
	}
	nc.Close()

	// Without the client certificate the server refuses.
	_, err = Connect(testCtx(t, 10*time.Second), ConnConfig{URL: srv.URL, TLSCAFile: caFile}, ConnectOptions{})
	if err == nil {
		t.Fatal("connected without a client certificate")
	}
}

func makeCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, ca bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:                  ca,
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(cn); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// A JetStream publish the server refuses for lack of permission gets no
// ack; the sink recognises the violation and reports it as permanent.
func TestJetStreamPermissionDenied(t *testing.T) {
	srv := natstest.NewServer(t, natstest.WithOptions(func(o *server.Options) {
		o.Users = []*server.User{{Username: "bridge", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"aviso.secret"}},
		}}}
	}))
	ctx := testCtx(t, 10*time.Second)
	admin := srv.Conn(t, natsgo.UserInfo("bridge", "pw"))
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "AVISO", Subjects: []string{"aviso.>"}}); err != nil {
		t.Fatal(err)
	}
	s := newJetStreamSink(t, srv, Config{ConnConfig: ConnConfig{User: "bridge", Password: "pw"},
		Stream: "AVISO", PublishTimeout: 500 * time.Millisecond}, nil)
	n := bridgetest.Notifications(1, 1, bridgetest.EventType("secret"), bridgetest.DataSize(100))[0]
	if err := s.Publish(ctx, n); err != nil {
		t.Fatal(err)
	}
	a := nextAck(t, s)
	if !bridge.IsPermanent(a.Err) {
		t.Fatalf("ack = %v, want a permanent error", a.Err)
	}
	mustContain(t, a.Err, `"aviso.secret"`, "ermissions")
}
