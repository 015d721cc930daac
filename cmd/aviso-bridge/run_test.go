package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runBridge in process: stdout sink, a checkpoint file, the insecure-TLS
// warning, and a graceful stop that commits the last notification.
func TestRunBridgeToStdout(t *testing.T) {
	srv := avisotest.NewServer(t)
	for i := 0; i < 5; i++ {
		srv.Publish("mars", map[string]string{"class": "od"}, map[string]any{"i": i})
	}
	cpFile := filepath.Join(t.TempDir(), "cp.json")
	cfg, err := load(t, map[string]string{
		"AVISO_URL": srv.URL, "AVISO_EVENT_TYPE": "mars", "AVISO_FROM_ID": "1",
		"AVISO_INSECURE_SKIP_VERIFY": "true", "CHECKPOINT_FILE": cpFile, "CHECKPOINT_INTERVAL": "10ms",
		"BRIDGE_HTTP_ADDR": "",
	})
	if err != nil {
		t.Fatal(err)
	}
	var out, logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runBridge(ctx, cfg, newLogger(&logs, "info", "json", nil), &out, nil) }()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "\n") < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("stdout after 10s:\n%s\nlogs:\n%s", out.String(), logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("runBridge: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for i, l := range lines {
		if want := `"id":"mars@` + string(rune('1'+i)) + `"`; !strings.Contains(l, want) {
			t.Errorf("line %d = %s, want %s", i, l, want)
		}
	}
	for _, ev := range []string{`"msg":"aviso.tls.insecure"`, `"msg":"bridge.stopped","checkpoint":5`} {
		if !strings.Contains(logs.String(), ev) {
			t.Errorf("logs lack %s:\n%s", ev, logs.String())
		}
	}
}

// The watch follows 307/308 (POST and body kept) and stops at 301/302/303.
func TestRedirectsKeepThePOST(t *testing.T) {
	srv := avisotest.NewServer(t)
	srv.Publish("mars", nil, "x")
	for _, tc := range []struct {
		code   int
		follow bool
	}{{307, true}, {308, true}, {301, false}, {302, false}, {303, false}} {
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, srv.URL+r.URL.Path, tc.code)
		})
		front := httptest.NewServer(mux)
		c, err := avisoClient(&Config{Aviso: AvisoConfig{URL: front.URL, MaxEventSize: 1 << 20, IdleTimeout: time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		from := uint64(1)
		st, err := c.Connect(context.Background(), aviso.Watch, aviso.Request{EventType: "mars", FromID: &from})
		if tc.follow {
			if err != nil {
				t.Errorf("%d: %v", tc.code, err)
			} else {
				st.Close()
			}
		} else if err == nil {
			st.Close()
			t.Errorf("%d: followed a redirect that turns the POST into a GET", tc.code)
		}
		front.Close()
	}
}
