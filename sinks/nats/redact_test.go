package nats

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

func TestRedactURLs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://u:p@host:4222", "nats://u:REDACTED@host:4222"},
		{"nats://tok@host:4222", "nats://REDACTED@host:4222"},
		{"u:p@host:4222", "u:REDACTED@host:4222"},
		{"nats://u:p@ss/w@host:4222", "nats://u:REDACTED@host:4222"},
		{"nats://u:p%40ss@host:4222", "nats://u:REDACTED@host:4222"},
		{"wss://u:pw@[::1]:443", "wss://u:REDACTED@[::1]:443"},
		{"nats://host:4222", "nats://host:4222"},
		{"host:4222", "host:4222"},
		{" nats://a:x@h1:1 , tok@h2:2", "nats://a:REDACTED@h1:1,REDACTED@h2:2"},
	}
	for _, tt := range tests {
		if got := RedactURLs(tt.in); got != tt.want {
			t.Errorf("RedactURLs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPlaintextCredentialHosts(t *testing.T) {
	tests := []struct {
		name string
		c    ConnConfig
		want []string
	}{
		{"no credentials", ConnConfig{URL: "nats://nats.example:4222"}, nil},
		{"password to a remote host", ConnConfig{URL: "nats://nats.example:4222", User: "u", Password: "p"}, []string{"nats.example:4222"}},
		{"password file", ConnConfig{URL: "nats.example:4222", User: "u", PasswordFile: "/pw"}, []string{"nats.example:4222"}},
		{"token", ConnConfig{URL: "nats://10.1.2.3:4222", Token: "t"}, []string{"10.1.2.3:4222"}},
		{"token file over ws", ConnConfig{URL: "ws://nats.example:80", TokenFile: "/t"}, []string{"nats.example:80"}},
		{"password in the URL", ConnConfig{URL: "nats://u:pw@nats.example:4222"}, []string{"nats.example:4222"}},
		{"token in the URL", ConnConfig{URL: "nats://tok@nats.example:4222"}, []string{"nats.example:4222"}},
		{"only remote plain servers", ConnConfig{URL: "nats://127.0.0.1:4222,tls://a.example:4222,nats://b.example:4222,nats://localhost:4222,nats://[::1]:4222", Token: "t"},
			[]string{"b.example:4222"}},
		{"tls scheme", ConnConfig{URL: "tls://nats.example:4222", Token: "t"}, nil},
		{"wss scheme", ConnConfig{URL: "wss://nats.example:443", Token: "t"}, nil},
		{"TLS CA file upgrades nats://", ConnConfig{URL: "nats://nats.example:4222", Token: "t", TLSCAFile: "/ca"}, nil},
		{"client certificate upgrades nats://", ConnConfig{URL: "nats://nats.example:4222", User: "u", Password: "p", TLSCertFile: "/c", TLSKeyFile: "/k"}, nil},
		{"ws stays plain despite a TLS file", ConnConfig{URL: "ws://nats.example:80", Token: "t", TLSCAFile: "/ca"}, []string{"nats.example:80"}},
		{"creds file sends no secret", ConnConfig{URL: "nats://nats.example:4222", CredsFile: "/c"}, nil},
		{"nkey sends no secret", ConnConfig{URL: "nats://nats.example:4222", NKeySeedFile: "/n"}, nil},
		{"loopback", ConnConfig{URL: "nats://127.0.0.2:4222", Token: "t"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.c.PlaintextCredentialHosts()
			if !slices.Equal(got, tt.want) {
				t.Fatalf("PlaintextCredentialHosts = %q, want %q", got, tt.want)
			}
			for _, h := range got {
				if strings.Contains(h, "pw") || strings.Contains(h, "tok") {
					t.Fatalf("host %q carries the credentials", h)
				}
			}
		})
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST": true, "127.0.0.1": true, "127.9.9.9": true, "::1": true, "[::1]": true,
		"10.0.0.1": false, "nats.example": false, "localhost.example": false, "": false,
	} {
		if got := IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// A password or token inside NATS_URL appears in no log line and no error
// of the sinks, whether the connection works, is refused, or the stream is
// missing.
func TestURLCredentialsNeverLogged(t *testing.T) {
	const user, pw, bad = "bridge", "pa55-in-url", "wr0ng-in-url"
	srv := natstest.NewServer(t, natstest.WithOptions(func(o *server.Options) { o.Username, o.Password = user, pw }))
	host := strings.TrimPrefix(srv.URL, "nats://")
	good := "nats://" + user + ":" + pw + "@" + host
	var logs logBuffer
	var errs []string
	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		errs = append(errs, err.Error())
	}

	for _, mode := range []Mode{ModeCore, ModeJetStream} {
		s, err := New(testCtx(t, 10*time.Second), Config{ConnConfig: ConnConfig{URL: good}, Mode: mode}, Options{Logger: logs.logger()})
		if err != nil {
			t.Fatalf("%s with credentials in NATS_URL: %v", mode, err)
		}
		if err := s.Close(testCtx(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := New(testCtx(t, 10*time.Second), Config{ConnConfig: ConnConfig{URL: "nats://" + user + ":" + bad + "@" + host}, Mode: ModeJetStream}, Options{Logger: logs.logger()})
	check("wrong password", err)
	_, err = New(testCtx(t, 10*time.Second), Config{ConnConfig: ConnConfig{URL: good}, Mode: ModeJetStream, Stream: "MISSING"}, Options{Logger: logs.logger()})
	check("missing stream", err)
	_, err = New(testCtx(t, 10*time.Second), Config{ConnConfig: ConnConfig{URL: "nats://" + user + ":" + pw + "@127.0.0.1:1"}, Mode: ModeCore}, Options{Logger: logs.logger()})
	check("refused", err)
	_, err = New(testCtx(t, 10*time.Second), Config{ConnConfig: ConnConfig{URL: "ftp://" + user + ":" + pw + "@" + host}, Mode: ModeCore}, Options{Logger: logs.logger()})
	check("bad scheme", err)

	all := logs.String() + "\n" + strings.Join(errs, "\n")
	if !strings.Contains(logs.String(), "sink.nats.connected") {
		t.Fatalf("no connection logged:\n%s", logs.String())
	}
	for _, secret := range []string{pw, bad} {
		if strings.Contains(all, secret) {
			t.Errorf("%q leaked:\n%s", secret, all)
		}
	}
}
