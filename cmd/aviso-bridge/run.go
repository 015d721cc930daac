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
	"strconv"
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
	if min := time.Now().Add(floor); at.Before(min) {
		at = min
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
// exit 1). observe, when non-nil, is called once everything is running.
func runBridge(ctx context.Context, cfg *Config, log *slog.Logger, out io.Writer, observe func(*running)) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	run := &running{Registry: reg}

	identifier := json.RawMessage(cfg.Aviso.Identifier)
	key, err := checkpointKey(cfg)
	if err != nil {
		return &ConfigError{Err: err}
	}
	run.Key = key
	log.Info("bridge.starting", "version", versionString(), "aviso_url", cfg.avisoURLForLog(), "event_type", cfg.Aviso.EventType,
		"identifier", cfg.Aviso.Identifier, "mode", cfg.Aviso.Mode, "sink", cfg.Sink, "checkpoint_store", cfg.Checkpoint.Store,
		"checkpoint_key", key)
	for _, w := range cfg.securityWarnings() {
		log.Warn(w.Event, "hint", w.Message)
	}
	if cfg.Aviso.InsecureSkipVerify {
		log.Warn("aviso.tls.insecure", "hint", "AVISO_INSECURE_SKIP_VERIFY=true: the aviso-server certificate is not verified; use AVISO_CA_FILE instead")
	}
	clock, stopClock := newStopClock(ctx, cfg.Bridge.ShutdownTimeout)
	defer stopClock()

	// The endpoints come first: /healthz and /readyz answer from the first
	// second, also while the store and the sink are still being reached.
	ready := &readyState{}
	ready.starting("connecting to the " + cfg.Checkpoint.Store + " checkpoint store")
	if cfg.Bridge.HTTPAddr != "" {
		stopHTTP, err := serveHTTP(cfg.Bridge.HTTPAddr, newHTTPHandler(reg, ready.conditions(cfg.Bridge.ReadyStall)), log, defaultHTTPTimeouts)
		if err != nil {
			return &ConfigError{Err: err}
		}
		defer func() {
			sctx, cancel := clock.context(closeFloor)
			defer cancel()
			stopHTTP(sctx)
		}()
	}

	// Checkpoint store first: a held key or an unusable store stops here.
	// The store and the sink share their connections, closed after both.
	cl := newClients(cfg, log)
	defer cl.close()
	rawStore, err := openStore(ctx, cfg, key, log, cl)
	if err != nil {
		if startInterrupted(ctx, err, log) {
			return nil
		}
		return err
	}
	store := &trackedStore{Store: rawStore}
	defer closeWithin(clock, log, "checkpoint store", func(context.Context) error { return store.Close() })
	cp, found, err := store.Load(ctx)
	if err != nil {
		if startInterrupted(ctx, err, log) {
			return nil
		}
		return fmt.Errorf("checkpoint store %s: load key %s: %w", cfg.Checkpoint.Store, key, err)
	}
	if other, ok := rawStore.(interface{ OtherKeys() []string }); ok && !found {
		if keys := other.OtherKeys(); len(keys) > 0 {
			log.Warn("bridge.checkpoint.other_keys", "checkpoint_key", key, "keys_found", keys, "checkpoint_file", cfg.Checkpoint.File,
				"hint", "the checkpoint file holds positions of other keys but none for this one: AVISO_URL, AVISO_EVENT_TYPE, AVISO_IDENTIFIER or CHECKPOINT_KEY changed? Starting from AVISO_FROM_*; set CHECKPOINT_KEY to one of keys_found to resume from it instead")
		}
	}
	if found {
		log.Info("bridge.checkpoint.loaded", "sequence", cp.Sequence, "event_id", cp.EventID, "checkpoint_key", key,
			"resume_from_id", resumeFromID(cp.Sequence))
		m.CheckpointSequence.Set(float64(cp.Sequence))
	}

	// The sequence this run resumes after: the Kafka sink's start-up scan
	// reads back at least that far to skip what the topic already holds.
	var resumeAfter uint64
	if found {
		resumeAfter = cp.Sequence
	} else if v, err := strconv.ParseUint(strings.TrimSpace(cfg.Aviso.FromID), 10, 64); err == nil && v > 0 {
		resumeAfter = v - 1
	}
	ready.starting("connecting to the " + cfg.Sink + " sink")
	sink, err := openSink(ctx, cfg, log, m, out, resumeAfter, cl)
	if err != nil {
		if startInterrupted(ctx, err, log) {
			return nil
		}
		return err
	}
	defer closeWithin(clock, log, "sink", sink.Close)

	start := supervisor.Start{}
	if found {
		start.Checkpoint, start.HasCheckpoint = cp.Sequence, true
	}
	if pr, ok := sink.(bridge.PositionReporter); ok {
		if seq, ok, err := pr.LastStored(ctx); err != nil {
			log.Warn("bridge.sink.position_unknown", "error", err.Error())
		} else if ok && (!start.HasCheckpoint || seq > start.Checkpoint) {
			log.Info("bridge.sink.position", "sequence", seq, "checkpoint", cp.Sequence, "action", "resuming after the sink's stored position")
			start.Checkpoint, start.HasCheckpoint = seq, true
		}
	}
	if ctx.Err() != nil {
		log.Info("bridge.start.interrupted", "reason", "stop requested while starting")
		return nil
	}
	if !start.HasCheckpoint {
		if cfg.Aviso.FromID != "" {
			v, _ := strconv.ParseUint(strings.TrimSpace(cfg.Aviso.FromID), 10, 64)
			start.FromID = &v
		}
		start.FromDate = strings.TrimSpace(cfg.Aviso.FromDate)
	} else if cfg.Aviso.FromID != "" || cfg.Aviso.FromDate != "" {
		log.Info("bridge.start.checkpoint_wins", "checkpoint", start.Checkpoint,
			"ignored", "AVISO_FROM_ID/AVISO_FROM_DATE apply only when no checkpoint exists")
	}

	reject, _ := bridge.ParseRejectPolicy(cfg.Bridge.OnReject)
	pcfg := bridge.PipelineConfig{
		MaxInFlight:        cfg.Bridge.MaxInFlight,
		MaxInFlightBytes:   int64(cfg.Bridge.MaxInFlightBytes),
		CheckpointInterval: cfg.Checkpoint.Interval,
		ShutdownTimeout:    cfg.Bridge.ShutdownTimeout,
		OnReject:           reject,
		Logger:             log,
		Metrics:            m,
	}
	if found {
		pcfg.Start = &cp
	}
	pipe, err := bridge.NewPipeline(sink, store, pcfg)
	if err != nil {
		return err
	}

	client, err := avisoClient(cfg)
	if err != nil {
		return err
	}
	mode := aviso.Watch
	if cfg.Aviso.Mode == "replay" {
		mode = aviso.Replay
	}
	scfg := supervisor.Config{
		Client:      client,
		Mode:        mode,
		EventType:   cfg.Aviso.EventType,
		Identifier:  identifier,
		Start:       start,
		Pipeline:    pipe,
		ToDate:      strings.TrimSpace(cfg.Aviso.ToDate),
		DeadLetters: reject == bridge.RejectDLQ,
		Logger:      log,
		Metrics:     m,
	}
	if cfg.Aviso.ToID != "" {
		v, _ := strconv.ParseUint(strings.TrimSpace(cfg.Aviso.ToID), 10, 64)
		scfg.ToID = &v
	}
	sup, err := supervisor.New(scfg)
	if err != nil {
		return asConfigError(err)
	}
	run.Pipeline, run.Supervisor = pipe, sup
	ready.running(sup, pipe, sink, store)

	// The pipeline drains on ctx cancellation (up to BRIDGE_SHUTDOWN_TIMEOUT);
	// the supervisor stops reading at once. runCtx also stops both when the
	// other fails.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	pdone := make(chan error, 1)
	go func() {
		err := pipe.Run(runCtx)
		if err == nil {
			run.Committed.Store(true)
		}
		pdone <- err
	}()
	sdone := make(chan error, 1)
	go func() { sdone <- sup.Run(runCtx) }()
	if observe != nil {
		observe(run)
	}
	log.Info("bridge.started", "checkpoint_key", key, "max_in_flight", cfg.Bridge.MaxInFlight)

	var serr, perr error
	select {
	case serr = <-sdone:
		switch {
		case serr == nil:
			// Replay completed: deliver everything, commit, exit 0.
			pipe.CloseInput()
			perr = <-pdone
		case ctx.Err() != nil && errors.Is(serr, ctx.Err()):
			serr = nil
			perr = <-pdone
		default:
			// A configuration error or a stopped pipeline: drain what is in
			// flight, then report.
			cancelRun()
			perr = <-pdone
		}
	case perr = <-pdone:
		cancelRun()
		<-sdone
	}
	st := pipe.Status()
	log.Info("bridge.stopped", "checkpoint", st.Checkpoint.Sequence, "checkpoint_found", st.CheckpointFound, "in_flight", st.InFlight)
	// The pipeline's own failure (a rejection under fail, a held key) is
	// the cause when the supervisor only saw the pipeline stop.
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
		return fmt.Errorf("checkpoint commits failing since %s: %v", s.since.UTC().Format(time.RFC3339), s.lastErr)
	}
	return nil
}

// asConfigError turns the supervisor's configuration error into main's.
func asConfigError(err error) error {
	var sce *supervisor.ConfigError
	if errors.As(err, &sce) {
		return &ConfigError{Err: err}
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
			return nil, &ConfigError{Err: err}
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
	reject, _ := bridge.ParseRejectPolicy(cfg.Bridge.OnReject)
	return natssink.Config{
		ConnConfig:         natsConn(cfg),
		Mode:               natssink.Mode(cfg.Sink),
		Format:             natssink.Format(cfg.SinkFormat),
		Subject:            cfg.NATS.Subject,
		DLQSubject:         cfg.Bridge.DLQSubject,
		DeadLetters:        reject == bridge.RejectDLQ,
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
		return kc, &ConfigError{Err: err}
	}
	return kc, nil
}

// kafkaSettings is the Kafka sink's and store's configuration, not validated.
func kafkaSettings(cfg *Config) kafkasink.Config {
	return kafkasink.Config{
		Brokers:         splitList(cfg.Kafka.Brokers),
		Topic:           cfg.Kafka.Topic,
		Key:             cfg.Kafka.Key,
		Acks:            cfg.Kafka.Acks,
		BatchSize:       cfg.Kafka.BatchSize,
		BatchTimeout:    cfg.Kafka.BatchTimeout,
		Compression:     cfg.Kafka.Compression,
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

// retryStart calls open until it succeeds, fails with a configuration or
// permanent error, or ctx ends: a broker that is still starting next to the
// bridge is waited for, with the wait logged.
func retryStart[T any](ctx context.Context, log *slog.Logger, what string, open func() (T, error)) (T, error) {
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := open()
		if err == nil {
			return v, nil
		}
		var zero T
		var ce *ConfigError
		// A typed *bridge.RetryableError decides; the text is the fallback
		// for errors not typed yet.
		if errors.As(err, &ce) || bridge.IsPermanent(err) || errors.Is(err, bridge.ErrKeyHeld) || !(bridge.IsRetryable(err) || retryableStart(err)) {
			return zero, err
		}
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

// retryableStart reports whether a start-up error is worth waiting out:
// the destination is unreachable or not ready, not misconfigured.
func retryableStart(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"connection refused", "no servers available", "timeout", "timed out", "i/o timeout",
		"no route to host", "connection reset", "eof", "broken pipe", "no responders", "temporarily unavailable",
		"leader not available", "not available", "dial tcp", "deadline exceeded"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
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
