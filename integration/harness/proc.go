package harness

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

// Env is the environment of one bridge process: exactly these variables,
// nothing inherited, so that every test proves configuration through the
// environment alone.
type Env map[string]string

// With returns a copy of e with kv (pairs of name, value) set; an empty value
// removes the variable.
func (e Env) With(kv ...string) Env {
	out := maps.Clone(e)
	if out == nil {
		out = Env{}
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

// List returns e as NAME=value pairs, sorted.
func (e Env) List() []string {
	out := make([]string, 0, len(e))
	for _, k := range slices.Sorted(maps.Keys(e)) {
		out = append(out, k+"="+e[k])
	}
	return out
}

// Lines collects the lines of one output stream of a process and lets tests
// wait for a line that satisfies a condition.
type Lines struct {
	mu      sync.Mutex
	all     []string
	closed  bool
	changed chan struct{} // closed and replaced on every append and at EOF
}

func newLines() *Lines { return &Lines{changed: make(chan struct{})} }

func (l *Lines) read(r io.Reader) {
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
func (l *Lines) snapshot() ([]string, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all[:len(l.all):len(l.all)], l.closed, l.changed
}

// Lines returns every line so far.
func (l *Lines) Lines() []string {
	all, _, _ := l.snapshot()
	return all
}

// LogRecord is one JSON log line of the bridge.
type LogRecord map[string]any

// Msg returns the log event name.
func (r LogRecord) Msg() string { s, _ := r["msg"].(string); return s }

// Str returns attribute k as text ("" when absent).
func (r LogRecord) Str(k string) string {
	switch v := r[k].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// Proc is one running aviso-bridge process.
type Proc struct {
	// Name names the process in failure messages.
	Name string
	// Env is the process's whole environment.
	Env Env
	// HTTPAddr is BRIDGE_HTTP_ADDR (host:port), or "".
	HTTPAddr string
	// Stdout and Stderr are the lines the process wrote.
	Stdout, Stderr *Lines
	// Done is closed once the process has exited.
	Done chan struct{}
	// Quiet leaves this process's stderr out of a failed test's log (the
	// crash test starts dozens).
	Quiet bool

	t     testing.TB
	cmd   *exec.Cmd
	state *os.ProcessState
}

// Start starts the binary bin with args in dir (a temp dir when "") and
// exactly the environment e. When e has no BRIDGE_HTTP_ADDR, one on a free
// loopback port is added. The process is killed at cleanup if it still runs,
// and its stderr is logged when the test failed.
func Start(t testing.TB, bin, name, dir string, e Env, args ...string) *Proc {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if _, ok := e["BRIDGE_HTTP_ADDR"]; !ok {
		e = e.With("BRIDGE_HTTP_ADDR", FreeAddr(t))
	}
	p := &Proc{t: t, Name: name, Env: e, HTTPAddr: e["BRIDGE_HTTP_ADDR"], Stderr: newLines(), Stdout: newLines(), Done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = e.List()
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
	go func() { defer readers.Done(); p.Stdout.read(outPipe) }()
	go func() { defer readers.Done(); p.Stderr.read(errPipe) }()
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.Done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.Done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.Done
		}
		if t.Failed() && !p.Quiet {
			all := p.Stderr.Lines()
			from := max(0, len(all)-60)
			t.Logf("%s (pid %d): last %d of %d stderr lines:\n%s", p.Name, p.cmd.Process.Pid, len(all)-from, len(all), strings.Join(all[from:], "\n"))
		}
	})
	return p
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: signal %v: %v", p.Name, sig, err)
	}
}

// Kill9 kills the process with SIGKILL and waits for it to be gone.
func (p *Proc) Kill9() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.Done
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.Done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to exit and returns its exit code.
func (p *Proc) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.Done:
		return p.state.ExitCode()
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v", p.Name, timeout)
		return -1
	}
}

// WaitLog waits up to timeout for a log record for which match is true and
// returns it; it fails the test on timeout or when the process ends first.
func (p *Proc) WaitLog(timeout time.Duration, what string, match func(LogRecord) bool) LogRecord {
	p.t.Helper()
	r, err := p.findLog(timeout, match)
	if err != nil {
		p.t.Fatalf("%s: waiting for %s: %v", p.Name, what, err)
	}
	return r
}

// WaitEvent waits for a log record whose msg is event.
func (p *Proc) WaitEvent(timeout time.Duration, event string) LogRecord {
	p.t.Helper()
	return p.WaitLog(timeout, "log event "+event, func(r LogRecord) bool { return r.Msg() == event })
}

func (p *Proc) findLog(timeout time.Duration, match func(LogRecord) bool) (LogRecord, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		all, closed, changed := p.Stderr.snapshot()
		for ; seen < len(all); seen++ {
			var r LogRecord
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

// Logs returns every JSON log record so far; a line that is not JSON fails
// the test (logs are JSON by default).
func (p *Proc) Logs() []LogRecord {
	p.t.Helper()
	var out []LogRecord
	for _, l := range p.Stderr.Lines() {
		var r LogRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			p.t.Errorf("%s: stderr line is not JSON: %q", p.Name, l)
			continue
		}
		out = append(out, r)
	}
	return out
}

// CountEvent returns how many log records have msg event.
func (p *Proc) CountEvent(event string) int {
	n := 0
	for _, l := range p.Stderr.Lines() {
		var r LogRecord
		if json.Unmarshal([]byte(l), &r) == nil && r.Msg() == event {
			n++
		}
	}
	return n
}

// HTTPGet GETs path on the bridge's HTTP address.
func HTTPGet(ctx context.Context, addr, path string) (int, []byte, error) {
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

// WaitHTTP polls path on the bridge until cond accepts the answer or timeout
// passes; it returns the last status and body.
func (p *Proc) WaitHTTP(timeout time.Duration, path, what string, cond func(code int, body []byte) bool) (int, []byte) {
	p.t.Helper()
	code, body, err := 0, []byte(nil), error(nil)
	ok := Eventually(timeout, func() bool {
		if p.Exited() {
			return true
		}
		code, body, err = HTTPGet(context.Background(), p.HTTPAddr, path)
		return err == nil && cond(code, body)
	})
	if !ok || p.Exited() {
		p.t.Fatalf("%s: %s on %s: not within %v (exited=%v, last: %d %q, err %v)", p.Name, what, path, timeout, p.Exited(), code, body, err)
	}
	return code, body
}

// WaitReady waits for /readyz to answer 200.
func (p *Proc) WaitReady(timeout time.Duration) {
	p.t.Helper()
	p.WaitHTTP(timeout, "/readyz", "ready", func(code int, _ []byte) bool { return code == http.StatusOK })
}

// Eventually polls cond every 10 ms until it is true (returns true) or
// timeout passes (returns false). Polling with a deadline, not sleeping, is
// how these tests synchronise.
func Eventually(timeout time.Duration, cond func() bool) bool {
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

// State returns the exit state (nil while the process runs).
func (p *Proc) State() *os.ProcessState {
	select {
	case <-p.Done:
		return p.state
	default:
		return nil
	}
}

// PID returns the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }
