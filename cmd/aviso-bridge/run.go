package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
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
}

// runBridge wires the configured source, pipeline, sink and store and runs
// them until ctx is done (drain, commit, nil), a replay completes (drain,
// commit, nil), or a failure (a *ConfigError for exit 2, anything else for
// exit 1). observe, when non-nil, is called once everything is running.
func runBridge(ctx context.Context, cfg *Config, log *slog.Logger, out io.Writer, observe func(*running)) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)

	identifier := json.RawMessage(cfg.Aviso.Identifier)
	key := cfg.Checkpoint.Key
	if key == "" {
		k, err := bridge.CheckpointKey(cfg.Aviso.URL, cfg.Aviso.EventType, identifier)
		if err != nil {
			return &ConfigError{Err: err}
		}
		key = k
	}
	log.Info("bridge.starting", "version", versionString(), "aviso_url", redactURL(cfg.Aviso.URL), "event_type", cfg.Aviso.EventType,
		"identifier", cfg.Aviso.Identifier, "mode", cfg.Aviso.Mode, "sink", cfg.Sink, "checkpoint_store", cfg.Checkpoint.Store,
		"checkpoint_key", key)

	// Checkpoint store first: a held key or an unusable store stops here.
	store, err := openStore(ctx, cfg, key, log)
	if err != nil {
		return err
	}
	defer store.Close()
	cp, found, err := store.Load(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint store %s: load key %s: %w", cfg.Checkpoint.Store, key, err)
	}
	if found {
		log.Info("bridge.checkpoint.loaded", "sequence", cp.Sequence, "event_id", cp.EventID, "checkpoint_key", key,
			"resume_from_id", cp.Sequence+1)
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
	sink, err := openSink(ctx, cfg, log, m, out, resumeAfter)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), cfg.Bridge.ShutdownTimeout)
		defer cancel()
		if err := sink.Close(cctx); err != nil {
			log.Warn("bridge.sink.close_failed", "error", err.Error())
		}
	}()

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
	if cfg.Aviso.InsecureSkipVerify {
		log.Warn("aviso.tls.insecure", "hint", "AVISO_INSECURE_SKIP_VERIFY=true: the aviso-server certificate is not verified; use AVISO_CA_FILE instead")
	}
	mode := aviso.Watch
	if cfg.Aviso.Mode == "replay" {
		mode = aviso.Replay
	}
	sup, err := supervisor.New(supervisor.Config{
		Client:              client,
		Mode:                mode,
		EventType:           cfg.Aviso.EventType,
		Identifier:          identifier,
		Start:               start,
		Pipeline:            pipe,
		DeadLetterMalformed: reject == bridge.RejectDLQ,
		Logger:              log,
		Metrics:             m,
	})
	if err != nil {
		return asConfigError(err)
	}

	if cfg.Bridge.HTTPAddr != "" {
		conds := []readiness{
			{"aviso_stream", func() error {
				st := sup.Status()
				if !st.Connected {
					return fmt.Errorf("aviso stream not open: %s", st.Reason)
				}
				return nil
			}},
			{"sink", func() error {
				if hr, ok := sink.(bridge.HealthReporter); ok {
					return hr.Healthy()
				}
				return nil
			}},
			{"checkpoint_store", func() error {
				if hr, ok := store.(bridge.HealthReporter); ok {
					return hr.Healthy()
				}
				return nil
			}},
			{"acknowledgements", func() error {
				st := pipe.Status()
				if st.Stopped {
					return errors.New("pipeline stopped")
				}
				if st.Stalled(cfg.Bridge.ReadyStall) {
					return fmt.Errorf("%d notifications in flight and nothing acknowledged for %s (BRIDGE_READY_STALL)", st.InFlight, cfg.Bridge.ReadyStall)
				}
				return nil
			}},
		}
		stopHTTP, err := serveHTTP(ctx, cfg.Bridge.HTTPAddr, newHTTPHandler(reg, conds), log)
		if err != nil {
			return &ConfigError{Err: err}
		}
		defer stopHTTP()
	}

	// The pipeline drains on ctx cancellation (up to BRIDGE_SHUTDOWN_TIMEOUT);
	// the supervisor stops reading at once. runCtx also stops both when the
	// other fails.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	pdone := make(chan error, 1)
	go func() { pdone <- pipe.Run(runCtx) }()
	sdone := make(chan error, 1)
	go func() { sdone <- sup.Run(runCtx) }()
	if observe != nil {
		observe(&running{Key: key, Pipeline: pipe, Supervisor: sup, Registry: reg})
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

// asConfigError turns the supervisor's configuration error into main's.
func asConfigError(err error) error {
	var sce *supervisor.ConfigError
	if errors.As(err, &sce) {
		return &ConfigError{Err: err}
	}
	return err
}

// openStore opens the configured checkpoint store for key.
func openStore(ctx context.Context, cfg *Config, key string, log *slog.Logger) (bridge.Store, error) {
	switch cfg.Checkpoint.Store {
	case "file":
		s, err := checkpoint.OpenFile(cfg.Checkpoint.File, key)
		if err != nil {
			return nil, fmt.Errorf("CHECKPOINT_FILE: %w", err)
		}
		return s, nil
	case "nats-kv":
		// One owner id for every attempt, so that a retried open whose
		// claim was written but not answered takes the key at once.
		kc := natssink.KVConfig{ConnConfig: natsConn(cfg), Bucket: cfg.NATS.KVBucket, Key: key, Owner: ownerID()}
		s, err := retryStart(ctx, log, "nats-kv checkpoint store", func() (*natssink.KVStore, error) {
			return natssink.OpenKVStore(ctx, kc, natssink.Options{Logger: log})
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	case "kafka":
		kc, err := kafkaConfig(cfg)
		if err != nil {
			return nil, err
		}
		sc := kafkasink.StoreConfig{Config: kc, CheckpointKey: key, Owner: ownerID()}
		s, err := retryStart(ctx, log, "kafka checkpoint store", func() (*kafkasink.Store, error) {
			return kafkasink.OpenStore(ctx, sc, kafkasink.Options{Logger: log})
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	case "none":
		log.Warn("bridge.checkpoint.none", "hint", "CHECKPOINT_STORE=none keeps no position: a restart starts again from AVISO_FROM_* or live; for trials only")
		return checkpoint.NewMemory().Open(key)
	}
	return nil, &ConfigError{Err: fmt.Errorf("CHECKPOINT_STORE: %q is not supported", cfg.Checkpoint.Store)}
}

// openSink builds the configured sink.
func openSink(ctx context.Context, cfg *Config, log *slog.Logger, m *bridge.Metrics, out io.Writer, resumeAfter uint64) (bridge.Sink, error) {
	switch cfg.Sink {
	case "stdout":
		return stdout.New(stdout.Options{Out: out, MaxInFlight: cfg.Bridge.MaxInFlight}), nil
	case "nats", "jetstream":
		nc := natssink.Config{
			ConnConfig:         natsConn(cfg),
			Mode:               natssink.Mode(cfg.Sink),
			Format:             natssink.Format(cfg.SinkFormat),
			Subject:            cfg.NATS.Subject,
			DLQSubject:         cfg.Bridge.DLQSubject,
			Stream:             cfg.NATS.Stream,
			StreamCreate:       cfg.NATS.StreamCreate,
			StreamSubjects:     natssink.SplitList(cfg.NATS.StreamSubjects),
			MaxPending:         cfg.NATS.MaxPending,
			MaxInFlight:        cfg.Bridge.MaxInFlight,
			PublishTimeout:     cfg.NATS.PublishTimeout,
			CheckpointInterval: cfg.Checkpoint.Interval,
			ShutdownTimeout:    cfg.Bridge.ShutdownTimeout,
		}
		if err := nc.Validate(); err != nil {
			return nil, &ConfigError{Err: err}
		}
		return retryStart(ctx, log, "NATS sink", func() (bridge.Sink, error) {
			return natssink.New(ctx, nc, natssink.Options{Logger: log})
		})
	case "kafka":
		kc, err := kafkaConfig(cfg)
		if err != nil {
			return nil, err
		}
		kc.ResumeAfter = resumeAfter
		return retryStart(ctx, log, "Kafka sink", func() (bridge.Sink, error) {
			return kafkasink.NewSink(ctx, kc, kafkasink.Options{Logger: log, Metrics: m})
		})
	}
	return nil, &ConfigError{Err: fmt.Errorf("SINK: %q is not supported", cfg.Sink)}
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
	kc := kafkasink.Config{
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
	if err := kc.Validate(); err != nil {
		return kc, &ConfigError{Err: err}
	}
	return kc, nil
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
		if errors.As(err, &ce) || bridge.IsPermanent(err) || errors.Is(err, bridge.ErrKeyHeld) || !retryableStart(err) {
			return zero, err
		}
		log.Warn("bridge.start.retrying", "component", what, "attempt", attempt, "delay_ms", delay.Milliseconds(), "error", err.Error())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return zero, fmt.Errorf("%s: %w (gave up: %v)", what, err, ctx.Err())
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
		HTTPClient:   &http.Client{Transport: tr, CheckRedirect: keepPOST},
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
	}
	return c, nil
}

// keepPOST follows 307/308 redirects, which repeat the POST with its body,
// and stops at 301/302/303, which would turn the watch into a GET (405 from
// aviso): that response is then reported as an error naming AVISO_URL.
func keepPOST(req *http.Request, via []*http.Request) error {
	if req.Method != http.MethodPost || len(via) >= 5 {
		return http.ErrUseLastResponse
	}
	return nil
}

// ownerID names this process in a checkpoint store: host, pid and a
// random suffix (never a secret).
func ownerID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%x", host, os.Getpid(), b)
}

// redactURL drops user info from a URL for logging.
func redactURL(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return raw
	}
	rest := raw[i+3:]
	if at := strings.IndexByte(rest, '@'); at >= 0 && (strings.IndexByte(rest, '/') < 0 || at < strings.IndexByte(rest, '/')) {
		return raw[:i+3] + "[redacted]@" + rest[at+1:]
	}
	return raw
}
