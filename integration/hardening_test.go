package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// stalledBridge is a bridge process whose stdout is a pipe nobody reads
// (until it has exited): the stdout sink blocks once the pipe is full.
type stalledBridge struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    *os.File // read end of stdout
	addr   string
	cpFile string
	done   chan struct{}
	mu     sync.Mutex
	stderr bytes.Buffer
}

func startStalledBridge(t *testing.T, srv *avisotest.Server, shutdownTimeout string) *stalledBridge {
	t.Helper()
	dir := t.TempDir()
	b := &stalledBridge{t: t, addr: freeAddr(t), cpFile: filepath.Join(dir, "checkpoint.json"), done: make(chan struct{})}
	e := avisoEnv(srv, dir).With("BRIDGE_HTTP_ADDR", b.addr, "BRIDGE_SHUTDOWN_TIMEOUT", shutdownTimeout,
		"BRIDGE_MAX_IN_FLIGHT", "32", "CHECKPOINT_INTERVAL", "100ms")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	b.out = r
	b.cmd = exec.Command(binary)
	b.cmd.Dir = dir
	b.cmd.Env = e.List()
	b.cmd.Stdout = w
	errPipe, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close() // the child holds the only write end
	go func() {
		sc := bufio.NewScanner(errPipe)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			b.mu.Lock()
			b.stderr.WriteString(sc.Text() + "\n")
			b.mu.Unlock()
		}
		_ = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			_ = b.cmd.Process.Kill()
			<-b.done
		}
		r.Close()
		if t.Failed() {
			t.Logf("bridge stderr:\n%s", b.logs())
		}
	})
	return b
}

func (b *stalledBridge) logs() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stderr.String()
}

// metric returns the value of the first sample of name on /metrics (-1 if absent).
func (b *stalledBridge) metric(name string) float64 {
	code, body, err := httpGet(context.Background(), b.addr, "/metrics")
	if err != nil || code != http.StatusOK {
		return -1
	}
	m := regexp.MustCompile(`(?m)^` + name + `(?:\{[^}]*\})? ([0-9.e+-]+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// waitStalled waits until the window is full and nothing has been
// acknowledged for half a second: the stdout writer is blocked.
func (b *stalledBridge) waitStalled() {
	b.t.Helper()
	last, since := -1.0, time.Now()
	ok := eventually(startupWait, func() bool {
		pub := b.metric("aviso_bridge_notifications_published_total")
		if pub != last {
			last, since = pub, time.Now()
			return false
		}
		return pub > 0 && b.metric("aviso_bridge_in_flight") >= 32 && time.Since(since) > 500*time.Millisecond
	})
	if !ok {
		b.t.Fatalf("the bridge did not stall on its stdout (published %v)", last)
	}
}

// exit waits for the process to end and returns its exit code and when it ended.
func (b *stalledBridge) exit(timeout time.Duration) (int, time.Time) {
	b.t.Helper()
	select {
	case <-b.done:
		return b.cmd.ProcessState.ExitCode(), time.Now()
	case <-time.After(timeout):
		b.t.Fatalf("the bridge did not exit within %v", timeout)
		return -1, time.Time{}
	}
}

// lastWritten reads what the bridge wrote to stdout and returns the highest
// sequence of a complete line.
func (b *stalledBridge) lastWritten() uint64 {
	b.t.Helper()
	raw, err := io.ReadAll(b.out)
	if err != nil {
		b.t.Fatal(err)
	}
	var last uint64
	for _, l := range strings.SplitAfter(string(raw), "\n") {
		if !strings.HasSuffix(l, "\n") {
			continue // a partial line was never acknowledged
		}
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			b.t.Fatalf("stdout line %q: %v", l, err)
		}
		last = max(last, seqOfID(b.t, ev.ID))
	}
	return last
}

// publishBig publishes n notifications of about 1 KiB each.
func publishBig(srv *avisotest.Server, n int) {
	pad := strings.Repeat("x", 1000)
	for i := 0; i < n; i++ {
		srv.Publish(eventType, identifier(i), map[string]any{"i": i, "pad": pad})
	}
}

// SIGTERM with a stalled stdout reader: the process exits 0 within
// BRIDGE_SHUTDOWN_TIMEOUT plus one second of the signal (before, the
// closing of the sink waited the timeout a second time), and the
// checkpoint is not past anything written whole to stdout.
func TestShutdownWithStalledStdout(t *testing.T) {
	srv := avisotest.NewServer(t)
	publishBig(srv, 600) // ~600 KiB: far more than a pipe holds
	const timeout = 3 * time.Second
	b := startStalledBridge(t, srv, timeout.String())
	b.waitStalled()

	sent := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, ended := b.exit(timeout + 20*time.Second)
	took := ended.Sub(sent)
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if took > timeout+time.Second {
		t.Errorf("exited %v after SIGTERM, want at most BRIDGE_SHUTDOWN_TIMEOUT (%v) + 1s", took.Round(time.Millisecond), timeout)
	}
	t.Logf("exited %v after SIGTERM (BRIDGE_SHUTDOWN_TIMEOUT=%v)", took.Round(time.Millisecond), timeout)
	written := b.lastWritten()
	cp, found := checkpointSeq(t, b.cpFile)
	if !found || cp > written {
		t.Errorf("checkpoint %d (found %v), last complete stdout line %d: the checkpoint must not pass what was written", cp, found, written)
	}
}

// A second signal during the drain exits at once.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	srv := avisotest.NewServer(t)
	publishBig(srv, 600)
	b := startStalledBridge(t, srv, "60s")
	b.waitStalled()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool { return strings.Contains(b.logs(), `"msg":"bridge.drain.started"`) }) {
		t.Fatal("no bridge.drain.started after the first SIGTERM")
	}
	sent := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	code, ended := b.exit(20 * time.Second)
	if took := ended.Sub(sent); took > 2*time.Second {
		t.Errorf("exited %v after the second signal, want at once", took.Round(time.Millisecond))
	}
	if code != 0 && code != 1 {
		t.Errorf("exit code %d, want 0 (all acknowledged committed) or 1", code)
	}
	if !strings.Contains(b.logs(), `"msg":"bridge.shutdown.forced"`) {
		t.Error("no bridge.shutdown.forced logged")
	}
	written := b.lastWritten()
	if cp, found := checkpointSeq(t, b.cpFile); found && cp > written {
		t.Errorf("checkpoint %d past the last complete stdout line %d", cp, written)
	}
}

// While the bridge waits for its Kafka broker, /healthz and /readyz answer
// (503 naming what it waits for), and SIGTERM is a clean exit 0.
func TestStartupWaitServesEndpointsAndStopsCleanly(t *testing.T) {
	srv := avisotest.NewServer(t)
	dead := freeAddr(t)
	p := startBridge(t, "waiting", "", avisoEnv(srv, t.TempDir()).With("SINK", "kafka", "KAFKA_BROKERS", dead))
	p.WaitEvent(startupWait, "bridge.start.retrying")
	p.WaitHTTP(5*time.Second, "/healthz", "live while starting", func(code int, _ []byte) bool { return code == http.StatusOK })
	p.WaitHTTP(5*time.Second, "/readyz", "503 starting", func(code int, body []byte) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(string(body), "starting: connecting to the kafka sink")
	})
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(10 * time.Second); code != 0 {
		t.Errorf("SIGTERM while waiting for the broker: exit %d, want 0", code)
	}
}

// `config` and `run` refuse the same unreadable credential file, both with
// exit 2 naming the variable (run exited 1 before).
func TestMissingCredentialFilesAreConfigErrors(t *testing.T) {
	srv := avisotest.NewServer(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	base := avisoEnv(srv, dir).With("SINK", "jetstream", "NATS_URL", "nats://"+freeAddr(t))
	for _, tc := range []struct{ name string }{{"NATS_CREDS_FILE"}, {"NATS_NKEY_SEED_FILE"}, {"NATS_TOKEN_FILE"}} {
		e := base.With(tc.name, missing)
		for _, args := range [][]string{{"config"}, {"run"}} {
			p := startBridge(t, tc.name+" "+args[0], "", e, args...)
			if code := p.Wait(20 * time.Second); code != 2 {
				t.Errorf("%s %s: exit %d, want 2", args[0], tc.name, code)
			}
			if all := strings.Join(p.Stderr.Lines(), "\n"); !strings.Contains(all, tc.name) {
				t.Errorf("%s %s: stderr does not name it: %s", args[0], tc.name, all)
			}
		}
	}
}
