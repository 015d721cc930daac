package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// eventually polls cond every 5 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// httpGetBody GETs path on addr.
func httpGetBody(t *testing.T, addr, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// getStatus GETs /status on addr.
func getStatus(t *testing.T, addr string) bridgeStatus {
	t.Helper()
	code, body := httpGetBody(t, addr, "/status")
	var st bridgeStatus
	if code != http.StatusOK || json.Unmarshal(body, &st) != nil {
		return bridgeStatus{}
	}
	return st
}

func (s bridgeStatus) get(name string) listenerStatus {
	for _, l := range s.Listeners {
		if l.Name == name {
			return l
		}
	}
	return listenerStatus{}
}

// bridgeRun is runBridge in a goroutine.
type bridgeRun struct {
	out, logs syncBuffer
	cancel    context.CancelFunc
	done      chan error
}

func startRun(t *testing.T, env map[string]string) *bridgeRun {
	t.Helper()
	cfg, err := load(t, env)
	if err != nil {
		t.Fatal(err)
	}
	r := &bridgeRun{done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	t.Cleanup(cancel)
	go func() { r.done <- runBridge(ctx, cfg, newLogger(&r.logs, "info", "json", nil), &r.out, nil) }()
	return r
}

func (r *bridgeRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("runBridge did not return; logs:\n%s", r.logs.String())
	}
	return nil
}

// A listener that aviso refuses (400 unknown event type) fails alone and
// shows failed in /status and listener_state; the other goes on, delivers,
// commits, and /readyz is about it; a stop then is a clean exit.
func TestListenerIsolation(t *testing.T) {
	srv := avisotest.NewServer(t, avisotest.WithEventTypes("mars"))
	for i := 0; i < 3; i++ {
		srv.Publish("mars", map[string]string{"class": "od"}, map[string]any{"i": i})
	}
	file := writeListeners(t, "listeners:\n  - name: good\n    event: mars\n    identifiers: {class: od}\n  - event: venus\n")
	addr := closedAddr(t)
	r := startRun(t, map[string]string{
		"AVISO_URL": srv.URL, "AVISO_LISTENERS_FILE": file, "AVISO_FROM_ID": "1", "BRIDGE_INSTANCE_ID": "b-1",
		"CHECKPOINT_FILE": filepath.Join(t.TempDir(), "cp.json"), "CHECKPOINT_INTERVAL": "10ms", "BRIDGE_HTTP_ADDR": addr,
	})
	eventually(t, 10*time.Second, "3 lines and the bad listener failed", func() bool {
		st := getStatus(t, addr)
		return strings.Count(r.out.String(), "\n") == 3 && st.get("venus-2").State == "failed" && st.get("good").Checkpoint != nil && *st.get("good").Checkpoint == 3
	})
	st := getStatus(t, addr)
	good, bad := st.get("good"), st.get("venus-2")
	if st.Instance != "b-1" || st.Version == "" || len(st.Listeners) != 2 {
		t.Errorf("status %+v", st)
	}
	if good.State != "running" || good.Holder != "b-1" || good.EventType != "mars" || compactJSON(good.Identifier) != `{"class":"od"}` ||
		good.LastForwarded == nil || *good.LastForwarded != 3 || good.LastNotificationTime == nil || good.Error != "" {
		t.Errorf("good: %+v", good)
	}
	if !strings.Contains(bad.Error, "unknown event type") || !strings.Contains(bad.Error, "event of listener \"venus-2\"") {
		t.Errorf("bad: %+v", bad)
	}
	if code, body := httpGetBody(t, addr, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz %d %s", code, body)
	}
	_, metrics := httpGetBody(t, addr, "/metrics")
	for _, want := range []string{`aviso_bridge_listener_state{listener="venus-2",state="failed"} 1`,
		`aviso_bridge_listener_state{listener="good",state="running"} 1`, `aviso_bridge_notifications_published_total{listener="good"} 3`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	r.cancel()
	if err := r.wait(t); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// The process exits 1 only when no listener is left (every one failed),
// 2 for a single listener aviso refuses (as a single bridge always did),
// and 0 when every listener of a replay finished.
func TestListenersExit(t *testing.T) {
	srv := avisotest.NewServer(t, avisotest.WithEventTypes("mars", "dissemination"))
	for i := 0; i < 3; i++ {
		srv.Publish("mars", nil, i)
		srv.Publish("dissemination", nil, i)
	}
	base := func(kv ...string) map[string]string {
		m := map[string]string{"AVISO_URL": srv.URL, "AVISO_FROM_ID": "1", "CHECKPOINT_FILE": filepath.Join(t.TempDir(), "cp.json"), "BRIDGE_HTTP_ADDR": ""}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	allBad := writeListeners(t, "listeners:\n  - event: venus\n  - event: pluto\n")
	replay := writeListeners(t, "listeners:\n  - event: mars\n  - event: dissemination\n")
	for _, tc := range []struct {
		name   string
		env    map[string]string
		config bool
		fail   string
		lines  int
	}{
		{"every listener failed", base("AVISO_LISTENERS_FILE", allBad), false, "no listener left running: 2 of 2 failed", 0},
		{"single listener refused", base("AVISO_EVENT_TYPE", "venus"), true, "AVISO_EVENT_TYPE", 0},
		{"replay of two finished", base("AVISO_LISTENERS_FILE", replay, "AVISO_MODE", "replay"), false, "", 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRun(t, tc.env)
			err := r.wait(t)
			var ce *ConfigError
			if tc.fail == "" && err != nil || tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)) || errors.As(err, &ce) != tc.config {
				t.Errorf("result %v, want %q (config error %v)\n%s", err, tc.fail, tc.config, r.logs.String())
			}
			if n := strings.Count(r.out.String(), "\n"); n != tc.lines {
				t.Errorf("%d lines, want %d", n, tc.lines)
			}
		})
	}
}

func compactJSON(raw []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
