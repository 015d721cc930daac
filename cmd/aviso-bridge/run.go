package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
	"github.com/aviso-bridge/aviso-bridge/metrics"
	kafkasink "github.com/aviso-bridge/aviso-bridge/sinks/kafka"
	natssink "github.com/aviso-bridge/aviso-bridge/sinks/nats"
	"github.com/aviso-bridge/aviso-bridge/sinks/stdout"
	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// running is what runBridge built, handed to an observer (the demo, tests)
// once the first listener runs: that listener's key, pipeline and
// supervisor, and every listener of the process.
type running struct {
	Key        string
	Pipeline   *bridge.Pipeline
	Supervisor *supervisor.Supervisor
	Registry   *prometheus.Registry
	units      []*unit
}

// uncommitted reports whether a listener may have acknowledged
// notifications that are not committed yet.
func (r *running) uncommitted() bool {
	for _, u := range r.units {
		if u.uncommitted() {
			return true
		}
	}
	return false
}

// stopClock is the one deadline of a stop: BRIDGE_SHUTDOWN_TIMEOUT counted
// from the signal, shared by the drain, the closing of the sink and the
// store, and the HTTP server.
type stopClock struct {
	timeout time.Duration
	mu      sync.Mutex
	at      time.Time // zero until ctx is done
}

func newStopClock(ctx context.Context, timeout time.Duration) (*stopClock, func() bool) {
	c := &stopClock{timeout: timeout}
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.at = time.Now().Add(timeout)
		c.mu.Unlock()
	})
	return c, stop
}

// context returns a context that ends at the stop deadline, or floor from
// now if that is later (so a healthy sink can still close cleanly); a stop
// that no signal started (a replay's end, a failure, a handover) gets the
// whole timeout.
func (c *stopClock) context(floor time.Duration) (context.Context, context.CancelFunc) {
	c.mu.Lock()
	at := c.at
	c.mu.Unlock()
	if at.IsZero() {
		at = time.Now().Add(c.timeout)
	}
	if earliest := time.Now().Add(floor); at.Before(earliest) {
		at = earliest
	}
	return context.WithDeadline(context.Background(), at)
}

// stopRequested reports whether ctx is done (a stop was requested).
func stopRequested(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// closeFloor is the least time the sink, the store and the HTTP server get
// to close once the stop deadline has passed.
const closeFloor = 200 * time.Millisecond

// startInterrupted reports a stop requested while the bridge was still
// starting (waiting for a broker): not a failure, exit 0.
func startInterrupted(ctx context.Context, err error, log *slog.Logger) bool {
	var ce *ConfigError
	if ctx.Err() == nil || errors.As(err, &ce) {
		return false
	}
	log.Info("bridge.start.interrupted", "reason", "stop requested while starting", "error", err.Error())
	return true
}

// runBridge wires the configured listeners, sink and store and runs them
// until ctx is done (drain, commit, nil), every listener completed its
// replay (drain, commit, nil), or a failure (a *ConfigError for exit 2,
// anything else for exit 1; with several listeners, when none is left
// running or waiting). observe, when non-nil, is called once the first
// listener runs.
//
// The process's actors run as a group: the HTTP endpoints (from the first
// second, so that /readyz answers while the store and the sink are still
// being reached) beside the listeners (runListeners), each of which starts
// its components and then runs its pipeline and supervisor as a group of
// its own (runActors).
func runBridge(ctx context.Context, cfg *Config, log *slog.Logger, out io.Writer, observe func(*running)) error {
	w, err := newWiring(ctx, cfg, log, out, observe)
	if err != nil {
		return err
	}
	defer w.release()
	var g group
	if cfg.Bridge.HTTPAddr != "" {
		h, err := listenHTTP(cfg.Bridge.HTTPAddr, newEndpoints(w.run.Registry, w.readiness, w.status), log, defaultHTTPTimeouts)
		if err != nil {
			return &ConfigError{Err: err}
		}
		g.add(h.serve, func(error) {
			sctx, cancel := w.clock.context(closeFloor)
			defer cancel()
			h.stop(sctx)
		})
	}
	var result error
	// The endpoints failing does not stop the bridge: its interrupt is
	// empty, and it stops on ctx.
	g.add(func() error {
		result = w.runListeners(ctx)
		return errBridgeReturned
	}, func(error) {})
	_ = g.run()
	return result
}

// Markers of which actor returned first.
var (
	errBridgeReturned   = errors.New("bridge returned")
	errPipelineReturned = errors.New("pipeline returned")
	errReplayComplete   = errors.New("replay complete")
	errSignalled        = errors.New("stop requested")
)

// wiring is what runBridge builds before anything connects: the shared
// parts (metrics, aviso client, stop clock, connections) and one unit per
// listener.
type wiring struct {
	cfg     *Config
	log     *slog.Logger
	out     io.Writer
	set     *metrics.Set
	client  *aviso.Client
	units   []*unit
	run     *running
	clock   *stopClock
	release func() bool
	cl      *clients
	observe func(*running)
	once    sync.Once
}

func newWiring(ctx context.Context, cfg *Config, log *slog.Logger, out io.Writer, observe func(*running)) (*wiring, error) {
	if len(cfg.listeners) == 0 {
		return nil, &ConfigError{Err: errors.New("no listener configured (AVISO_EVENT_TYPE or AVISO_LISTENERS_FILE)")}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	client, err := avisoClient(cfg)
	if err != nil {
		return nil, err
	}
	w := &wiring{cfg: cfg, log: log, out: out, set: metrics.NewSet(reg), client: client, observe: observe,
		run: &running{Registry: reg, Key: cfg.listeners[0].Key}}
	if len(cfg.listeners) > 1 && cfg.Sink == sinkStdout {
		w.out = &lockedWriter{w: out} // one line at a time from several sinks
	}
	for _, spec := range cfg.listeners {
		w.units = append(w.units, newUnit(spec, log, w.set, len(cfg.listeners) > 1))
	}
	w.run.units = w.units
	w.logStart()
	w.clock, w.release = newStopClock(ctx, cfg.Bridge.ShutdownTimeout)
	w.cl = newClients(cfg, log)
	return w, nil
}

func (w *wiring) logStart() {
	cfg := w.cfg
	attrs := []any{"version", versionString(), "aviso_url", cfg.avisoURLForLog(), "instance", cfg.Bridge.InstanceID,
		"mode", cfg.Aviso.Mode.String(), "sink", string(cfg.Sink), "checkpoint_store", string(cfg.Checkpoint.Store), "standby", cfg.Bridge.Standby}
	if l := cfg.listeners[0]; len(cfg.listeners) == 1 {
		attrs = append(attrs, "listener", l.Name, "event_type", l.EventType, "identifier", string(l.Identifier), "checkpoint_key", l.Key)
	} else {
		attrs = append(attrs, "listeners", cfg.listenerNames(), "listeners_file", cfg.Aviso.ListenersFile)
	}
	w.log.Info("bridge.starting", attrs...)
	if wn := cfg.listenerWarnings; wn.Triggers > 0 {
		w.log.Warn("bridge.listeners.triggers_ignored", "triggers", wn.Triggers, "listeners", wn.TriggerListeners, "listeners_file", cfg.Aviso.ListenersFile,
			"hint", "the listener file's triggers are not run: the sink replaces them")
	}
	for _, sw := range cfg.securityWarnings() {
		w.log.Warn(sw.Event, "hint", sw.Message)
	}
	if cfg.Aviso.InsecureSkipVerify {
		w.log.Warn("aviso.tls.insecure", "hint", "AVISO_INSECURE_SKIP_VERIFY=true: the aviso-server certificate is not verified; use AVISO_CA_FILE instead")
	}
}

// startFailed is the result of a start-up step that failed: nil when a stop
// was requested meanwhile (not a failure, exit 0).
func (w *wiring) startFailed(ctx context.Context, u *unit, err error) error {
	if startInterrupted(ctx, err, u.log) {
		return nil
	}
	return err
}

// runListener runs listener u once: it opens its checkpoint store (taking
// the key's lease in mode), its sink, builds the pipeline and the
// supervisor, runs them, and closes the sink and the store within the stop
// deadline. It returns nil after a stop or a completed replay.
func (w *wiring) runListener(ctx context.Context, u *unit, mode lease.Mode) error {
	u.committed.Store(false)
	u.metrics = w.set.Listener(u.spec.Name) // new series after a move (unit.moved)
	u.ready.starting("connecting to the " + string(w.cfg.Checkpoint.Store) + " checkpoint store")
	store, loaded, err := w.openStore(ctx, u, mode)
	if err != nil {
		return w.startFailed(ctx, u, err)
	}
	u.setActive(true)
	defer u.setActive(false)
	keep := false // a failed listener's lease is kept in a fleet
	defer func() {
		if keep {
			u.park(store)
			return
		}
		closeWithin(w.clock, u.log, "checkpoint store", func(context.Context) error { return store.Close() })
	}()
	u.setState(bridge.ListenerStarting, "")
	u.ready.starting("connecting to the " + string(w.cfg.Sink) + " sink")
	var cpSeq *uint64
	if loaded != nil {
		cpSeq = &loaded.Sequence
	}
	sink, err := openSink(ctx, w.cfg, u, w.out, resumeAfter(cpSeq, u.spec.FromID), w.cl)
	if err != nil {
		return w.startFailed(ctx, u, err)
	}
	defer closeWithin(w.clock, u.log, "sink", sink.Close)
	err = w.runPipeline(ctx, u, sink, store, loaded)
	keep = w.cfg.Bridge.Standby && err != nil && ctx.Err() == nil && !isHeld(err)
	if w.cfg.Bridge.Standby && !keep && u.drained() {
		// Everything is acknowledged and committed: release the key before
		// the sink closes, so that a handover does not wait for it (the
		// deferred close is then a no-op).
		closeWithin(w.clock, u.log, "checkpoint store", func(context.Context) error { return store.Close() })
	}
	return err
}

// runPipeline decides where the stream starts, builds the pipeline and the
// supervisor and runs them.
func (w *wiring) runPipeline(ctx context.Context, u *unit, sink bridge.Sink, store *trackedStore, loaded *bridge.Checkpoint) error {
	var cpSeq *uint64
	if loaded != nil {
		cpSeq = &loaded.Sequence
	}
	plan := resolveStart(startInputs{Checkpoint: cpSeq, Stored: storedPosition(ctx, u, sink),
		FromID: u.spec.FromID, FromDate: strings.TrimSpace(u.spec.FromDate)})
	logPlan(u.log, plan, cpSeq)
	if stopRequested(ctx) {
		u.log.Info("bridge.start.interrupted", "reason", "stop requested while starting")
		return nil
	}
	pipe, sup, err := w.build(u, sink, store, loaded, plan.Start)
	if err != nil {
		return err
	}
	u.ready.running(sup, pipe, sink, store)
	u.running(pipe, sup)
	w.once.Do(func() {
		w.run.Key, w.run.Pipeline, w.run.Supervisor = u.spec.Key, pipe, sup
		if w.observe != nil {
			w.observe(w.run)
		}
	})
	u.log.Info("bridge.started", "checkpoint_key", u.spec.Key, "max_in_flight", w.cfg.Bridge.MaxInFlight)
	err = w.runActors(ctx, u, pipe, sup)
	st := pipe.Status()
	u.log.Info("bridge.stopped", "checkpoint", st.Checkpoint.Sequence, "checkpoint_found", st.CheckpointFound, "in_flight", st.InFlight)
	return err
}

// openStore opens the checkpoint store of u's key, taking its lease in
// mode, and loads the checkpoint (nil when there is none).
func (w *wiring) openStore(ctx context.Context, u *unit, mode lease.Mode) (*trackedStore, *bridge.Checkpoint, error) {
	cfg, key := w.cfg, u.spec.Key
	rawStore, err := openStore(ctx, cfg, key, mode, u.log, w.cl)
	if err != nil {
		return nil, nil, err
	}
	store := &trackedStore{Store: rawStore}
	cp, found, err := store.Load(ctx)
	if err != nil {
		closeWithin(w.clock, u.log, "checkpoint store", func(context.Context) error { return store.Close() })
		return nil, nil, fmt.Errorf("checkpoint store %s: load key %s: %w", cfg.Checkpoint.Store, key, err)
	}
	if !found {
		w.warnOtherKeys(u, rawStore)
		return store, nil, nil
	}
	u.log.Info("bridge.checkpoint.loaded", "sequence", cp.Sequence, "event_id", cp.EventID, "checkpoint_key", key,
		"resume_from_id", resumeFromID(cp.Sequence))
	u.metrics.CheckpointSequence.Set(float64(cp.Sequence))
	return store, &cp, nil
}

// warnOtherKeys warns when the store holds positions of other keys but
// none for this one (the file store tells), unless those keys are other
// listeners' of this configuration.
func (w *wiring) warnOtherKeys(u *unit, store bridge.Store) {
	other, ok := store.(interface{ OtherKeys() []string })
	if !ok {
		return
	}
	mine := map[string]bool{}
	for _, l := range w.cfg.listeners {
		mine[l.Key] = true
	}
	var keys []string
	for _, k := range other.OtherKeys() {
		if !mine[k] {
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		u.log.Warn("bridge.checkpoint.other_keys", "checkpoint_key", u.spec.Key, "keys_found", keys, "checkpoint_file", w.cfg.Checkpoint.File,
			"hint", "the checkpoint file holds positions of other keys but none for this one: AVISO_URL, AVISO_EVENT_TYPE, AVISO_IDENTIFIER or CHECKPOINT_KEY changed? Starting from AVISO_FROM_*; set CHECKPOINT_KEY to one of keys_found to resume from it instead")
	}
}

// storedPosition is the last sequence the sink holds, when it tells.
func storedPosition(ctx context.Context, u *unit, sink bridge.Sink) *uint64 {
	pr, ok := sink.(bridge.PositionReporter)
	if !ok {
		return nil
	}
	seq, ok, err := pr.LastStored(ctx)
	if err != nil {
		u.log.Warn("bridge.sink.position_unknown", "error", err.Error())
		return nil
	}
	if !ok {
		return nil
	}
	return &seq
}

func logPlan(log *slog.Logger, plan startPlan, checkpoint *uint64) {
	if plan.SinkAhead {
		var cp uint64
		if checkpoint != nil {
			cp = *checkpoint
		}
		log.Info("bridge.sink.position", "sequence", plan.Start.Checkpoint, "checkpoint", cp, "action", "resuming after the sink's stored position")
	}
	if plan.FromIgnored {
		log.Info("bridge.start.checkpoint_wins", "checkpoint", plan.Start.Checkpoint,
			"ignored", "AVISO_FROM_ID/AVISO_FROM_DATE apply only when no checkpoint exists")
	}
}

// build makes the pipeline and the supervisor of u.
func (w *wiring) build(u *unit, sink bridge.Sink, store bridge.Store, loaded *bridge.Checkpoint, start supervisor.Start) (*bridge.Pipeline, *supervisor.Supervisor, error) {
	cfg := w.cfg
	reject := bridge.RejectPolicy(cfg.Bridge.OnReject)
	pipe, err := bridge.NewPipeline(sink, store, bridge.PipelineConfig{
		MaxInFlight:        cfg.Bridge.MaxInFlight,
		MaxInFlightBytes:   int64(cfg.Bridge.MaxInFlightBytes),
		CheckpointInterval: cfg.Checkpoint.Interval,
		ShutdownTimeout:    cfg.Bridge.ShutdownTimeout,
		OnReject:           reject,
		Start:              loaded,
		Logger:             u.log,
		Metrics:            u.metrics,
	})
	if err != nil {
		return nil, nil, libraryError(libBridge, err)
	}
	sup, err := supervisor.New(supervisor.Config{
		Client:      w.client,
		Mode:        aviso.Mode(cfg.Aviso.Mode),
		EventType:   u.spec.EventType,
		Identifier:  u.spec.Identifier,
		Start:       start,
		Pipeline:    timedPipeline{Pipeline: pipe, last: &u.last},
		ToID:        cfg.Aviso.ToID.ptr(),
		ToDate:      strings.TrimSpace(cfg.Aviso.ToDate),
		DeadLetters: reject == bridge.RejectDLQ,
		Listener:    u.spec.Name,
		Logger:      u.log,
		Metrics:     u.metrics,
	})
	if err != nil {
		return nil, nil, u.configError(err)
	}
	return pipe, sup, nil
}

// runActors runs the pipeline, the supervisor and the signal as a group.
// The pipeline drains when interrupted (up to BRIDGE_SHUTDOWN_TIMEOUT),
// except after a completed replay, where it delivers and commits
// everything; the supervisor stops reading at once. Both contexts also
// derive from ctx, so the signal reaches them however the group stands.
func (w *wiring) runActors(ctx context.Context, u *unit, pipe *bridge.Pipeline, sup *supervisor.Supervisor) error {
	var g group
	var perr, serr error
	pctx, stopPipe := context.WithCancel(ctx)
	defer stopPipe()
	g.add(func() error {
		perr = pipe.Run(pctx)
		if perr == nil {
			u.committed.Store(true)
		}
		return errPipelineReturned
	}, func(cause error) {
		if !errors.Is(cause, errReplayComplete) {
			stopPipe()
		}
	})
	sctx, stopSup := context.WithCancel(ctx)
	defer stopSup()
	g.add(func() error {
		serr = sup.Run(sctx)
		if serr == nil {
			// Replay completed: deliver everything, commit, exit 0.
			pipe.CloseInput()
			return errReplayComplete
		}
		return serr
	}, func(error) { stopSup() })
	quit := make(chan struct{})
	g.add(func() error {
		select {
		case <-ctx.Done():
			return errSignalled
		case <-quit:
			return nil
		}
	}, func(error) { close(quit) })
	first := g.run()
	return u.configError(outcome(first, perr, serr, ctx.Err() != nil))
}

// outcome is the listener's result once the pipeline (perr) and the
// supervisor (serr) have returned; first is what stopped the group and
// signalled whether a stop was requested. The supervisor's error counts
// only when it stopped the group for a reason of its own; the pipeline's
// own failure (a rejection under fail, a held key) is the cause when the
// supervisor only saw the pipeline stop.
func outcome(first, perr, serr error, signalled bool) error {
	// After a stop request the supervisor ends with the cancellation, or
	// with bridge.ErrStopped when the draining pipeline stopped taking its
	// notification first: neither is a failure.
	if errors.Is(first, errReplayComplete) || errors.Is(first, errPipelineReturned) ||
		(signalled && (errors.Is(serr, context.Canceled) || errors.Is(serr, bridge.ErrStopped))) {
		serr = nil
	}
	if perr != nil && !errors.Is(perr, context.Canceled) && (serr == nil || errors.Is(serr, bridge.ErrStopped)) {
		return libraryError(libBridge, perr)
	}
	if serr != nil {
		return asConfigError(serr)
	}
	return nil
}

// lockedWriter serialises the writes of several stdout sinks, so that
// each write (whole lines) reaches the output in one piece.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// closeWithin closes a component within the stop deadline (at least
// closeFloor): a close that blocks longer (a stalled stdout reader, a store
// whose broker is gone) is logged and left behind, since everything it
// could still write is either committed or will be delivered again.
func closeWithin(clock *stopClock, log *slog.Logger, what string, closeFn func(context.Context) error) {
	ctx, cancel := clock.context(closeFloor)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- closeFn(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			log.Warn("bridge.close.failed", "component", what, "error", err.Error())
		}
	case <-ctx.Done():
		log.Warn("bridge.close.timeout", "component", what, "hint", "still closing at the BRIDGE_SHUTDOWN_TIMEOUT deadline; left behind")
	}
}

// resumeFromID is the first sequence after checkpoint seq, or a note when
// the checkpoint is the last possible sequence (no wrap to 0).
func resumeFromID(seq uint64) any {
	if seq == math.MaxUint64 {
		return "none (the checkpoint is the last possible sequence)"
	}
	return seq + 1
}

// checkpointKey is CHECKPOINT_KEY, or the key derived from AVISO_URL,
// AVISO_EVENT_TYPE and AVISO_IDENTIFIER.
func checkpointKey(cfg *Config) (string, error) {
	if cfg.Checkpoint.Key != "" {
		return cfg.Checkpoint.Key, nil
	}
	return bridge.CheckpointKey(cfg.Aviso.URL, cfg.Aviso.EventType, json.RawMessage(cfg.Aviso.Identifier))
}

// avisoURLForLog is AVISO_URL as logged: credentials taken out of it are
// marked, never shown.
func (c *Config) avisoURLForLog() string {
	if c.avisoURLUser != "" {
		return withRedactedUserInfo(c.Aviso.URL)
	}
	return redactURL(c.Aviso.URL)
}

// trackedStore remembers whether the last checkpoint commit failed, for
// /readyz: any store (the file store too) is not ready while its commits
// keep failing.
type trackedStore struct {
	bridge.Store
	mu      sync.Mutex
	lastErr error
	since   time.Time
}

func (s *trackedStore) Commit(ctx context.Context, cp bridge.Checkpoint) error {
	err := s.Store.Commit(ctx, cp)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.lastErr, s.since = nil, time.Time{}
	case ctx.Err() == nil:
		if s.lastErr == nil {
			s.since = time.Now()
		}
		s.lastErr = err
	}
	return err
}

// Healthy is the store's own health, then whether commits are failing.
func (s *trackedStore) Healthy() error {
	if hr, ok := s.Store.(bridge.HealthReporter); ok {
		if err := hr.Healthy(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastErr != nil {
		return fmt.Errorf("checkpoint commits failing since %s: %w", s.since.UTC().Format(time.RFC3339), s.lastErr)
	}
	return nil
}

// asConfigError turns the supervisor's configuration error into main's.
func asConfigError(err error) error {
	var sce *supervisor.ConfigError
	if errors.As(err, &sce) {
		return &ConfigError{Err: libraryError(libSupervisor, err)}
	}
	return err
}

// openSink builds listener u's sink on the shared connections of cl.
func openSink(ctx context.Context, cfg *Config, u *unit, out io.Writer, resumeAfter uint64, cl *clients) (bridge.Sink, error) {
	switch cfg.Sink {
	case sinkStdout:
		return stdout.New(stdout.Options{Out: out, MaxInFlight: cfg.Bridge.MaxInFlight}), nil
	case sinkNATS, sinkJetStream:
		nc := natsSinkConfig(cfg)
		if err := nc.Validate(); err != nil {
			return nil, &ConfigError{Err: libraryError(libNATS, err)}
		}
		conn, err := cl.nats(ctx)
		if err != nil {
			return nil, err
		}
		return retryStart(ctx, u.log, "NATS sink", func() (bridge.Sink, error) {
			s, err := natssink.New(ctx, nc, natssink.Options{Logger: u.log, Conn: conn})
			return s, libraryError(libNATS, err)
		})
	case sinkKafka:
		kc, err := kafkaConfig(cfg)
		if err != nil {
			return nil, err
		}
		kc.ResumeAfter, kc.EventType = resumeAfter, u.spec.EventType
		kt, err := cl.kafka()
		if err != nil {
			return nil, err
		}
		return retryStart(ctx, u.log, "Kafka sink", func() (bridge.Sink, error) {
			s, err := kafkasink.NewSink(ctx, kc, kafkasink.Options{Logger: u.log, Metrics: u.metrics, Transport: kt})
			if err != nil {
				return nil, libraryError(libKafka, err)
			}
			return s, nil
		})
	}
	return nil, &ConfigError{Err: fmt.Errorf("SINK: %q is not supported", cfg.Sink)}
}

// natsSinkConfig is the NATS sink's configuration.
func natsSinkConfig(cfg *Config) natssink.Config {
	return natssink.Config{
		ConnConfig:         natsConn(cfg),
		Mode:               natssink.Mode(cfg.Sink),
		Format:             natssink.Format(cfg.SinkFormat),
		Subject:            cfg.NATS.Subject,
		DLQSubject:         cfg.Bridge.DLQSubject,
		DeadLetters:        bridge.RejectPolicy(cfg.Bridge.OnReject) == bridge.RejectDLQ,
		Stream:             cfg.NATS.Stream,
		StreamCreate:       cfg.NATS.StreamCreate,
		StreamSubjects:     natssink.SplitList(cfg.NATS.StreamSubjects),
		MaxPending:         cfg.NATS.MaxPending,
		MaxInFlight:        cfg.Bridge.MaxInFlight,
		PublishTimeout:     cfg.NATS.PublishTimeout,
		CheckpointInterval: cfg.Checkpoint.Interval,
		ShutdownTimeout:    cfg.Bridge.ShutdownTimeout,
	}
}

// nameSetting prefixes err with the variable to fix, unless the message
// already names it (no "CHECKPOINT_FILE: CHECKPOINT_FILE ...").
func nameSetting(name string, err error) error {
	if strings.Contains(err.Error(), name) {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
}

func natsConn(cfg *Config) natssink.ConnConfig {
	return natssink.ConnConfig{
		URL:          cfg.NATS.URL,
		CredsFile:    cfg.NATS.CredsFile,
		NKeySeedFile: cfg.NATS.NKeySeedFile,
		Token:        cfg.NATS.Token,
		TokenFile:    cfg.NATS.TokenFile,
		User:         cfg.NATS.User,
		Password:     cfg.NATS.Password,
		PasswordFile: cfg.NATS.PasswordFile,
		TLSCAFile:    cfg.NATS.TLSCAFile,
		TLSCertFile:  cfg.NATS.TLSCertFile,
		TLSKeyFile:   cfg.NATS.TLSKeyFile,
	}
}

func kafkaConfig(cfg *Config) (kafkasink.Config, error) {
	kc := kafkaSettings(cfg)
	if err := kc.Validate(); err != nil {
		return kc, &ConfigError{Err: libraryError(libKafka, err)}
	}
	return kc, nil
}

// kafkaSettings is the Kafka sink's and store's configuration, not validated.
func kafkaSettings(cfg *Config) kafkasink.Config {
	return kafkasink.Config{
		Brokers:         splitList(cfg.Kafka.Brokers),
		Topic:           cfg.Kafka.Topic,
		Key:             cfg.Kafka.Key,
		Acks:            kafkasink.Acks(cfg.Kafka.Acks),
		BatchSize:       cfg.Kafka.BatchSize,
		BatchTimeout:    cfg.Kafka.BatchTimeout,
		Compression:     kafkasink.Compression(cfg.Kafka.Compression),
		SASLMechanism:   cfg.Kafka.SASLMechanism,
		Username:        cfg.Kafka.Username,
		Password:        cfg.Kafka.Password,
		PasswordFile:    cfg.Kafka.PasswordFile,
		TLS:             cfg.Kafka.TLS,
		TLSCAFile:       cfg.Kafka.TLSCAFile,
		TLSCertFile:     cfg.Kafka.TLSCertFile,
		TLSKeyFile:      cfg.Kafka.TLSKeyFile,
		Format:          cfg.SinkFormat,
		DLQTopic:        cfg.Bridge.DLQTopic,
		CheckpointTopic: cfg.Kafka.CheckpointTopic,
		MaxInFlight:     cfg.Bridge.MaxInFlight,
		EventType:       cfg.Aviso.EventType,
		WriteTimeout:    cfg.Kafka.WriteTimeout,
		BatchBytes:      int64(cfg.Kafka.BatchBytes),
		MaxAttempts:     cfg.Kafka.MaxAttempts,
		DedupeScan:      cfg.Kafka.DedupeScan,
		DedupeScanMax:   cfg.Kafka.DedupeScanMax,
		ClientID:        cfg.Kafka.ClientID,
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// retryStart calls open until it succeeds, fails with an error waiting
// cannot fix, or ctx ends: a broker that is still starting next to the
// bridge is waited for, with the wait logged. Only a *bridge.RetryableError
// (the sinks' and stores' "not reachable or not ready yet") is waited out;
// a configuration error, a permanent error or a held key never is.
func retryStart[T any](ctx context.Context, log *slog.Logger, what string, open func() (T, error)) (T, error) {
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := open()
		if err == nil {
			return v, nil
		}
		var zero T
		wait, ok := startWait(err)
		if !ok {
			return zero, err
		}
		delay = max(delay, wait)
		log.Warn("bridge.start.retrying", "component", what, "attempt", attempt, "delay", delay.String(), "error", err.Error())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return zero, fmt.Errorf("%s: %w (gave up: %w)", what, err, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// startWait reports whether a start-up error is worth waiting out, and the
// least wait its source suggests.
func startWait(err error) (time.Duration, bool) {
	var ce *ConfigError
	if errors.As(err, &ce) || bridge.IsPermanent(err) || errors.Is(err, bridge.ErrKeyHeld) {
		return 0, false
	}
	var r *bridge.RetryableError
	if !errors.As(err, &r) {
		return 0, false
	}
	return r.Wait, true
}

// avisoClient builds the aviso client: TLS from AVISO_CA_FILE and
// AVISO_INSECURE_SKIP_VERIFY, credentials from AVISO_TOKEN(_FILE) or
// AVISO_USERNAME/AVISO_PASSWORD(_FILE).
func avisoClient(cfg *Config) (*aviso.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 0
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.Aviso.CAFile != "" {
		pem, err := os.ReadFile(cfg.Aviso.CAFile)
		if err != nil {
			return nil, &ConfigError{Err: fmt.Errorf("AVISO_CA_FILE: %w", err)}
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &ConfigError{Err: fmt.Errorf("AVISO_CA_FILE: %s holds no PEM certificate", cfg.Aviso.CAFile)}
		}
		tlsCfg.RootCAs = pool
	}
	if cfg.Aviso.InsecureSkipVerify {
		tlsCfg.InsecureSkipVerify = true
	}
	tr.TLSClientConfig = tlsCfg
	c := &aviso.Client{
		BaseURL:      cfg.Aviso.URL,
		HTTPClient:   &http.Client{Transport: tr, CheckRedirect: redirectPolicy(cfg.avisoHasCredentials())},
		UserAgent:    "aviso-bridge/" + versionString(),
		MaxEventSize: int(cfg.Aviso.MaxEventSize),
		IdleTimeout:  cfg.Aviso.IdleTimeout,
	}
	switch {
	case cfg.Aviso.Token != "":
		c.Credentials = aviso.BearerToken(cfg.Aviso.Token)
	case cfg.Aviso.TokenFile != "":
		c.Credentials = aviso.BearerTokenFile(cfg.Aviso.TokenFile)
	case cfg.Aviso.Username != "" && cfg.Aviso.PasswordFile != "":
		c.Credentials = aviso.BasicAuthFile(cfg.Aviso.Username, cfg.Aviso.PasswordFile)
	case cfg.Aviso.Username != "":
		c.Credentials = aviso.BasicAuth(cfg.Aviso.Username, cfg.Aviso.Password)
	case cfg.avisoURLUser != "":
		c.Credentials = aviso.BasicAuth(cfg.avisoURLUser, cfg.avisoURLPassword)
	}
	return c, nil
}
