// Command aviso-bench runs aviso-bridge's end-to-end benchmarks (package
// internal/e2ebench) and prints one markdown table: the SSE decoder next to
// a raw line scan, the whole chain (avisotest -> aviso -> supervisor ->
// pipeline -> sink) into JetStream and into Kafka next to bare clients of
// the same brokers, the live latency from aviso's send to the JetStream
// acknowledgement, the built binary's rate and peak RSS, and the built
// binary's peak RSS and stop time with 200 notifications of 0.9 MB behind a
// stalled stdout (the byte-bounded window and the shutdown deadline), the
// fleet rows (200 listeners at rest, fail-over times) and the fail-over
// timeline of two bridges across a kill -9 and a restart.
//
//	go run ./cmd/aviso-bench                 # defaults: 100000 notifications, a few minutes on 2 cores
//	go run ./cmd/aviso-bench -quick          # smoke run, seconds
//	go run ./cmd/aviso-bench -svg docs/img   # also the figures the README shows (package benchplot)
//
// Run it from inside the module: it builds cmd/aviso-bridge with the go
// command (or give -binary). Progress goes to stderr, the table to stdout.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/aviso-bridge/aviso-bridge/internal/benchplot"
	"github.com/aviso-bridge/aviso-bridge/internal/e2ebench"
)

func main() {
	// Measure with the production binary's GC setting (cmd/aviso-bridge
	// runs with GOGC 200 unless the operator sets GOGC); the bare clients
	// in the same process get it too.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(200)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	n, rounds, latencyN, rate, window int
	quick                             bool
	only, binary, svg                 string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("aviso-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.n, "n", 100_000, "notifications per throughput, decode and binary measurement")
	fs.IntVar(&o.rounds, "rounds", e2ebench.DefaultRounds, "alternating rounds of bridge and baseline in the throughput measurements")
	fs.IntVar(&o.latencyN, "latency-n", 10_000, "notifications published live in the latency measurement")
	fs.IntVar(&o.rate, "rate", 1000, "publish rate of the latency measurement, per second")
	fs.IntVar(&o.window, "window", e2ebench.DefaultWindow, "BRIDGE_MAX_IN_FLIGHT = NATS_MAX_PENDING, and the bare clients' window")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: 5000 notifications, 1000 live, 2 rounds (flags given explicitly still win)")
	fs.StringVar(&o.only, "only", "", "comma-separated subset of decode,jetstream,kafka,discard,latency,binary,stalled,fleet,timeline")
	fs.StringVar(&o.svg, "svg", "", "directory to write the figures into as SVG: "+throughputSVG+" (with jetstream or kafka) and "+timelineSVG+" (with timeline)")
	fs.StringVar(&o.binary, "binary", "", "aviso-bridge executable to measure (default: go build ./cmd/aviso-bridge into a temporary directory)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["n"] {
			o.n = 5000
		}
		if !set["latency-n"] {
			o.latencyN = 1000
		}
		if !set["rounds"] {
			o.rounds = 2
		}
	}
	if o.n <= 0 || o.rounds <= 0 || o.latencyN <= 0 || o.rate <= 0 || o.window <= 0 {
		fmt.Fprintln(stderr, "aviso-bench: -n, -rounds, -latency-n, -rate and -window must be positive")
		return 2
	}
	want := map[string]bool{}
	for _, s := range strings.Split(o.only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	for s := range want {
		switch s {
		case "decode", "jetstream", "kafka", "discard", "latency", "binary", "stalled", "fleet", "timeline":
		default:
			fmt.Fprintf(stderr, "aviso-bench: -only: unknown measurement %q\n", s)
			return 2
		}
	}
	wanted := func(s string) bool { return len(want) == 0 || want[s] }
	if o.svg != "" && !wanted("jetstream") && !wanted("kafka") && !wanted("timeline") {
		fmt.Fprintf(stderr, "aviso-bench: -svg: nothing to draw: %s needs jetstream or kafka, %s needs timeline in -only\n", throughputSVG, timelineSVG)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rows, figs, err := measure(ctx, o, wanted, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "aviso-bench: %v\n", err)
		return 1
	}
	if o.svg != "" {
		written, err := figs.write(o.svg, time.Now())
		if err != nil {
			fmt.Fprintf(stderr, "aviso-bench: -svg: %v\n", err)
			return 1
		}
		for _, f := range written {
			fmt.Fprintf(stderr, "aviso-bench: wrote %s\n", f)
		}
	}
	fmt.Fprint(stdout, table(rows))
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, machine(time.Now()))
	return 0
}

type row struct{ what, bridge, baseline, ratio, unit string }

func measure(ctx context.Context, o options, want func(string) bool, log io.Writer) ([]row, figures, error) {
	var rows []row
	figs := figures{n: o.n}
	step := func(name string) func() {
		fmt.Fprintf(log, "aviso-bench: %s ...", name)
		start := time.Now()
		return func() { fmt.Fprintf(log, " %.1fs\n", time.Since(start).Seconds()) }
	}
	tcfg := e2ebench.ThroughputConfig{N: o.n, Rounds: o.rounds, Window: o.window}
	if want("decode") {
		done := step("SSE decode")
		r, err := e2ebench.Decode(ctx, e2ebench.DecodeConfig{N: o.n})
		if err != nil {
			return nil, figs, fmt.Errorf("decode: %w", err)
		}
		done()
		what := fmt.Sprintf("SSE decode, aviso client vs raw bufio line scan (%d × %.0f B notifications, loopback from avisotest)", o.n, r.FrameBytes)
		rows = append(rows,
			row{what, count(r.Aviso.FramesPerSec()), count(r.Raw.FramesPerSec()), ratio(r.Ratio()), "frames/s"},
			row{"SSE decode, same runs", fixed(r.Aviso.MBPerSec(), 0), fixed(r.Raw.MBPerSec(), 0), ratio(r.Ratio()), "MB/s"})
	}
	if want("jetstream") {
		done := step("end to end into JetStream")
		r, err := e2ebench.JetStream(ctx, tcfg)
		if err != nil {
			return nil, figs, fmt.Errorf("jetstream: %w", err)
		}
		done()
		rows = append(rows,
			row{fmt.Sprintf("End to end into JetStream (file storage, Nats-Msg-Id) vs bare PublishAsync, window %d (%d notifications, %d rounds)", o.window, o.n, o.rounds),
				count(r.Bridge.Rate()), count(r.Bare.Rate()), ratio(r.Ratio()), "msgs/s"},
			cpuRow("JetStream, same runs", r.Bridge, r.Bare))
		figs.bars = append(figs.bars, benchplot.Bar{Label: "JetStream\nvs bare PublishAsync", Ratio: r.Ratio()})
	}
	if want("kafka") {
		done := step("end to end into Kafka")
		r, err := e2ebench.Kafka(ctx, tcfg)
		if err != nil {
			return nil, figs, fmt.Errorf("kafka: %w", err)
		}
		done()
		rows = append(rows,
			row{fmt.Sprintf("End to end into Kafka (kfake, acks=all) vs bare async kafka-go Writer, window %d (%d notifications, %d rounds)", o.window, o.n, o.rounds),
				count(r.Bridge.Rate()), count(r.Bare.Rate()), ratio(r.Ratio()), "msgs/s"},
			row{"End to end into Kafka vs the same Writer unbounded (no window)",
				count(r.Bridge.Rate()), count(r.Unbounded.Rate()), ratio(r.Bridge.Rate() / r.Unbounded.Rate()), "msgs/s"},
			cpuRow("Kafka, same runs (baseline: bare Writer, window)", r.Bridge, r.Bare))
		figs.bars = append(figs.bars,
			benchplot.Bar{Label: "Kafka\nvs bare Writer (window)", Ratio: r.Ratio()},
			benchplot.Bar{Label: "Kafka\nvs Writer unbounded", Ratio: r.Bridge.Rate() / r.Unbounded.Rate()})
	}
	if want("discard") {
		done := step("end to end into a discarding sink")
		r, err := e2ebench.Discard(ctx, tcfg)
		if err != nil {
			return nil, figs, fmt.Errorf("discard: %w", err)
		}
		done()
		rows = append(rows,
			row{fmt.Sprintf("Source ceiling: bridge into a sink that acknowledges at once, no broker (%d notifications)", o.n), count(r.Rate()), "", "", "msgs/s"},
			row{"Source ceiling, same runs: process CPU per message", us(r.CPUPerMsg()), "", "", "µs CPU/msg"})
	}
	if want("latency") {
		done := step(fmt.Sprintf("latency (%d live at %d/s)", o.latencyN, o.rate))
		r, err := e2ebench.Latency(ctx, e2ebench.LatencyConfig{N: o.latencyN, Rate: o.rate, Window: o.window})
		if err != nil {
			return nil, figs, fmt.Errorf("latency: %w", err)
		}
		done()
		what := fmt.Sprintf("Latency aviso Publish → JetStream ack, live watch at %.0f/s (%d notifications)", r.Rate, r.Count)
		rows = append(rows,
			row{what + ", p50", ms(r.P50), "", "", "ms"},
			row{what + ", p99", ms(r.P99), "", "", "ms"},
			row{what + ", max", ms(r.Max), "", "", "ms"})
	}
	bin := o.binary
	if bin == "" && (want("binary") || want("stalled") || want("fleet") || want("timeline")) {
		done := step("go build ./cmd/aviso-bridge")
		dir, err := os.MkdirTemp("", "aviso-bench-bin-")
		if err != nil {
			return nil, figs, err
		}
		defer os.RemoveAll(dir)
		if bin, err = e2ebench.BuildBinary(ctx, dir); err != nil {
			return nil, figs, err
		}
		done()
	}
	if want("binary") {
		done := step("aviso-bridge binary into JetStream")
		r, err := e2ebench.Binary(ctx, e2ebench.BinaryConfig{Binary: bin, N: o.n})
		if err != nil {
			return nil, figs, fmt.Errorf("binary: %w", err)
		}
		done()
		what := fmt.Sprintf("aviso-bridge binary, replay into JetStream (%d notifications, env config, defaults)", o.n)
		rss := "unknown"
		if r.PeakRSS > 0 {
			rss = fixed(float64(r.PeakRSS)/(1<<20), 1)
		}
		rows = append(rows,
			row{what + ", rate from its bridge.started to bridge.stopped log lines", count(r.Throughput.Rate()), "", "", "msgs/s"},
			row{what + ", CPU of the bridge process (whole life) per message", us(r.Throughput.CPUPerMsg()), "", "", "µs CPU/msg"},
			row{what + ", peak RSS (VmHWM)", rss, "", "", "MiB"})
	}
	if want("stalled") {
		done := step("aviso-bridge binary, 200 × 0.9 MB into a stalled stdout")
		r, err := e2ebench.Stalled(ctx, e2ebench.StalledConfig{Binary: bin})
		if err != nil {
			return nil, figs, fmt.Errorf("stalled: %w", err)
		}
		done()
		what := "aviso-bridge binary, replay of 200 × 0.9 MB notifications into SINK=stdout with stdout a pipe nobody reads (window defaults)"
		rss := "unknown"
		if r.PeakRSS > 0 {
			rss = fixed(float64(r.PeakRSS)/(1<<20), 1)
		}
		stop := fixed(r.Stop.Seconds(), 2)
		if r.ExitErr != nil {
			stop += " (" + r.ExitErr.Error() + ")"
		}
		rows = append(rows,
			row{what + ", peak RSS (VmHWM)", rss, "", "", "MiB"},
			row{"Same run: SIGTERM to exit, BRIDGE_SHUTDOWN_TIMEOUT=3s", stop, "", "", "s"})
	}
	if want("fleet") {
		fr, err := fleetRows(ctx, bin, o.quick, step)
		if err != nil {
			return nil, figs, err
		}
		rows = append(rows, fr...)
	}
	if want("timeline") {
		tr, tl, err := timelineRows(ctx, bin, step)
		if err != nil {
			return nil, figs, err
		}
		rows, figs.timeline = append(rows, tr...), &tl
	}
	return rows, figs, nil
}

// cpuRow compares the process's CPU time per message (servers and brokers
// in process included), which other load on the machine disturbs less than
// wall time.
func cpuRow(what string, bridge, baseline e2ebench.Throughput) row {
	return row{what + ": process CPU per message (servers and broker in process included)",
		us(bridge.CPUPerMsg()), us(baseline.CPUPerMsg()),
		ratio(float64(bridge.CPUPerMsg()) / float64(max(baseline.CPUPerMsg(), 1))), "µs CPU/msg"}
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond)) }

func table(rows []row) string {
	var b strings.Builder
	b.WriteString("| measurement | bridge | baseline | ratio | unit |\n|---|---:|---:|---:|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.what, r.bridge, r.baseline, r.ratio, r.unit)
	}
	return b.String()
}

// count formats a rate as an integer with thousands separators.
func count(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func fixed(v float64, prec int) string { return fmt.Sprintf("%.*f", prec, v) }

func ratio(v float64) string { return fmt.Sprintf("%.2f", v) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// machine is the line that says where the numbers come from.
func machine(now time.Time) string {
	return fmt.Sprintf("%s, %s %s/%s, CPU %s, %d cores (GOMAXPROCS %d)",
		now.UTC().Format("2006-01-02 15:04 MST"), runtime.Version(), runtime.GOOS, runtime.GOARCH,
		cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0))
}

// cpuModel is the first "model name" of /proc/cpuinfo ("unknown" elsewhere).
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
