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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/metrics"
	kafkasink "github.com/aviso-bridge/aviso-bridge/sinks/kafka"
	natssink "github.com/aviso-bridge/aviso-bridge/sinks/nats"
	"github.com/aviso-bridge/aviso-bridge/sinks/stdout"
	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// running is what runBridge built, handed to an observer (the demo, tests).
type running struct {
	Key        string
	Pipeline   *bridge.Pipeline
	Supervisor *supervisor.Supervisor
	Registry   *prometheus.Registry
	// Committed is set once the pipeline has stopped with its final commit
	// made: nothing acknowledged is left uncommitted, whatever the closing
	// of the sink and the store still does.
	Committed atomic.Bool
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
// that no signal started (a replay's end, a failure) gets the whole timeout.
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

// runBridge wires the configured source, pipeline, sink and store and runs
// them until ctx is done (drain, commit, nil), a replay completes (drain,
// commit, nil), or a failure (a *ConfigError for exit 2, anything else for
// exit 1). observe, when non-nil, is called once everything is built.
//
// The process's actors run as a group: the HTTP endpoints (from the first
// second, so that /readyz answers while the store and the sink are still
// being reached) beside the bridge itself, which starts its components and
// then runs the pipeline, the supervisor and the signal as a group of its
// own (runActors).
func runBridge(ctx context.Context, cfg *Config, log *slog.Logger, out io.Writer, observe func(*running)) error {
	w, err := newWiring(ctx, cfg, log, out)
	if err != nil {
		return err
	}
	defer w.release()
	var g group
	if cfg.Bridge.HTTPAddr != "" {
		h, err := listenHTTP(cfg.Bridge.HTTPAddr, newHTTPHandler(w.run.Registry, w.ready.conditions(cfg.Bridge.ReadyStall)), log, defaultHTTPTimeouts)
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
		result = w.bridge(ctx, observe)
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

// wiring is what runBridge builds before anything connects.
type wiring struct {
	cfg     *Config
	log     *slog.Logger
	out     io.Writer
	metrics *bridge.Metrics
	run     *running
	ready   *readyState
	clock   *stopClock
	release func() bool
}

func newWiring(ctx context.Context, cfg *Config, log *slog.Logger, out io.Writer) (*wiring, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	key, err := checkpointKey(cfg)
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	w := &wiring{cfg: cfg, log: log, out: out, metrics: metrics.New(reg), run: &running{Registry: reg, Key: key}, ready: &readyState{}}
	w.logStart()
	w.clock, w.release = newStopClock(ctx, cfg.Bridge.ShutdownTimeout)
	w.ready.starting("connecting to the " + string(cfg.Checkpoint.Store) + " checkpoint store")
	return w, nil
}

func (w *wiring) logStart() {
	cfg := w.cfg
	w.log.Info("bridge.starting", "version", versionString(), "aviso_url", cfg.avisoURLForLog(), "event_type", cfg.Aviso.EventType,
		"identifier", cfg.Aviso.Identifier, "mode", cfg.Aviso.Mode.String(), "sink", string(cfg.Sink), "checkpoint_store", string(cfg.Checkpoint.Store),
		"checkpoint_key", w.run.Key)
	for _, sw := range cfg.securityWarnings() {
		w.log.Warn(sw.Event, "hint", sw.Message)
	}
	if cfg.Aviso.InsecureSkipVerify {
		w.log.Warn("aviso.tls.insecure", "hint", "AVISO_INSECURE_SKIP_VERIFY=true: the aviso-server certificate is not verified; use AVISO_CA_FILE instead")
	}
}

// startFailed is the result of a start-up step that failed: nil when a stop
// was requested meanwhile (not a failure, exit 0).
func (w *wiring) startFailed(ctx context.Context, err error) error {
	if startInterrupted(ctx, err, w.log) {
		return nil
	}
	return err
}

// bridge opens the store and the sink, builds the pipeline and the
// supervisor, runs them, and closes the sink and the store within the stop
// deadline.
func (w *wiring) bridge(ctx context.Context, observe func(*running)) error {
	// The store and the sink share their connections, closed after both.
	cl := newClients(w.cfg, w.log)
	defer cl.close()
	// Checkpoint store first: a held key or an unusable store stops here.
	store, loaded, err := w.openStore(ctx, cl)
	if err != nil {
		return w.startFailed(ctx, err)
	}
	defer closeWithin(w.clock, w.log, "checkpoint store", func(context.Context) error { return store.Close() })
	w.ready.starting("connecting to the " + string(w.cfg.Sink) + " sink")
	var cpSeq *uint64
	if loaded != nil {
		cpSeq = &loaded.Sequence
	}
	sink, err := openSink(ctx, w.cfg, w.log, w.metrics, w.out, resumeAfter(cpSeq, w.cfg.Aviso.FromID.ptr()), cl)
	if err != nil {
		return w.startFailed(ctx, err)
	}
	defer closeWithin(w.clock, w.log, "sink", sink.Close)
	plan := resolveStart(startInputs{Checkpoint: cpSeq, Stored: w.storedPosition(ctx, sink),
		FromID: w.cfg.Aviso.FromID.ptr(), FromDate: strings.TrimSpace(w.cfg.Aviso.FromDate)})
	w.logPlan(plan, cpSeq)
	if ctx.Err() != nil {
		w.log.Info("bridge.start.interrupted", "reason", "stop requested while starting")
		return nil
	}
	pipe, sup, err := w.build(sink, store, loaded, plan.Start)
	if err != nil {
		return err
	}
	w.run.Pipeline, w.run.Supervisor = pipe, sup
	w.ready.running(sup, pipe, sink, store)
	if observe != nil {
		observe(w.run)
	}
	w.log.Info("bridge.started", "checkpoint_key", w.run.Key, "max_in_flight", w.cfg.Bridge.MaxInFlight)
	err = w.runActors(ctx, pipe, sup)
	st := pipe.Status()
	w.log.Info("bridge.stopped", "checkpoint", st.Checkpoint.Sequence, "checkpoint_found", st.CheckpointFound, "in_flight", st.InFlight)
	return err
}

// openStore opens the checkpoint store and loads this key's checkpoint
// (nil when there is none).
func (w *wiring) openStore(ctx context.Context, cl *clients) (*trackedStore, *bridge.Checkpoint, error) {
	cfg, key := w.cfg, w.run.Key
	rawStore, err := openStore(ctx, cfg, key, w.log, cl)
	if err != nil {
		return nil, nil, err
	}
	store := &trackedStore{Store: rawStore}
	cp, found, err := store.Load(ctx)
	if err != nil {
		closeWithin(w.clock, w.log, "checkpoint store", func(context.Context) error { return store.Close() })
		return nil, nil, fmt.Errorf("checkpoint store %s: load key %s: %w", cfg.Checkpoint.Store, key, err)
	}
	if !found {
		w.warnOtherKeys(rawStore)
		return store, nil, nil
	}
	w.log.Info("bridge.checkpoint.loaded", "sequence", cp.Sequence, "event_id", cp.EventID, "checkpoint_key", key,
		"resume_from_id", resumeFromID(cp.Sequence))
	w.metrics.CheckpointSequence.Set(float64(cp.Sequence))
	return store, &cp, nil
}

// warnOtherKeys warns when the store holds positions of other keys but
// none for this one (the file store tells).
func (w *wiring) warnOtherKeys(store bridge.Store) {
	other, ok := store.(interface{ OtherKeys() []string })
	if !ok {
		return
	}
	if keys := other.OtherKeys(); len(keys) > 0 {
		w.log.Warn("bridge.checkpoint.other_keys", "checkpoint_key", w.run.Key, "keys_found", keys, "checkpoint_file", w.cfg.Checkpoint.File,
			"hint", "the checkpoint file holds positions of other keys but none for this one: AVISO_URL, AVISO_EVENT_TYPE, AVISO_IDENTIFIER or CHECKPOINT_KEY changed? Starting from AVISO_FROM_*; set CHECKPOINT_KEY to one of keys_found to resume from it instead")
	}
}

// storedPosition is the last sequence the sink holds, when it tells.
func (w *wiring) storedPosition(ctx context.Context, sink bridge.Sink) *uint64 {
	pr, ok := sink.(bridge.PositionReporter)
	if !ok {
		return nil
	}
	seq, ok, err := pr.LastStored(ctx)
	if err != nil {
		w.log.Warn("bridge.sink.position_unknown", "error", err.Error())
		return nil
	}
	if !ok {
		return nil
	}
	return &seq
}

func (w *wiring) logPlan(plan startPlan, checkpoint *uint64) {
	if plan.SinkAhead {
		var cp uint64
		if checkpoint != nil {
			cp = *checkpoint
		}
		w.log.Info("bridge.sink.position", "sequence", plan.Start.Checkpoint, "checkpoint", cp, "action", "resuming after the sink's stored position")
	}
	if plan.FromIgnored {
		w.log.Info("bridge.start.checkpoint_wins", "checkpoint", plan.Start.Checkpoint,
			"ignored", "AVISO_FROM_ID/AVISO_FROM_DATE apply only when no checkpoint exists")
	}
}

// build makes the pipeline and the supervisor.
func (w *wiring) build(sink bridge.Sink, store bridge.Store, loaded *bridge.Checkpoint, start supervisor.Start) (*bridge.Pipeline, *supervisor.Supervisor, error) {
	cfg := w.cfg
	reject := bridge.RejectPolicy(cfg.Bridge.OnReject)
	pipe, err := bridge.NewPipeline(sink, store, bridge.PipelineConfig{
		MaxInFlight:        cfg.Bridge.MaxInFlight,
		MaxInFlightBytes:   int64(cfg.Bridge.MaxInFlightBytes),
		CheckpointInterval: cfg.Checkpoint.Interval,
		ShutdownTimeout:    cfg.Bridge.ShutdownTimeout,
		OnReject:           reject,
		Start:              loaded,
		Logger:             w.log,
		Metrics:            w.metrics,
	})
	if err != nil {
		return nil, nil, err
	}
	client, err := avisoClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	sup, err := supervisor.New(supervisor.Config{
		Client:      client,
		Mode:        aviso.Mode(cfg.Aviso.Mode),
		EventType:   cfg.Aviso.EventType,
		Identifier:  json.RawMessage(cfg.Aviso.Identifier),
		Start:       start,
		Pipeline:    pipe,
		ToID:        cfg.Aviso.ToID.ptr(),
		ToDate:      strings.TrimSpace(cfg.Aviso.ToDate),
		DeadLetters: reject == bridge.RejectDLQ,
		Logger:      w.log,
		Metrics:     w.metrics,
	})
	if err != nil {
		return nil, nil, asConfigError(err)
	}
	return pipe, sup, nil
}

// runActors runs the pipeline, the supervisor and the signal as a group.
// The pipeline drains when interrupted (up to BRIDGE_SHUTDOWN_TIMEOUT),
// except after a completed replay, where it delivers and commits
// everything; the supervisor stops reading at once. Both contexts also
// derive from ctx, so the signal reaches them however the group stands.
func (w *wiring) runActors(ctx context.Context, pipe *bridge.Pipeline, sup *supervisor.Supervisor) error {
	var g group
	var perr, serr error
	pctx, stopPipe := context.WithCancel(ctx)
	defer stopPipe()
	g.add(func() error {
		perr = pipe.Run(pctx)
		if perr == nil {
			w.run.Committed.Store(true)
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
	return outcome(first, perr, serr, ctx.Err() != nil)
}

// outcome is the bridge's result once the pipeline (perr) and the
// supervisor (serr) have returned; first is what stopped the group and
// signalled whether a stop was requested. The supervisor's error counts
// only when it stopped the group for a reason of its own; the pipeline's
// own failure (a rejection under fail, a held key) is the cause when the
// supervisor only saw the pipeline stop.
func outcome(first, perr, serr error, signalled bool) error {
	if errors.Is(first, errReplayComplete) || errors.Is(first, errPipelineReturned) ||
		(signalled && errors.Is(serr, context.Canceled)) {
		serr = nil
	}
	if perr != nil && !errors.Is(perr, context.Canceled) && (serr == nil || errors.Is(serr, bridge.ErrStopped)) {
		return perr
	}
	if serr != nil {
		return asConfigError(serr)
	}
	return nil
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

// openSink builds the configured sink.
func openSink(ctx context.Context, cfg *Config, log *slog.Logger, m *bridge.Metrics, out io.Writer, resumeAfter uint64, cl *clients) (bridge.Sink, error) {
	switch cfg.Sink {
	case "stdout":
		return stdout.New(stdout.Options{Out: out, MaxInFlight: cfg.Bridge.MaxInFlight}), nil
	case "nats", "jetstream":
		nc := natsSinkConfig(cfg)
		if err := nc.Validate(); err != nil {
			return nil, &ConfigError{Err: libraryError(libNATS, err)}
		}
		conn, err := cl.nats(ctx)
		if err != nil {
			return nil, err
		}
		return retryStart(ctx, log, "NATS sink", func() (bridge.Sink, error) {
			return natssink.New(ctx, nc, natssink.Options{Logger: log, Conn: conn})
		})
	case "kafka":
		kc, err := kafkaConfig(cfg)
		if err != nil {
			return nil, err
		}
		kc.ResumeAfter = resumeAfter
		kt, err := cl.kafka()
		if err != nil {
			return nil, err
		}
		return retryStart(ctx, log, "Kafka sink", func() (bridge.Sink, error) {
			return kafkasink.NewSink(ctx, kc, kafkasink.Options{Logger: log, Metrics: m, Transport: kt})
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
