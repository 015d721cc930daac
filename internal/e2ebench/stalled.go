package e2ebench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// StalledConfig configures Stalled.
type StalledConfig struct {
	// Binary is the aviso-bridge executable (see BuildBinary).
	Binary string
	// N is the number of notifications replayed (default 200).
	N int
	// PayloadSize is the size of each notification's payload note in bytes
	// (default 900000: 0.9 MB notifications).
	PayloadSize int
	// ShutdownTimeout is BRIDGE_SHUTDOWN_TIMEOUT (default 3s).
	ShutdownTimeout time.Duration
	// Quiet is how long the peak RSS must stay unchanged before the bridge
	// is taken to hold all it will hold (default 2s); Settle caps the wait
	// (default 90s).
	Quiet, Settle time.Duration
	// Dir holds the checkpoint file (default: a temporary directory).
	Dir string
	// Env adds variables to the bridge's environment (a later one wins),
	// for example BRIDGE_MAX_IN_FLIGHT_BYTES=16MiB.
	Env []string
	// Stderr, when set, receives the bridge's log lines.
	Stderr io.Writer
}

// StalledResult is one run of Stalled.
type StalledResult struct {
	// PeakRSS is the bridge's peak resident set size in bytes (VmHWM of
	// /proc/PID/status, sampled every 20 ms), 0 where unknown.
	PeakRSS int64
	// Stop is the time from SIGTERM to the process's exit.
	Stop time.Duration
	// ExitErr is the process's exit error after SIGTERM (nil: exit 0).
	ExitErr error
}

// Stalled runs the aviso-bridge binary with SINK=stdout, its standard
// output a pipe nobody reads, against avisotest holding N notifications of
// about PayloadSize bytes (AVISO_MODE=replay from AVISO_FROM_ID=1, window
// settings at their defaults unless Env sets them). It waits until the
// bridge's peak RSS stops growing (the window and the input in front of it
// are full, so the bridge no longer reads from aviso), reports that peak,
// then sends SIGTERM and reports how long the bridge took to exit
// (BRIDGE_SHUTDOWN_TIMEOUT bounds it). It measures the real process: heap,
// decoder buffers, the sink's copies and the garbage collector's headroom
// (GOGC 200 by default) are all in the figure.
func Stalled(ctx context.Context, cfg StalledConfig) (StalledResult, error) {
	if cfg.N <= 0 {
		cfg.N = 200
	}
	if cfg.PayloadSize <= 0 {
		cfg.PayloadSize = 900_000
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 3 * time.Second
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = 2 * time.Second
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 90 * time.Second
	}
	var res StalledResult
	if cfg.Binary == "" {
		return res, errors.New("StalledConfig.Binary: no aviso-bridge executable given (see BuildBinary)")
	}
	dir, cleanup, err := scratch(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer cleanup()
	const et = "mars"
	src, err := avisotest.New(avisotest.WithClock(fixedClock))
	if err != nil {
		return res, fmt.Errorf("aviso test server: %w", err)
	}
	defer src.Close()
	payload := map[string]string{"note": strings.Repeat("x", cfg.PayloadSize)}
	for range cfg.N {
		src.Publish(et, benchIdentifier, payload)
	}

	// Standard output: a pipe whose read end stays open and unread, so
	// the sink's first write blocks for good.
	pr, pw, err := os.Pipe()
	if err != nil {
		return res, err
	}
	defer pr.Close()
	cmd := exec.CommandContext(ctx, cfg.Binary, "run")
	cmd.Env = append([]string{
		"AVISO_URL=" + src.URL,
		"AVISO_EVENT_TYPE=" + et,
		"AVISO_MODE=replay",
		"AVISO_FROM_ID=1",
		"SINK=stdout",
		"CHECKPOINT_FILE=" + filepath.Join(dir, "checkpoint.json"),
		"BRIDGE_SHUTDOWN_TIMEOUT=" + cfg.ShutdownTimeout.String(),
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		"HOME=" + dir,
	}, cfg.Env...)
	cmd.Stdout = pw
	stderr, err := cmd.StderrPipe()
	if err != nil {
		pw.Close()
		return res, err
	}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return res, fmt.Errorf("start %s: %w", cfg.Binary, err)
	}
	pw.Close() // the child holds its own copy
	var tail bytes.Buffer
	var started atomic.Bool
	logs := make(chan struct{})
	go func() {
		defer close(logs)
		readLog(stderr, cfg.Stderr, &tail, func(msg string) {
			if msg == "bridge.started" {
				started.Store(true)
			}
		})
	}()
	exited := make(chan error, 1)
	go func() {
		<-logs // Wait must not close stderr before it is read
		exited <- cmd.Wait()
	}()

	pid := cmd.Process.Pid
	var peak int64
	quietSince := time.Now()
	deadline := time.Now().Add(cfg.Settle)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if v := vmHWM(pid); v > peak {
			peak = v
			quietSince = time.Now()
		}
		now := time.Now()
		if started.Load() && now.Sub(quietSince) >= cfg.Quiet || now.After(deadline) {
			break
		}
		select {
		case <-tick.C:
		case err := <-exited:
			return res, fmt.Errorf("aviso-bridge exited before SIGTERM: %w; last log lines:\n%s", err, tail.String())
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	res.PeakRSS = peak
	stopAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return res, fmt.Errorf("SIGTERM: %w", err)
	}
	// VmHWM only grows: keep sampling until the process is gone.
	for {
		select {
		case err := <-exited:
			res.Stop = time.Since(stopAt)
			res.ExitErr = err
			return res, nil
		case <-tick.C:
			if v := vmHWM(pid); v > res.PeakRSS {
				res.PeakRSS = v
			}
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
}
