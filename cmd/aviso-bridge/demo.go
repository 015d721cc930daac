package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: filepath.Join(dir, "jetstream"), NoLog: true, NoSigs: true})
	if err != nil {
		return fmt.Errorf("embedded nats-server: %w", err)
	}
	go ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		return errors.New("embedded nats-server did not start")
	}

	// 2. aviso, in process.
	av, err := avisotest.New(avisotest.WithHeartbeat(5*time.Second), avisotest.WithBaseURL("http://aviso.demo"))
	if err != nil {
		return fmt.Errorf("aviso test server: %w", err)
	}
	defer av.Close()

	fmt.Fprintf(stdout, "aviso-bridge demo\n  aviso test server  %s (event type mars)\n  NATS JetStream     %s (stream %s, subjects aviso.>)\n  publishing         %d notifications at %d/s\n\n",
		av.URL, ns.ClientURL(), demoStream, count, rate)

	// 3. The bridge, configured exactly as an operator would, by variables.
	env := map[string]string{
		"AVISO_URL":            av.URL,
		"AVISO_EVENT_TYPE":     "mars",
		"AVISO_FROM_ID":        "1",
		"SINK":                 "jetstream",
		"NATS_URL":             ns.ClientURL(),
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
	cfg, err := loadConfig(sigCtx, envconfig.MapLookuper(env))
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat, nil)

	bridgeCtx, stopBridge := context.WithCancel(context.Background())
	defer stopBridge()
	runningc := make(chan *running, 1)
	bdone := make(chan error, 1)
	go func() {
		bdone <- runBridge(bridgeCtx, cfg, log, stdout, func(r *running) { runningc <- r })
	}()
	var r *running
	select {
	case r = <-runningc:
	case err := <-bdone:
		return fmt.Errorf("bridge did not start: %w", err)
	}

	// 4. Publish sample notifications at the asked rate.
	pubCtx, stopPub := context.WithCancel(sigCtx)
	defer stopPub()
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
			case <-pubCtx.Done():
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

	// 5. Progress until everything published has been committed.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastPublished uint64
	pubDone := false
	interrupted := false
	var deadline <-chan time.Time
	for {
		st := r.Pipeline.Status()
		if pubDone && st.Checkpoint.Sequence >= lastPublished {
			break
		}
		select {
		case lastPublished = <-published:
			pubDone = true
			if deadline == nil {
				deadline = time.After(30 * time.Second)
			}
			continue
		case <-sigCtx.Done():
			if !interrupted {
				interrupted = true
				stopPub()
				fmt.Fprintln(stdout, "\ninterrupted: stopping the publisher, letting the bridge catch up (Ctrl-C again to quit now)")
			}
			sigCtx = context.Background()
			continue
		case err := <-bdone:
			return fmt.Errorf("bridge stopped: %w", err)
		case <-deadline:
			fmt.Fprintln(stdout, "the bridge did not catch up within 30 s of the last publish; stopping")
			goto done
		case <-tick.C:
		}
		st = r.Pipeline.Status()
		fmt.Fprintf(stdout, "  published %6d   committed up to %6d   in flight %4d\n",
			av.LastSequence("mars"), st.Checkpoint.Sequence, st.InFlight)
	}
done:
	stopBridge()
	if err := <-bdone; err != nil {
		return fmt.Errorf("bridge: %w", err)
	}

	// 6. Read the stream back and compare with what aviso published.
	sum, err := readBack(ns.ClientURL(), lastPublished)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nsummary (read back from JetStream stream %s)\n", demoStream)
	fmt.Fprintf(stdout, "  published by aviso   %d (sequences 1..%d)\n", lastPublished, lastPublished)
	fmt.Fprintf(stdout, "  messages in stream   %d\n", sum.messages)
	fmt.Fprintf(stdout, "  first sequence       %d\n  last sequence        %d\n", sum.first, sum.last)
	fmt.Fprintf(stdout, "  missing              %d\n  duplicates           %d\n  out of order         %d\n", sum.missing, sum.duplicates, sum.outOfOrder)
	for _, s := range sum.subjects {
		fmt.Fprintf(stdout, "  subject %-22s %d\n", s.name, s.n)
	}
	if sum.missing != 0 || sum.outOfOrder != 0 {
		return fmt.Errorf("%d notifications missing, %d out of order", sum.missing, sum.outOfOrder)
	}
	fmt.Fprintln(stdout, "\nevery notification landed once, in order. Next: run the bridge against your aviso-server and NATS or Kafka (see README).")
	return nil
}

type demoSummary struct {
	messages, duplicates, missing, outOfOrder int
	first, last                               uint64
	subjects                                  []struct {
		name string
		n    int
	}
}

// readBack reads every message of the demo stream and checks sequences
// 1..published are there once, in order.
func readBack(url string, published uint64) (demoSummary, error) {
	var sum demoSummary
	nc, err := natsgo.Connect(url)
	if err != nil {
		return sum, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return sum, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, demoStream)
	if err != nil {
		return sum, fmt.Errorf("stream %s: %w", demoStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return sum, err
	}
	seen := map[uint64]int{}
	subjects := map[string]int{}
	var order []string
	var prev uint64
	for i := info.State.FirstSeq; i <= info.State.LastSeq && info.State.Msgs > 0; i++ {
		m, err := s.GetMsg(ctx, i)
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			return sum, err
		}
		id := m.Header.Get("Nats-Msg-Id")
		at := strings.LastIndexByte(id, '@')
		seq, err := strconv.ParseUint(id[at+1:], 10, 64)
		if at < 0 || err != nil {
			return sum, fmt.Errorf("stream message %d has Nats-Msg-Id %q", i, id)
		}
		sum.messages++
		if seen[seq] > 0 {
			sum.duplicates++
		} else if seq < prev {
			sum.outOfOrder++
		}
		seen[seq]++
		if seq > prev {
			prev = seq
		}
		if sum.first == 0 || seq < sum.first {
			sum.first = seq
		}
		if seq > sum.last {
			sum.last = seq
		}
		if subjects[m.Subject] == 0 {
			order = append(order, m.Subject)
		}
		subjects[m.Subject]++
	}
	for q := uint64(1); q <= published; q++ {
		if seen[q] == 0 {
			sum.missing++
		}
	}
	for _, name := range order {
		sum.subjects = append(sum.subjects, struct {
			name string
			n    int
		}{name, subjects[name]})
	}
	return sum, nil
}
