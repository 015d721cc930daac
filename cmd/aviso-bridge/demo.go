package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

const demoStream = "AVISO"

// cmdDemo runs the whole product on one machine with nothing installed: an
// in-process aviso-compatible server publishing sample notifications, an
// embedded nats-server with JetStream, and the bridge between them; then it
// reads the stream back and prints a summary.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	count := fs.Int("count", 2000, "publish this many notifications, then stop once all have landed")
	rate := fs.Int("rate", 500, "notifications published per second")
	logLevel := fs.String("log-level", "warn", "bridge log level (logs go to stderr)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if *count <= 0 || *rate <= 0 {
		fmt.Fprintln(stderr, "demo: --count and --rate must be positive")
		return exitConfig
	}
	if err := runDemo(ctx, *count, *rate, *logLevel, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return exitRuntime
	}
	return exitOK
}

func runDemo(sigCtx context.Context, count, rate int, logLevel string, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "aviso-bridge-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// 1. NATS with JetStream, in process.
	ns, err := startDemoNATS(filepath.Join(dir, "jetstream"))
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()

	// 2. aviso, in process.
	av, err := avisotest.New(avisotest.WithHeartbeat(5*time.Second), avisotest.WithBaseURL("http://aviso.demo"))
	if err != nil {
		return fmt.Errorf("aviso test server: %w", err)
	}
	defer av.Close()

	fmt.Fprintf(stdout, "aviso-bridge demo\n  aviso test server  %s (event type mars)\n  NATS JetStream     %s (stream %s, subjects aviso.>)\n  publishing         %d notifications at %d/s\n\n",
		av.URL, ns.ClientURL(), demoStream, count, rate)

	// 3. The bridge, configured exactly as an operator would, by variables.
	cfg, err := loadConfig(sigCtx, envconfig.MapLookuper(demoEnv(av.URL, ns.ClientURL(), dir, logLevel)))
	if err != nil {
		return err
	}
	b, err := startDemoBridge(cfg, newLogger(stderr, cfg.LogLevel, cfg.LogFormat, nil), stdout)
	if err != nil {
		return err
	}
	defer b.stop()

	// 4. Publish sample notifications at the asked rate.
	pubCtx, stopPub := context.WithCancel(sigCtx)
	defer stopPub()
	published := publishDemo(pubCtx, av, count, rate)

	// 5. Progress until everything published has been committed.
	p := demoProgress{bridge: b, av: av, published: published, stopPub: stopPub, out: stdout}
	lastPublished, err := p.follow(sigCtx)
	if err != nil {
		return err
	}
	b.stop()
	if err := <-b.done; err != nil {
		return fmt.Errorf("bridge: %w", err)
	}

	// 6. Read the stream back and compare with what aviso published.
	sum, err := readBack(ns.ClientURL(), lastPublished)
	if err != nil {
		return err
	}
	return sum.print(stdout, lastPublished)
}

// startDemoNATS starts an embedded nats-server with JetStream storing under dir.
func startDemoNATS(dir string) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, errors.New("embedded nats-server did not start")
	}
	return ns, nil
}

// demoEnv is the demo bridge's environment.
func demoEnv(avisoURL, natsURL, dir, logLevel string) map[string]string {
	return map[string]string{
		"AVISO_URL":            avisoURL,
		"AVISO_EVENT_TYPE":     "mars",
		"AVISO_FROM_ID":        "1",
		"SINK":                 "jetstream",
		"NATS_URL":             natsURL,
		"NATS_SUBJECT":         "aviso.{event_type}.{identifier.class}",
		"NATS_STREAM":          demoStream,
		"NATS_STREAM_CREATE":   "true",
		"NATS_STREAM_SUBJECTS": "aviso.>",
		"CHECKPOINT_FILE":      filepath.Join(dir, "checkpoint.json"),
		"CHECKPOINT_INTERVAL":  "200ms",
		"BRIDGE_HTTP_ADDR":     "",
		"LOG_FORMAT":           "text",
		"LOG_LEVEL":            logLevel,
	}
}

// demoBridge is the bridge the demo runs: done receives runBridge's result.
type demoBridge struct {
	run  *running
	done chan error
	stop context.CancelFunc
}

// startDemoBridge starts runBridge and waits until it runs.
func startDemoBridge(cfg *Config, log *slog.Logger, stdout io.Writer) (*demoBridge, error) {
	ctx, stop := context.WithCancel(context.Background())
	b := &demoBridge{done: make(chan error, 1), stop: stop}
	runningc := make(chan *running, 1)
	go func() {
		b.done <- runBridge(ctx, cfg, log, stdout, func(r *running) { runningc <- r })
	}()
	select {
	case b.run = <-runningc:
		return b, nil
	case err := <-b.done:
		stop()
		return nil, fmt.Errorf("bridge did not start: %w", err)
	}
}

// publishDemo publishes count sample notifications at rate per second until
// ctx ends; the returned channel receives the last sequence published.
func publishDemo(ctx context.Context, av *avisotest.Server, count, rate int) <-chan uint64 {
	published := make(chan uint64, 1)
	go func() {
		var last uint64
		defer func() { published <- last }()
		tick := time.NewTicker(time.Second / time.Duration(min(rate, 1000)))
		defer tick.Stop()
		per := max(1, rate/1000)
		classes := []string{"od", "rd", "ea"}
		for i := 0; i < count; {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for j := 0; j < per && i < count; j, i = j+1, i+1 {
				step := strconv.Itoa((i % 40) * 6)
				last = av.Publish("mars", map[string]string{
					"class": classes[i%len(classes)], "expver": "0001", "domain": "g", "stream": "oper",
					"date": time.Now().UTC().Format("20060102"), "time": "0000", "step": step,
				}, map[string]any{"note": "data is ready", "step": step, "n": i + 1})
			}
		}
	}()
	return published
}

// demoProgress prints the bridge's progress until everything published has
// been committed.
type demoProgress struct {
	bridge    *demoBridge
	av        *avisotest.Server
	published <-chan uint64
	stopPub   context.CancelFunc
	out       io.Writer
}

// follow returns the last sequence published once the checkpoint has
// reached it (or 30 s after the last publish); a first signal stops the
// publisher and lets the bridge catch up.
func (p *demoProgress) follow(sigCtx context.Context) (uint64, error) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastPublished uint64
	pubDone := false
	var deadline <-chan time.Time
	signalled := sigCtx.Done()
	for {
		if pubDone && p.bridge.run.Pipeline.Status().Checkpoint.Sequence >= lastPublished {
			return lastPublished, nil
		}
		select {
		case lastPublished = <-p.published:
			pubDone = true
			deadline = time.After(30 * time.Second)
			continue
		case <-signalled:
			signalled = nil
			p.stopPub()
			fmt.Fprintln(p.out, "\ninterrupted: stopping the publisher, letting the bridge catch up (Ctrl-C again to quit now)")
			continue
		case err := <-p.bridge.done:
			return 0, fmt.Errorf("bridge stopped: %w", err)
		case <-deadline:
			fmt.Fprintln(p.out, "the bridge did not catch up within 30 s of the last publish; stopping")
			return lastPublished, nil
		case <-tick.C:
		}
		st := p.bridge.run.Pipeline.Status()
		fmt.Fprintf(p.out, "  published %6d   committed up to %6d   in flight %4d\n",
			p.av.LastSequence("mars"), st.Checkpoint.Sequence, st.InFlight)
	}
}

type demoSummary struct {
	messages, duplicates, missing, outOfOrder int
	first, last, prev                         uint64
	seen                                      map[uint64]int
	subjects                                  []subjectCount
}

type subjectCount struct {
	name string
	n    int
}

// add counts one stream message carrying sequence seq on subject.
func (s *demoSummary) add(seq uint64, subject string) {
	s.messages++
	if s.seen[seq] > 0 {
		s.duplicates++
	} else if seq < s.prev {
		s.outOfOrder++
	}
	s.seen[seq]++
	s.prev = max(s.prev, seq)
	if s.first == 0 || seq < s.first {
		s.first = seq
	}
	s.last = max(s.last, seq)
	for i := range s.subjects {
		if s.subjects[i].name == subject {
			s.subjects[i].n++
			return
		}
	}
	s.subjects = append(s.subjects, subjectCount{name: subject, n: 1})
}

// print writes the summary; an error when a notification is missing or out
// of order.
func (s *demoSummary) print(w io.Writer, published uint64) error {
	fmt.Fprintf(w, "\nsummary (read back from JetStream stream %s)\n", demoStream)
	fmt.Fprintf(w, "  published by aviso   %d (sequences 1..%d)\n", published, published)
	fmt.Fprintf(w, "  messages in stream   %d\n", s.messages)
	fmt.Fprintf(w, "  first sequence       %d\n  last sequence        %d\n", s.first, s.last)
	fmt.Fprintf(w, "  missing              %d\n  duplicates           %d\n  out of order         %d\n", s.missing, s.duplicates, s.outOfOrder)
	for _, sc := range s.subjects {
		fmt.Fprintf(w, "  subject %-22s %d\n", sc.name, sc.n)
	}
	if s.missing != 0 || s.outOfOrder != 0 {
		return fmt.Errorf("%d notifications missing, %d out of order", s.missing, s.outOfOrder)
	}
	fmt.Fprintln(w, "\nevery notification landed once, in order. Next: run the bridge against your aviso-server and NATS or Kafka (see README).")
	return nil
}

// readBack reads every message of the demo stream and checks sequences
// 1..published are there once, in order.
func readBack(url string, published uint64) (*demoSummary, error) {
	sum := &demoSummary{seen: map[uint64]int{}}
	nc, err := natsgo.Connect(url)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, demoStream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", demoStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	for i := info.State.FirstSeq; i <= info.State.LastSeq && info.State.Msgs > 0; i++ {
		m, err := s.GetMsg(ctx, i)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		seq, err := msgSequence(m.Header.Get("Nats-Msg-Id"))
		if err != nil {
			return nil, fmt.Errorf("stream message %d: %w", i, err)
		}
		sum.add(seq, m.Subject)
	}
	for q := uint64(1); q <= published; q++ {
		if sum.seen[q] == 0 {
			sum.missing++
		}
	}
	return sum, nil
}

// msgSequence is the aviso sequence of a Nats-Msg-Id ("mars@42").
func msgSequence(id string) (uint64, error) {
	at := strings.LastIndexByte(id, '@')
	if at < 0 {
		return 0, fmt.Errorf("Nats-Msg-Id %q has no sequence", id)
	}
	seq, err := strconv.ParseUint(id[at+1:], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("Nats-Msg-Id %q has no sequence", id)
	}
	return seq, nil
}
