// Command aviso-bridge delivers every notification of one aviso-server watch
// to NATS, JetStream, Kafka or stdout, committing its position only after the
// sink acknowledged it.
//
// main is the only place that reads the environment, builds the concrete
// sink, store and client, and starts goroutines: aviso (SSE) -> supervisor
// (reconnects, cursor) -> bridge (ordered window, watermark) -> sink ->
// checkpoint store.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

// Exit codes (interface.md section 1).
const (
	exitOK      = 0 // stopped by a signal after draining, or a replay-only run finished
	exitRuntime = 1 // a failure retrying cannot fix
	exitConfig  = 2 // configuration error
)

func main() {
	// Unless the operator set GOGC, trade a few MiB of heap for about 15%
	// less CPU per notification (measured with cmd/aviso-bench).
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(200)
	}
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr, envconfig.OsLookuper()))
}

const usage = `aviso-bridge: deliver aviso-server notifications to NATS, JetStream, Kafka or stdout.

Usage:
  aviso-bridge [run]       run the bridge, configured by environment variables
  aviso-bridge demo        run aviso test server -> bridge -> embedded JetStream, print a summary
                           (flags: --count N, --rate N per second; see 'aviso-bridge demo -h')
  aviso-bridge healthcheck exit 0 when GET /readyz on BRIDGE_HTTP_ADDR answers 200, else 1
  aviso-bridge config      print the effective configuration (secrets redacted) and exit
  aviso-bridge checkpoint list | get NAME | set NAME SEQ | delete NAME [--force]
                           read and change stored positions per listener in the configured store
  aviso-bridge version     print version, commit and Go version

Required: AVISO_URL, and AVISO_EVENT_TYPE or AVISO_LISTENERS_FILE. Every variable is listed in the README.
Exit codes: 0 stopped by a signal after draining (or a replay finished), 1 runtime failure, 2 configuration error.
`

func realMain(args []string, stdout, stderr io.Writer, env envconfig.Lookuper) int {
	cmd := "run"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	// The first SIGTERM/SIGINT cancels ctx (drain, commit, exit); a second
	// one closes hard (exit at once).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	ctx, hard := signalContexts(sigs)
	defer hard.release()
	switch cmd {
	case "run":
		return cmdRun(ctx, hard.c, env, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args, stdout, stderr)
	case "checkpoint":
		return cmdCheckpoint(ctx, args, env, stdout, stderr)
	case "healthcheck":
		addr, ok := env.Lookup("BRIDGE_HTTP_ADDR")
		if !ok {
			addr = ":8080"
		}
		return healthcheck(ctx, addr, stdout)
	case "config":
		cfg, err := loadConfig(ctx, env)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitConfig
		}
		fmt.Fprint(stdout, cfg.redacted())
		fmt.Fprint(stdout, cfg.listenerLines())
		for _, w := range cfg.securityWarnings() {
			fmt.Fprintf(stderr, "warning: %s: %s\n", w.Event, w.Message)
		}
		return exitOK
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "aviso-bridge %s (commit %s, %s, %s/%s)\n", versionString(), commitString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "aviso-bridge: unknown command %q\n\n%s", cmd, usage)
		return exitConfig
	}
}

func versionString() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

func commitString() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// hardStop is closed at the second signal.
type hardStop struct {
	c    chan struct{}
	done chan struct{}
}

func (h hardStop) release() { close(h.done) }

// signalContexts turns the first signal into a cancelled context and the
// second into a closed channel.
func signalContexts(sigs <-chan os.Signal) (context.Context, hardStop) {
	ctx, cancel := context.WithCancel(context.Background())
	h := hardStop{c: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer cancel()
		select {
		case <-sigs:
		case <-h.done:
			return
		}
		cancel()
		select {
		case <-sigs:
			close(h.c)
		case <-h.done:
		}
	}()
	return ctx, h
}

// shutdownGrace is how long past BRIDGE_SHUTDOWN_TIMEOUT the process waits
// for the bridge to return before it exits anyway.
const shutdownGrace = 800 * time.Millisecond

// cmdRun runs the bridge until a signal, the end of a replay, or a failure.
// After the first signal the bridge has BRIDGE_SHUTDOWN_TIMEOUT (plus
// shutdownGrace) to stop; a second signal exits at once. Either way the
// exit code is 0 only when the final checkpoint commit was made.
func cmdRun(ctx context.Context, hard <-chan struct{}, env envconfig.Lookuper, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(context.Background(), env)
	if err != nil {
		// The logger is not configured yet: write one JSON log line by hand
		// through a default logger so log collectors still parse it.
		newLogger(stderr, "info", "json", nil).Error("bridge.config.invalid", "error", err.Error())
		return exitConfig
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat, cfg.secretValues())
	var run atomic.Pointer[running]
	done := make(chan error, 1)
	go func() { done <- runBridge(ctx, cfg, log, stdout, func(r *running) { run.Store(r) }) }()
	// committed: nothing acknowledged is left uncommitted (notifications
	// still in flight are read again from aviso after a restart).
	committed := func() bool {
		r := run.Load()
		return r == nil || !r.uncommitted() // nil: nothing ran yet
	}
	signalled := ctx.Done()
	var overrun <-chan time.Time
	for {
		select {
		case err := <-done:
			return exitCode(err, log)
		case <-signalled:
			signalled = nil
			t := time.NewTimer(cfg.Bridge.ShutdownTimeout + shutdownGrace)
			defer t.Stop()
			overrun = t.C
		case <-overrun:
			log.Error("bridge.shutdown.overrun", "timeout", cfg.Bridge.ShutdownTimeout, "committed", committed(),
				"hint", "the stop did not finish within BRIDGE_SHUTDOWN_TIMEOUT; exiting")
			return stopExit(committed())
		case <-hard:
			log.Warn("bridge.shutdown.forced", "committed", committed(), "hint", "second signal: exiting without waiting for the drain")
			return stopExit(committed())
		}
	}
}

// stopExit is the exit code of a stop cut short: 0 when the final commit
// was made, 1 when something acknowledged may not be committed.
func stopExit(committed bool) int {
	if committed {
		return exitOK
	}
	return exitRuntime
}

// exitCode maps runBridge's result to the process exit code.
func exitCode(err error, log interface {
	Error(string, ...any)
}) int {
	if err == nil {
		return exitOK
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		log.Error("bridge.config.invalid", "error", err.Error())
		return exitConfig
	}
	log.Error("bridge.failed", "error", err.Error())
	return exitRuntime
}
