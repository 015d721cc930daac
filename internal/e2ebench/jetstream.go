package e2ebench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	natssink "github.com/aviso-bridge/aviso-bridge/sinks/nats"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// Streams of the JetStream measurements: the bridge publishes to
// aviso.<event type> (NATS_SUBJECT's default), the bare loop the same
// messages to bare.<event type> in a stream of its own, so that the
// message ids (the CloudEvent ids) are new to each stream.
const (
	bridgeStream = "AVISO"
	bareStream   = "BARE"
)

// ThroughputConfig configures JetStream and Kafka.
type ThroughputConfig struct {
	// N is the number of notifications through the bridge, and again
	// through the baseline (default 100000).
	N int
	// Rounds splits N into alternating rounds of bridge and baseline
	// (default DefaultRounds).
	Rounds int
	// FrameSize is the SSE event size of a notification (default
	// DefaultFrameSize).
	FrameSize int
	// Window is BRIDGE_MAX_IN_FLIGHT and NATS_MAX_PENDING, and the bare
	// loops' window (default DefaultWindow).
	Window int
	// Dir holds the JetStream store, Kafka data and checkpoint files
	// (default: a temporary directory removed at the end).
	Dir string
	// Logger receives the bridge's logs (nil: discarded).
	Logger *slog.Logger
}

func (c ThroughputConfig) withDefaults() ThroughputConfig {
	if c.N <= 0 {
		c.N = 100_000
	}
	if c.Rounds <= 0 {
		c.Rounds = DefaultRounds
	}
	c.Rounds = min(c.Rounds, c.N)
	if c.FrameSize <= 0 {
		c.FrameSize = DefaultFrameSize
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	return c
}

// Throughput is Messages delivered in Elapsed (the sum over rounds), using
// CPU of the whole process (the servers and brokers in it included; zero
// where unknown). CPU time is less disturbed than wall time by other load on
// a shared machine.
type Throughput struct {
	Messages int
	Elapsed  time.Duration
	CPU      time.Duration
}

// Rate is messages per second.
func (t Throughput) Rate() float64 {
	if t.Elapsed <= 0 {
		return 0
	}
	return float64(t.Messages) / t.Elapsed.Seconds()
}

// CPUPerMsg is the process's CPU time per message.
func (t Throughput) CPUPerMsg() time.Duration {
	if t.Messages == 0 {
		return 0
	}
	return t.CPU / time.Duration(t.Messages)
}

func (t *Throughput) add(o Throughput) {
	t.Messages += o.Messages
	t.Elapsed += o.Elapsed
	t.CPU += o.CPU
}

// ThroughputResult is one end-to-end throughput measurement.
type ThroughputResult struct {
	// Bridge is avisotest -> aviso -> supervisor -> pipeline -> sink, from
	// the supervisor's start (it connects) to the pipeline's last
	// acknowledgement.
	Bridge Throughput
	// Bare is the bare client publishing the same messages with the same
	// window, from the first publish to the last acknowledgement.
	Bare Throughput
	// Unbounded is, for Kafka, the bare Writer without a window (zero for
	// JetStream, whose client always bounds its pending publishes).
	Unbounded Throughput
	// FrameBytes is the average SSE event size of the notifications.
	FrameBytes float64
	// Rounds holds each round's share of Bridge, Bare and Unbounded.
	Rounds []ThroughputResult
}

// Ratio is Bridge's rate over Bare's.
func (r ThroughputResult) Ratio() float64 {
	if r.Bare.Rate() == 0 {
		return 0
	}
	return r.Bridge.Rate() / r.Bare.Rate()
}

// JetStream measures the bridge into JetStream (embedded nats-server, file
// storage, Nats-Msg-Id) next to a bare jetstream PublishMsgAsync loop of
// the same messages with the same window (natstest.BareMessages and
// BarePublishAsync, as natstest.BareRate), in
// alternating rounds. Both streams are checked to hold N messages.
func JetStream(ctx context.Context, cfg ThroughputConfig) (ThroughputResult, error) {
	cfg = cfg.withDefaults()
	var res ThroughputResult
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
	if err := createStreams(ctx, url, map[string]string{bridgeStream: "aviso.>", bareStream: "bare.>"}); err != nil {
		return res, err
	}
	sizes := chunks(cfg.N, cfg.Rounds)
	pad, err := replayPad(ctx, sizes[0], cfg.FrameSize)
	if err != nil {
		return res, err
	}
	res.Rounds = make([]ThroughputResult, len(sizes))
	var frames frameStats
	for r, size := range sizes {
		et := roundEventType(r)
		src, round, err := roundSource(ctx, et, size, pad)
		if err != nil {
			return res, err
		}
		frames.add(round)
		this := &res.Rounds[r]
		bare := func() error {
			t, err := bareJetStream(ctx, url, "bare."+et, round, cfg.Window)
			if err != nil {
				return fmt.Errorf("bare PublishAsync, round %d: %w", r, err)
			}
			this.Bare = t
			return nil
		}
		viaBridge := func() error {
			t, err := runReplay(ctx, src.URL, et, len(round), cfg.Window, dir, cfg.Logger, jetStreamOpener(url, cfg.Window, cfg.Logger))
			if err != nil {
				return fmt.Errorf("bridge into JetStream, round %d: %w", r, err)
			}
			this.Bridge = t
			return nil
		}
		err = alternate(r, bare, viaBridge)
		src.Close()
		if err != nil {
			return res, err
		}
		res.Bridge.add(this.Bridge)
		res.Bare.add(this.Bare)
	}
	res.FrameBytes = frames.mean()
	for _, s := range []string{bridgeStream, bareStream} {
		if got, err := streamMsgs(ctx, url, s); err != nil {
			return res, err
		} else if got != uint64(cfg.N) {
			return res, fmt.Errorf("stream %s holds %d messages, want %d", s, got, cfg.N)
		}
	}
	return res, nil
}

// bareJetStream is natstest.BareRate with the CPU time measured too: the
// binary-mode messages of ns (the sink's headers) published on subject with
// PublishMsgAsync, window pending at most, on a connection of its own,
// timed from the first publish to the last ack.
func bareJetStream(ctx context.Context, url, subject string, ns []*bridge.Notification, window int) (Throughput, error) {
	nc, err := natsgo.Connect(url)
	if err != nil {
		return Throughput{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(window))
	if err != nil {
		return Throughput{}, err
	}
	msgs := natstest.BareMessages(ns, subject)
	cpu, start := processCPU(), time.Now()
	if err := natstest.BarePublishAsync(ctx, js, msgs); err != nil {
		return Throughput{}, err
	}
	return Throughput{Messages: len(msgs), Elapsed: time.Since(start), CPU: processCPU() - cpu}, nil
}

// alternate runs the functions in a rotating order (round r starts with
// the (r mod len)-th), so that none is always first after the setup.
func alternate(r int, fs ...func() error) error {
	for i := range fs {
		if err := fs[(r+i)%len(fs)](); err != nil {
			return err
		}
	}
	return nil
}

// replayPad is the payload note that makes a replayed notification of a
// round of size notifications frameSize bytes on the wire.
func replayPad(ctx context.Context, size, frameSize int) (string, error) {
	return payloadPad(ctx, roundEventType(0), aviso.EventReplay, digits(size), frameSize, replayOptions()...)
}

func replayOptions() []avisotest.Option {
	return []avisotest.Option{avisotest.WithClock(fixedClock), avisotest.WithReplayBatch(1000, 0)}
}

// roundSource starts an avisotest server holding n notifications of
// eventType (payload note pad), and returns it with the notifications as
// the supervisor forwards them. A server per round keeps the process's
// heap, which the garbage collector marks in every cycle, to one round.
func roundSource(ctx context.Context, eventType string, n int, pad string) (*avisotest.Server, []*bridge.Notification, error) {
	src, err := avisotest.New(replayOptions()...)
	if err != nil {
		return nil, nil, fmt.Errorf("aviso test server: %w", err)
	}
	publishN(src, eventType, n, pad)
	c, idle := newAvisoClient(src.URL)
	defer idle()
	notes, err := readNotifications(ctx, c, eventType, n)
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	return src, notes, nil
}

// frameStats averages the replay SSE event size of notifications.
type frameStats struct{ bytes, count int }

func (f *frameStats) add(ns []*bridge.Notification) {
	for _, n := range ns {
		f.bytes += len("event: replay\ndata: \n\n") + len(n.CloudEvent)
		f.count++
	}
}

func (f *frameStats) mean() float64 {
	if f.count == 0 {
		return 0
	}
	return float64(f.bytes) / float64(f.count)
}

// runReplay builds a bridge replaying eventType from sequence 1 into the
// sink of open (setup, not timed) and runs it to the end.
func runReplay(ctx context.Context, avisoURL, eventType string, n, window int, dir string, log *slog.Logger, open sinkOpener) (Throughput, error) {
	from := uint64(1)
	b, err := newInproc(ctx, inprocConfig{
		avisoURL: avisoURL, eventType: eventType, mode: aviso.Replay, fromID: &from,
		window: window, dir: dir, openSink: open, logger: log, expect: n,
	})
	if err != nil {
		return Throughput{}, err
	}
	defer b.close()
	return b.replay(ctx)
}

// jetStreamOpener opens the JetStream sink as openSink in cmd/aviso-bridge
// does with SINK=jetstream and every other variable at its default
// (NATS_STREAM unset: the stream capturing aviso.> is found by subject).
func jetStreamOpener(url string, window int, log *slog.Logger) sinkOpener {
	return func(ctx context.Context, _ *bridge.Metrics) (bridge.Sink, error) {
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		nc := natssink.Config{
			ConnConfig:         natssink.ConnConfig{URL: url},
			Mode:               natssink.ModeJetStream,
			Format:             natssink.FormatBinary,
			Subject:            natssink.DefaultSubject,
			DLQSubject:         natssink.DefaultDLQSubject,
			MaxPending:         window,
			MaxInFlight:        window,
			PublishTimeout:     natssink.DefaultPublishTimeout,
			CheckpointInterval: checkpointInterval,
			ShutdownTimeout:    shutdownTimeout,
		}
		if err := nc.Validate(); err != nil {
			return nil, err
		}
		return natssink.New(ctx, nc, natssink.Options{Logger: log})
	}
}

// startNATS starts an embedded nats-server with JetStream storing in dir.
func startNATS(dir string) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		stopNATS(s)
		return nil, errors.New("embedded nats-server: not ready after 10s")
	}
	return s, nil
}

func stopNATS(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// createStreams creates file-storage streams (name -> subject) with
// JetStream's default 2-minute duplicate window, which is also the window
// the JetStream sink creates streams with at its defaults.
func createStreams(ctx context.Context, url string, streams map[string]string) error {
	nc, err := natsgo.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for name, subj := range streams {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj},
			Storage: jetstream.FileStorage, Duplicates: natssink.MinDuplicateWindow})
		if err != nil {
			return fmt.Errorf("create stream %s: %w", name, err)
		}
	}
	return nil
}

// streamMsgs returns the number of messages stored in stream.
func streamMsgs(ctx context.Context, url, stream string) (uint64, error) {
	var n uint64
	err := withStream(ctx, url, stream, func(_ jetstream.Stream, info *jetstream.StreamInfo) error {
		n = info.State.Msgs
		return nil
	})
	return n, err
}

// withStream calls f with stream on a connection of its own, and its info.
func withStream(ctx context.Context, url, stream string, f func(jetstream.Stream, *jetstream.StreamInfo) error) error {
	nc, err := natsgo.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	return f(st, info)
}
