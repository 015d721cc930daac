package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// env is the environment of one bridge process: exactly these variables,
// nothing inherited, so that every test proves configuration through the
// environment alone.
type env map[string]string

// with returns a copy of e with kv (pairs of name, value) set; an empty value
// removes the variable.
func (e env) with(kv ...string) env {
	out := maps.Clone(e)
	if out == nil {
		out = env{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(out, kv[i])
			continue
		}
		out[kv[i]] = kv[i+1]
	}
	return out
}

func (e env) list() []string {
	out := make([]string, 0, len(e))
	for _, k := range slices.Sorted(maps.Keys(e)) {
		out = append(out, k+"="+e[k])
	}
	return out
}

// lines collects the lines of one output stream of a process and lets tests
// wait for a line that satisfies a condition.
type lines struct {
	mu      sync.Mutex
	all     []string
	closed  bool
	changed chan struct{} // closed and replaced on every append and at EOF
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (l *lines) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		l.mu.Lock()
		l.all = append(l.all, sc.Text())
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
	}
	l.mu.Lock()
	l.closed = true
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// snapshot returns the lines so far, whether the stream ended, and a channel
// closed at the next change.
func (l *lines) snapshot() ([]string, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all[:len(l.all):len(l.all)], l.closed, l.changed
}

// Lines returns every line so far.
func (l *lines) Lines() []string {
	all, _, _ := l.snapshot()
	return all
}

// logRecord is one JSON log line of the bridge.
type logRecord map[string]any

func (r logRecord) msg() string { s, _ := r["msg"].(string); return s }

func (r logRecord) str(k string) string {
	switch v := r[k].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// proc is one running aviso-bridge process.
type proc struct {
	t        testing.TB
	name     string
	cmd      *exec.Cmd
	env      env
	httpAddr string // BRIDGE_HTTP_ADDR (host:port) or ""
	stderr   *lines
	stdout   *lines
	done     chan struct{}
	state    *os.ProcessState
}

// startBridge starts the binary with args in dir (a temp dir when "") and
// exactly the environment e. When e has no BRIDGE_HTTP_ADDR, one on a free
// loopback port is added. The process is killed at cleanup if it still runs,
// and its stderr is logged when the test failed.
func startBridge(t testing.TB, name, dir string, e env, args ...string) *proc {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if _, ok := e["BRIDGE_HTTP_ADDR"]; !ok {
		e = e.with("BRIDGE_HTTP_ADDR", freeAddr(t))
	}
	p := &proc{t: t, name: name, env: e, httpAddr: e["BRIDGE_HTTP_ADDR"], stderr: newLines(), stdout: newLines(), done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Dir = dir
	p.cmd.Env = e.list()
	outPipe, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errPipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); p.stdout.read(outPipe) }()
	go func() { defer readers.Done(); p.stderr.read(errPipe) }()
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			all := p.stderr.Lines()
			from := max(0, len(all)-60)
			t.Logf("%s (pid %d): last %d of %d stderr lines:\n%s", p.name, p.cmd.Process.Pid, len(all)-from, len(all), strings.Join(all[from:], "\n"))
		}
	})
	return p
}

// freeAddr returns a loopback host:port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// signal sends sig to the process.
func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
}

// kill9 kills the process with SIGKILL and waits for it to be gone.
func (p *proc) kill9() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.state.ExitCode()
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v", p.name, timeout)
		return -1
	}
}

// waitLog waits up to timeout for a log record for which match is true and
// returns it; it fails the test on timeout or when the process ends first.
func (p *proc) waitLog(timeout time.Duration, what string, match func(logRecord) bool) logRecord {
	p.t.Helper()
	r, err := p.findLog(timeout, match)
	if err != nil {
		p.t.Fatalf("%s: waiting for %s: %v", p.name, what, err)
	}
	return r
}

// waitEvent waits for a log record whose msg is event.
func (p *proc) waitEvent(timeout time.Duration, event string) logRecord {
	p.t.Helper()
	return p.waitLog(timeout, "log event "+event, func(r logRecord) bool { return r.msg() == event })
}

func (p *proc) findLog(timeout time.Duration, match func(logRecord) bool) (logRecord, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		all, closed, changed := p.stderr.snapshot()
		for ; seen < len(all); seen++ {
			var r logRecord
			if json.Unmarshal([]byte(all[seen]), &r) == nil && match(r) {
				return r, nil
			}
		}
		if closed {
			return nil, fmt.Errorf("process ended (%v) without it", p.state)
		}
		select {
		case <-changed:
		case <-deadline.C:
			return nil, fmt.Errorf("not seen within %v", timeout)
		}
	}
}

// logs returns every JSON log record so far; a line that is not JSON fails
// the test (logs are JSON by default).
func (p *proc) logs() []logRecord {
	p.t.Helper()
	var out []logRecord
	for _, l := range p.stderr.Lines() {
		var r logRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			p.t.Errorf("%s: stderr line is not JSON: %q", p.name, l)
			continue
		}
		out = append(out, r)
	}
	return out
}

// countEvent returns how many log records have msg event.
func (p *proc) countEvent(event string) int {
	n := 0
	for _, l := range p.stderr.Lines() {
		var r logRecord
		if json.Unmarshal([]byte(l), &r) == nil && r.msg() == event {
			n++
		}
	}
	return n
}

// httpGet GETs path on the bridge's HTTP address.
func httpGet(ctx context.Context, addr, path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// waitHTTP polls path on the bridge until cond accepts the answer or timeout
// passes; it returns the last status and body.
func (p *proc) waitHTTP(timeout time.Duration, path, what string, cond func(code int, body []byte) bool) (int, []byte) {
	p.t.Helper()
	code, body, err := 0, []byte(nil), error(nil)
	ok := eventually(timeout, func() bool {
		if p.exited() {
			return true
		}
		code, body, err = httpGet(context.Background(), p.httpAddr, path)
		return err == nil && cond(code, body)
	})
	if !ok || p.exited() {
		p.t.Fatalf("%s: %s on %s: not within %v (exited=%v, last: %d %q, err %v)", p.name, what, path, timeout, p.exited(), code, body, err)
	}
	return code, body
}

// waitReady waits for /readyz to answer 200.
func (p *proc) waitReady(timeout time.Duration) {
	p.t.Helper()
	p.waitHTTP(timeout, "/readyz", "ready", func(code int, _ []byte) bool { return code == http.StatusOK })
}

// eventually polls cond every 10 ms until it is true (returns true) or
// timeout passes (returns false). Polling with a deadline, not sleeping, is
// how these tests synchronise.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}
