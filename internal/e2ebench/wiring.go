package e2ebench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/metrics"
	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// Pipeline settings at cmd/aviso-bridge's defaults (CHECKPOINT_INTERVAL,
// BRIDGE_SHUTDOWN_TIMEOUT).
const (
	checkpointInterval = time.Second
	shutdownTimeout    = 20 * time.Second
)

// sinkOpener opens the sink of one in-process bridge, as openSink in
// cmd/aviso-bridge does.
type sinkOpener func(ctx context.Context, m *bridge.Metrics) (bridge.Sink, error)

// inprocConfig describes one in-process bridge.
type inprocConfig struct {
	avisoURL  string
	eventType string
	mode      aviso.Mode
	fromID    *uint64 // AVISO_FROM_ID; nil: live
	window    int     // BRIDGE_MAX_IN_FLIGHT
	dir       string  // where the checkpoint file goes
	openSink  sinkOpener
	logger    *slog.Logger
	// expect is the number of acknowledgements the run waits for;
	// ackTimes records when each was counted.
	expect   int
	ackTimes bool
}

// inproc is one bridge wired as cmd/aviso-bridge's runBridge wires it:
// Prometheus metrics on a private registry, the file checkpoint store, the
// sink, bridge.NewPipeline and supervisor.New with the same settings. Only
// the acknowledged-notifications counter is wrapped, to timestamp acks.
type inproc struct {
	sink   bridge.Sink
	store  bridge.Store
	pipe   *bridge.Pipeline
	sup    *supervisor.Supervisor
	acks   *ackClock
	idle   func() // closes the aviso client's idle connections
	expect int
}

func newInproc(ctx context.Context, cfg inprocConfig) (b *inproc, err error) {
	log := cfg.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := metrics.New(prometheus.NewRegistry())
	acks := newAckClock(m.NotificationsPublished, cfg.expect, cfg.ackTimes)
	m.NotificationsPublished = acks

	identifier := json.RawMessage("{}") // AVISO_IDENTIFIER default
	key, err := bridge.CheckpointKey(cfg.avisoURL, cfg.eventType, identifier)
	if err != nil {
		return nil, err
	}
	store, err := checkpoint.OpenFile(filepath.Join(cfg.dir, "checkpoint-"+cfg.eventType+".json"), key)
	if err != nil {
		return nil, err
	}
	b = &inproc{store: store, acks: acks, expect: cfg.expect}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	cp, found, err := store.Load(ctx)
	if err != nil {
		return nil, err
	}
	if b.sink, err = cfg.openSink(ctx, m); err != nil {
		return nil, err
	}
	start := supervisor.Start{FromID: cfg.fromID}
	if found {
		start = supervisor.Start{Checkpoint: cp.Sequence, HasCheckpoint: true}
	}
	if pr, ok := b.sink.(bridge.PositionReporter); ok {
		if seq, ok, err := pr.LastStored(ctx); err == nil && ok && (!start.HasCheckpoint || seq > start.Checkpoint) {
			start = supervisor.Start{Checkpoint: seq, HasCheckpoint: true}
		}
	}
	pcfg := bridge.PipelineConfig{
		MaxInFlight:        cfg.window,
		CheckpointInterval: checkpointInterval,
		ShutdownTimeout:    shutdownTimeout,
		OnReject:           bridge.RejectFail,
		Logger:             log,
		Metrics:            m,
	}
	if found {
		pcfg.Start = &cp
	}
	if b.pipe, err = bridge.NewPipeline(b.sink, store, pcfg); err != nil {
		return nil, err
	}
	client, idle := newAvisoClient(cfg.avisoURL)
	b.idle = idle
	b.sup, err = supervisor.New(supervisor.Config{
		Client:     client,
		Mode:       cfg.mode,
		EventType:  cfg.eventType,
		Identifier: identifier,
		Start:      start,
		Pipeline:   b.pipe,
		Logger:     log,
		Metrics:    m,
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// close releases the sink, the store and the client's connections.
func (b *inproc) close() {
	if b.sink != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		_ = b.sink.Close(ctx)
		cancel()
	}
	_ = b.store.Close()
	if b.idle != nil {
		b.idle()
	}
}

// replay runs a replay-only bridge (AVISO_MODE=replay) to its end, as
// runBridge does: the supervisor returns nil at end_of_stream, the pipeline
// input is closed and Run drains. It returns the time from the start of
// the supervisor (which connects) to the last acknowledgement, and the
// process's CPU time until the pipeline returned.
func (b *inproc) replay(ctx context.Context) (Throughput, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	pdone := make(chan error, 1)
	go func() { pdone <- b.pipe.Run(runCtx) }()
	sdone := make(chan error, 1)
	cpu, start := processCPU(), time.Now()
	go func() { sdone <- b.sup.Run(runCtx) }()
	var serr, perr error
	select {
	case serr = <-sdone:
		if serr == nil {
			b.pipe.CloseInput()
		} else {
			cancel()
		}
		perr = <-pdone
	case perr = <-pdone:
		cancel()
		serr = <-sdone
	}
	cpu = processCPU() - cpu
	if err := errors.Join(serr, perr); err != nil {
		return Throughput{}, fmt.Errorf("bridge: %w", err)
	}
	if err := b.checkDelivered(); err != nil {
		return Throughput{}, err
	}
	return Throughput{Messages: b.expect, Elapsed: b.acks.lastAt().Sub(start), CPU: cpu}, nil
}

// live runs a watch (AVISO_MODE=watch): once ready returns, feed publishes;
// then it waits for the expected acknowledgements and stops the bridge as
// a signal would. ready and feed get a context that ends as soon as the
// supervisor or the pipeline stops.
func (b *inproc) live(ctx context.Context, ready, feed func(context.Context) error) error {
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pdone := make(chan error, 1)
	go func() {
		err := b.pipe.Run(runCtx)
		cancel(fmt.Errorf("pipeline stopped: %w", err))
		pdone <- err
	}()
	sdone := make(chan error, 1)
	go func() {
		err := b.sup.Run(runCtx)
		cancel(fmt.Errorf("supervisor stopped: %w", err))
		sdone <- err
	}()
	err := ready(runCtx)
	if err == nil {
		err = feed(runCtx)
	}
	if err == nil {
		select {
		case <-b.acks.reached:
		case <-runCtx.Done():
			err = fmt.Errorf("waiting for %d acknowledgements (have %d): %w", b.expect, b.acks.count(), context.Cause(runCtx))
		}
	}
	cancel(errStopped)
	serr, perr := <-sdone, <-pdone
	if errors.Is(serr, context.Canceled) {
		serr = nil
	}
	if err := errors.Join(err, serr, perr); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	return b.checkDelivered()
}

// errStopped is the cause of a live run's end.
var errStopped = errors.New("measurement over")

func (b *inproc) checkDelivered() error {
	if got := b.acks.count(); got != b.expect {
		return fmt.Errorf("bridge: %d notifications acknowledged, want %d", got, b.expect)
	}
	if st := b.pipe.Status(); !st.CheckpointFound || st.Checkpoint.Sequence != uint64(b.expect) {
		return fmt.Errorf("bridge: checkpoint %d (found %v), want %d", st.Checkpoint.Sequence, st.CheckpointFound, b.expect)
	}
	return nil
}

// ackClock wraps the notifications_published_total counter, which the
// pipeline increments once per acknowledged notification, in receipt
// order, on its Run goroutine: it counts, remembers when the last one came
// and, when asked, when each one came.
type ackClock struct {
	inner   bridge.Counter
	n       atomic.Int64
	last    atomic.Int64 // unix nanoseconds
	times   []int64      // times[k]: when the (k+1)-th was counted
	target  int64
	reached chan struct{}
}

func newAckClock(inner bridge.Counter, target int, keepTimes bool) *ackClock {
	c := &ackClock{inner: inner, target: int64(target), reached: make(chan struct{})}
	if keepTimes {
		c.times = make([]int64, target)
	}
	return c
}

func (c *ackClock) Inc() { c.add(1); c.inner.Inc() }

func (c *ackClock) Add(v float64) { c.add(int64(v)); c.inner.Add(v) }

func (c *ackClock) add(k int64) {
	now := time.Now().UnixNano()
	n := c.n.Add(k)
	for i := n - k; i < n && i < int64(len(c.times)); i++ {
		c.times[i] = now
	}
	c.last.Store(now)
	if n >= c.target && n-k < c.target {
		close(c.reached)
	}
}

func (c *ackClock) count() int { return int(c.n.Load()) }

func (c *ackClock) lastAt() time.Time { return time.Unix(0, c.last.Load()) }
