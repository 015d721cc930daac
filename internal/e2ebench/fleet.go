package e2ebench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// The fleet measurements of issue 14 (interface.md section 7): many
// listeners in one process at rest, and how long a fleet of bridges sharing
// a NATS KV store takes to run a dead or stopped bridge's listeners again.

// FleetIdleConfig configures FleetIdle.
type FleetIdleConfig struct {
	// Binary is the aviso-bridge executable (see BuildBinary).
	Binary string
	// Listeners is the number of listeners in the listener file (default
	// 200), one event type each.
	Listeners int
	// Heartbeat is avisotest's heartbeat interval and
	// AVISO_HEARTBEAT_INTERVAL (default 2s).
	Heartbeat time.Duration
	// Measure is how long CPU time is counted once the bridge is ready
	// (default 20s).
	Measure time.Duration
	// Settle caps the wait for the bridge to be ready (default 90s).
	Settle time.Duration
	// Dir holds the listener and checkpoint files (default: a temporary
	// directory).
	Dir string
	// Env adds variables to the bridge's environment (a later one wins).
	Env []string
	// Stderr, when set, receives the bridge's log lines.
	Stderr io.Writer
}

// FleetIdleResult is one run of FleetIdle.
type FleetIdleResult struct {
	// Listeners is the number of listeners the bridge ran.
	Listeners int
	// Ready is the time from the process's start to /readyz answering 200
	// with every listener's stream open.
	Ready time.Duration
	// CPU is the process's CPU time (user + system) over Measured.
	CPU, Measured time.Duration
	// PeakRSS is the process's peak resident set size (VmHWM) at the end
	// of the measurement, in bytes; 0 where unknown (outside Linux).
	PeakRSS int64
}

// CPUPercent is CPU over Measured in percent of one core (-1 where
// unknown).
func (r FleetIdleResult) CPUPercent() float64 {
	if r.Measured <= 0 || r.CPU < 0 {
		return -1
	}
	return 100 * float64(r.CPU) / float64(r.Measured)
}

// FleetIdle runs the aviso-bridge binary with a listener file of Listeners
// listeners (SINK=stdout into /dev/null, file store, live from now) against
// avisotest sending heartbeats every Heartbeat and no notification. Once
// /readyz answers 200 and avisotest holds one open stream per listener, it
// counts the process's CPU time for Measure and reads its peak RSS, then
// stops it with SIGTERM (exit 0 expected).
func FleetIdle(ctx context.Context, cfg FleetIdleConfig) (FleetIdleResult, error) {
	cfg = cfg.WithDefaults()
	res := FleetIdleResult{Listeners: cfg.Listeners}
	if cfg.Binary == "" {
		return res, errors.New("FleetIdleConfig.Binary: no aviso-bridge executable given (see BuildBinary)")
	}
	dir, cleanup, err := scratch(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer cleanup()
	src, err := avisotest.New(avisotest.WithHeartbeat(cfg.Heartbeat))
	if err != nil {
		return res, fmt.Errorf("aviso test server: %w", err)
	}
	defer src.Close()
	file, err := writeListenerFile(dir, "idle", cfg.Listeners)
	if err != nil {
		return res, err
	}
	env := append([]string{
		"AVISO_URL=" + src.URL,
		"AVISO_LISTENERS_FILE=" + file,
		"AVISO_HEARTBEAT_INTERVAL=" + cfg.Heartbeat.String(),
		"SINK=stdout",
		"CHECKPOINT_FILE=" + filepath.Join(dir, "checkpoint.json"),
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		"HOME=" + dir,
	}, cfg.Env...)
	start := time.Now()
	p, err := startBenchProc(ctx, cfg.Binary, "idle", env, cfg.Stderr)
	if err != nil {
		return res, err
	}
	defer p.kill()
	ready := func() bool {
		code, _, err := benchGet(ctx, p.addr, "/readyz")
		return err == nil && code == http.StatusOK && src.OpenStreams() >= cfg.Listeners
	}
	if err := p.poll(ctx, cfg.Settle, ready); err != nil {
		return res, fmt.Errorf("%d listeners ready (open streams %d): %w", cfg.Listeners, src.OpenStreams(), err)
	}
	res.Ready = time.Since(start)
	cpu0, ok0 := pidCPU(p.pid())
	from := time.Now()
	select {
	case <-time.After(cfg.Measure): // the measured idle period
	case <-p.done:
		return res, p.exitErr("during the idle measurement")
	case <-ctx.Done():
		return res, ctx.Err()
	}
	cpu1, ok1 := pidCPU(p.pid())
	res.Measured = time.Since(from)
	res.CPU = -1
	if ok0 && ok1 {
		res.CPU = cpu1 - cpu0
	}
	res.PeakRSS = vmHWM(p.pid())
	if err := p.stop(30 * time.Second); err != nil {
		return res, err
	}
	return res, nil
}

// WithDefaults returns c with every zero field at its default.
func (c FleetIdleConfig) WithDefaults() FleetIdleConfig {
	if c.Listeners <= 0 {
		c.Listeners = 200
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 2 * time.Second
	}
	if c.Measure <= 0 {
		c.Measure = 20 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 90 * time.Second
	}
	return c
}

// FleetFailoverConfig configures FleetFailover.
type FleetFailoverConfig struct {
	// Binary is the aviso-bridge executable (see BuildBinary).
	Binary string
	// Listeners is the number of listeners of the fleet (default 6).
	Listeners int
	// TTL is CHECKPOINT_LEASE_TTL (default 2s).
	TTL time.Duration
	// Rounds is how many kill -9 and SIGTERM hand-overs are measured
	// (default 3 of each).
	Rounds int
	// Settle caps each wait for a spread (default 60s).
	Settle time.Duration
	// Dir holds the JetStream store and the listener file (default: a
	// temporary directory).
	Dir string
	// Env adds variables to every bridge's environment.
	Env []string
	// Stderr, when set, receives the bridges' log lines.
	Stderr io.Writer
}

// FleetFailoverResult is one run of FleetFailover.
type FleetFailoverResult struct {
	Listeners int
	TTL       time.Duration
	// Kill are the times from a kill -9 of one of two bridges to the other
	// running every listener (its /status); Term the same from a SIGTERM.
	Kill, Term []time.Duration
}

// Worst returns the longest of ds (0 when empty).
func Worst(ds []time.Duration) time.Duration {
	w := time.Duration(0)
	for _, d := range ds {
		w = max(w, d)
	}
	return w
}

// FleetFailover runs a fleet of two aviso-bridge binaries (BRIDGE_STANDBY=
// true, CHECKPOINT_STORE=nats-kv on an embedded nats-server, SINK=stdout,
// CHECKPOINT_LEASE_TTL=TTL, Listeners listeners) and measures, Rounds times
// each, how long after a kill -9 and after a SIGTERM of one bridge the other
// runs all the listeners, as its GET /status says (polled every 10 ms).
// Before each stop a new bridge joins and the two must have spread the
// listeners (each runs some, every listener runs once).
func FleetFailover(ctx context.Context, cfg FleetFailoverConfig) (FleetFailoverResult, error) {
	cfg = cfg.withDefaults()
	res := FleetFailoverResult{Listeners: cfg.Listeners, TTL: cfg.TTL}
	if cfg.Binary == "" {
		return res, errors.New("FleetFailoverConfig.Binary: no aviso-bridge executable given (see BuildBinary)")
	}
	fl, err := newBenchFleet(ctx, cfg.Binary, cfg.Dir, "fo", cfg.Listeners, cfg.TTL, cfg.Stderr)
	if err != nil {
		return res, err
	}
	defer fl.close()
	n := 0
	start := func() (*benchProc, error) {
		id := fmt.Sprintf("bench-%d", n)
		n++
		return fl.start(id, append([]string{"SINK=stdout"}, cfg.Env...)...)
	}
	cur, err := start()
	if err != nil {
		return res, err
	}
	if err := cur.poll(ctx, cfg.Settle, func() bool { return runsAll(ctx, cfg.Listeners, cur) }); err != nil {
		return res, fmt.Errorf("first bridge running %d listeners: %w", cfg.Listeners, err)
	}
	for range cfg.Rounds {
		for _, graceful := range []bool{false, true} {
			next, err := start()
			if err != nil {
				return res, err
			}
			if err := next.poll(ctx, cfg.Settle, func() bool { return spreadOver(ctx, cfg.Listeners, cur, next) }); err != nil {
				return res, fmt.Errorf("%s joining %s: %w", next.id, cur.id, err)
			}
			at := time.Now()
			if graceful {
				err = cur.cmd.Process.Signal(syscall.SIGTERM)
			} else {
				err = cur.cmd.Process.Kill()
			}
			if err != nil {
				return res, fmt.Errorf("stop %s: %w", cur.id, err)
			}
			if err := next.poll(ctx, cfg.Settle, func() bool { return runsAll(ctx, cfg.Listeners, next) }); err != nil {
				return res, fmt.Errorf("%s taking over from %s: %w", next.id, cur.id, err)
			}
			took := time.Since(at)
			if graceful {
				res.Term = append(res.Term, took)
				if err := cur.stop(0); err != nil {
					return res, err
				}
			} else {
				res.Kill = append(res.Kill, took)
			}
			cur = next
		}
	}
	return res, cur.stop(30 * time.Second)
}

func (c FleetFailoverConfig) withDefaults() FleetFailoverConfig {
	if c.Listeners <= 0 {
		c.Listeners = 6
	}
	if c.TTL <= 0 {
		c.TTL = 2 * time.Second
	}
	if c.Rounds <= 0 {
		c.Rounds = 3
	}
	if c.Settle <= 0 {
		c.Settle = 60 * time.Second
	}
	return c
}

// benchFleet is what a fleet measurement runs on: a scratch directory, an
// embedded nats-server (the NATS KV store, and JetStream for a sink),
// avisotest and a listener file; start runs one bridge of the fleet, and
// close kills whatever still runs and removes it all.
type benchFleet struct {
	ctx     context.Context
	bin     string
	dir     string
	file    string
	ttl     time.Duration
	stderr  io.Writer
	ns      *server.Server
	src     *avisotest.Server
	procs   []*benchProc
	cleanup func()
}

// newBenchFleet sets up a fleet of listeners listeners named
// <prefix>-<i> (event <prefix><i>) with CHECKPOINT_LEASE_TTL=ttl in dir (a
// temporary directory when empty).
func newBenchFleet(ctx context.Context, bin, dir, prefix string, listeners int, ttl time.Duration, stderr io.Writer) (*benchFleet, error) {
	f := &benchFleet{ctx: ctx, bin: bin, ttl: ttl, stderr: stderr}
	var err error
	if f.dir, f.cleanup, err = scratch(dir); err != nil {
		return nil, err
	}
	if f.ns, err = startNATS(filepath.Join(f.dir, "jetstream")); err == nil {
		if f.src, err = avisotest.New(); err != nil {
			err = fmt.Errorf("aviso test server: %w", err)
		}
	}
	if err == nil {
		f.file, err = writeListenerFile(f.dir, prefix, listeners)
	}
	if err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// start runs a bridge of the fleet as instance id (BRIDGE_STANDBY=true,
// CHECKPOINT_STORE=nats-kv), env added to its environment.
func (f *benchFleet) start(id string, env ...string) (*benchProc, error) {
	p, err := startBenchProc(f.ctx, f.bin, id, append([]string{
		"AVISO_URL=" + f.src.URL,
		"AVISO_LISTENERS_FILE=" + f.file,
		"CHECKPOINT_STORE=nats-kv",
		"NATS_URL=" + f.ns.ClientURL(),
		"BRIDGE_STANDBY=true",
		"BRIDGE_INSTANCE_ID=" + id,
		"CHECKPOINT_LEASE_TTL=" + f.ttl.String(),
		"LOG_FORMAT=json",
		"HOME=" + f.dir,
	}, env...), f.stderr)
	if err == nil {
		f.procs = append(f.procs, p)
	}
	return p, err
}

func (f *benchFleet) close() {
	for _, p := range f.procs {
		p.kill()
	}
	if f.src != nil {
		f.src.Close()
	}
	if f.ns != nil {
		stopNATS(f.ns)
	}
	f.cleanup()
}

// writeListenerFile writes a listener file of n listeners named
// <prefix>-<i>, event <prefix>-<i>, into dir.
func writeListenerFile(dir, prefix string, n int) (string, error) {
	var b strings.Builder
	b.WriteString("listeners:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: %s-%03d\n    event: %s%03d\n", prefix, i, prefix, i)
	}
	path := filepath.Join(dir, "listeners.yaml")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// benchStatus is the part of GET /status (interface.md section 5) the
// fleet measurements read.
type benchStatus struct {
	Instance  string `json:"instance"`
	Listeners []struct {
		Name   string `json:"name"`
		State  string `json:"state"`
		Holder string `json:"holder"`
	} `json:"listeners"`
}

// status reads p's GET /status.
func status(ctx context.Context, p *benchProc) (benchStatus, error) {
	var st benchStatus
	code, body, err := benchGet(ctx, p.addr, "/status")
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("status %d", code)
	}
	if err == nil {
		err = json.Unmarshal(body, &st)
	}
	if err != nil {
		return st, fmt.Errorf("%s: GET /status: %w", p.id, err)
	}
	return st, nil
}

// runsItself reports whether st says its bridge runs l.
func (st benchStatus) runsItself(i int) bool {
	l := st.Listeners[i]
	return l.State == "running" && (l.Holder == st.Instance || l.Holder == "")
}

// running returns how many listeners p runs itself, as its /status says
// (-1 when it does not answer).
func running(ctx context.Context, p *benchProc) int {
	st, err := status(ctx, p)
	if err != nil {
		return -1
	}
	n := 0
	for i := range st.Listeners {
		if st.runsItself(i) {
			n++
		}
	}
	return n
}

// runsAll reports whether p runs all n listeners.
func runsAll(ctx context.Context, n int, p *benchProc) bool { return running(ctx, p) == n }

// spreadOver reports whether a and b both run some of the n listeners and
// together all of them.
func spreadOver(ctx context.Context, n int, a, b *benchProc) bool {
	x, y := running(ctx, a), running(ctx, b)
	return x > 0 && y > 0 && x+y == n
}

// benchProc is one aviso-bridge process of a fleet measurement.
type benchProc struct {
	id, addr string
	cmd      *exec.Cmd
	done     chan struct{}
	mu       sync.Mutex
	tail     bytes.Buffer
	err      error
}

// startBenchProc starts bin run with env plus BRIDGE_HTTP_ADDR on a free
// loopback port; stdout goes to /dev/null.
func startBenchProc(ctx context.Context, bin, id string, env []string, stderr io.Writer) (*benchProc, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	p := &benchProc{id: id, addr: addr, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, bin, "run")
	p.cmd.Env = append(env, "BRIDGE_HTTP_ADDR="+addr)
	errPipe, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		var tail bytes.Buffer
		readLog(errPipe, stderr, &tail, func(string) {})
		werr := p.cmd.Wait()
		p.mu.Lock()
		p.tail, p.err = tail, werr
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *benchProc) pid() int { return p.cmd.Process.Pid }

// poll calls cond every 10 ms until it is true, the process exits, or
// timeout passes.
func (p *benchProc) poll(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-p.done:
			return p.exitErr("while waiting")
		case <-deadline.C:
			return fmt.Errorf("%s: not within %v", p.id, timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// exitErr describes an exit nobody asked for.
func (p *benchProc) exitErr(when string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		return fmt.Errorf("%s exited %s (exit 0); last log lines:\n%s", p.id, when, p.tail.String())
	}
	return fmt.Errorf("%s exited %s (%w); last log lines:\n%s", p.id, when, p.err, p.tail.String())
}

// stop sends SIGTERM (unless one was sent: timeout 0) and waits for exit 0.
func (p *benchProc) stop(timeout time.Duration) error {
	if timeout > 0 {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			return fmt.Errorf("%s: SIGTERM: %w", p.id, err)
		}
	} else {
		timeout = 30 * time.Second
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %v of SIGTERM", p.id, timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return fmt.Errorf("%s after SIGTERM: %w; last log lines:\n%s", p.id, p.err, p.tail.String())
	}
	return nil
}

// kill ends the process if it still runs and waits for it.
func (p *benchProc) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// benchGet GETs path on addr with a short timeout.
func benchGet(ctx context.Context, addr, path string) (int, []byte, error) {
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
