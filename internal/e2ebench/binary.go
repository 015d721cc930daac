package e2ebench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// BinaryConfig configures Binary.
type BinaryConfig struct {
	// Binary is the aviso-bridge executable (see BuildBinary).
	Binary string
	// N is the number of notifications replayed (default 100000).
	N int
	// FrameSize is the SSE event size of a notification (default
	// DefaultFrameSize).
	FrameSize int
	// Dir holds the JetStream store and the checkpoint file (default: a
	// temporary directory removed at the end).
	Dir string
	// Env adds variables to the bridge's environment (a later one wins),
	// for example GODEBUG=gctrace=1 or BRIDGE_MAX_IN_FLIGHT=1024.
	Env []string
	// Stderr, when set, receives the bridge's log lines.
	Stderr io.Writer
}

// BinaryResult is one run of the aviso-bridge binary.
type BinaryResult struct {
	// Throughput is N notifications in the time between the bridge's own
	// bridge.started and bridge.stopped log lines (connect, replay, drain,
	// final commit; not process start-up), with the CPU time (user +
	// system) of the bridge process over its whole life.
	Throughput Throughput
	// Wall is the process's whole life, start-up and exit included.
	Wall time.Duration
	// PeakRSS is the process's peak resident set size in bytes (VmHWM,
	// sampled every 20 ms and when it logs bridge.stopped), 0 where
	// unknown (outside Linux).
	PeakRSS int64
}

// BuildBinary builds cmd/aviso-bridge into dir with the go command and
// returns its path. It must run inside the module (the package is named by
// import path).
func BuildBinary(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "aviso-bridge")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/aviso-bridge/aviso-bridge/cmd/aviso-bridge")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/aviso-bridge: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// Binary runs the aviso-bridge binary as an operator would, configured by
// environment variables only (AVISO_MODE=replay from AVISO_FROM_ID=1,
// SINK=jetstream, everything else at its defaults, the HTTP endpoint on a
// free loopback port), against avisotest holding N notifications and an
// embedded nats-server with JetStream, until it exits at the end of the
// replay. It checks the exit status and that the stream holds N messages,
// and reports the bridge's own rate and its peak RSS.
func Binary(ctx context.Context, cfg BinaryConfig) (BinaryResult, error) {
	if cfg.N <= 0 {
		cfg.N = 100_000
	}
	if cfg.FrameSize <= 0 {
		cfg.FrameSize = DefaultFrameSize
	}
	var res BinaryResult
	if cfg.Binary == "" {
		return res, errors.New("BinaryConfig.Binary: no aviso-bridge executable given (see BuildBinary)")
	}
	dir, cleanup, err := scratch(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer cleanup()
	ns, err := startNATS(filepath.Join(dir, "jetstream"))
	if err != nil {
		return res, err
	}
	defer stopNATS(ns)
	url := ns.ClientURL()
	if err := createStreams(ctx, url, map[string]string{bridgeStream: "aviso.>"}); err != nil {
		return res, err
	}
	const et = "mars"
	opts := []avisotest.Option{avisotest.WithClock(fixedClock), avisotest.WithReplayBatch(1000, 0)}
	pad, err := payloadPad(ctx, et, aviso.EventReplay, digits(cfg.N), cfg.FrameSize, opts...)
	if err != nil {
		return res, err
	}
	src, err := avisotest.New(opts...)
	if err != nil {
		return res, fmt.Errorf("aviso test server: %w", err)
	}
	defer src.Close()
	publishN(src, et, cfg.N, pad)

	cmd := exec.CommandContext(ctx, cfg.Binary, "run")
	cmd.Env = []string{
		"AVISO_URL=" + src.URL,
		"AVISO_EVENT_TYPE=" + et,
		"AVISO_MODE=replay",
		"AVISO_FROM_ID=1",
		"SINK=jetstream",
		"NATS_URL=" + url,
		"CHECKPOINT_FILE=" + filepath.Join(dir, "checkpoint.json"),
		"BRIDGE_HTTP_ADDR=127.0.0.1:0",
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		"HOME=" + dir,
	}
	cmd.Env = append(cmd.Env, cfg.Env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return res, err
	}
	var tail bytes.Buffer // the last log lines, for errors
	logs := make(chan map[string]time.Time, 1)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start %s: %w", cfg.Binary, err)
	}
	// VmHWM only grows: the last reading before exit is the peak. The
	// bridge logs bridge.stopped after its final commit, just before it
	// exits.
	var peak atomic.Int64
	sample := func() {
		if v := vmHWM(cmd.Process.Pid); v > 0 {
			peak.Store(max(peak.Load(), v))
		}
	}
	sampled := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			sample()
			select {
			case <-t.C:
			case <-exited:
				return
			}
		}
	}()
	go func() {
		logs <- readLog(stderr, cfg.Stderr, &tail, func(msg string) {
			if msg == "bridge.stopped" {
				sample()
			}
		})
	}()
	seen := <-logs // EOF: the process closed stderr
	werr := cmd.Wait()
	res.Wall = time.Since(start)
	close(exited)
	<-sampled
	if werr != nil {
		return res, fmt.Errorf("aviso-bridge: %w; last log lines:\n%s", werr, tail.String())
	}
	res.PeakRSS = peak.Load()
	started, ok1 := seen["bridge.started"]
	stopped, ok2 := seen["bridge.stopped"]
	if !ok1 || !ok2 {
		return res, fmt.Errorf("aviso-bridge logged no bridge.started/bridge.stopped; last log lines:\n%s", tail.String())
	}
	res.Throughput = Throughput{Messages: cfg.N, Elapsed: stopped.Sub(started),
		CPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	if got, err := streamMsgs(ctx, url, bridgeStream); err != nil {
		return res, err
	} else if got != uint64(cfg.N) {
		return res, fmt.Errorf("stream %s holds %d messages after the aviso-bridge run, want %d", bridgeStream, got, cfg.N)
	}
	return res, nil
}

// readLog reads JSON log lines until EOF and returns the time of the first
// line of each message; it copies lines to out (when set), keeps the last
// few in tail, and calls onMsg with each message.
func readLog(r io.Reader, out io.Writer, tail *bytes.Buffer, onMsg func(string)) map[string]time.Time {
	seen := map[string]time.Time{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var last [][]byte
	for sc.Scan() {
		line := sc.Bytes()
		if out != nil {
			fmt.Fprintf(out, "%s\n", line)
		}
		last = append(last, bytes.Clone(line))
		if len(last) > 10 {
			last = last[1:]
		}
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg != "" {
			onMsg(rec.Msg)
			if _, ok := seen[rec.Msg]; !ok {
				seen[rec.Msg] = rec.Time
			}
		}
	}
	_, _ = io.Copy(io.Discard, r)
	tail.Write(bytes.Join(last, []byte("\n")))
	return seen
}
