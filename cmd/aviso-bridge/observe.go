package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// newLogger builds the process logger: JSON or text on w (stderr), with
// every configured secret value scrubbed from messages and attributes as a
// last line of defence (no code path is meant to log one).
func newLogger(w io.Writer, level, format string, secrets []string) *slog.Logger {
	var lv slog.Level
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: durationAsString}
	var h slog.Handler
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	var nonEmpty []string
	for _, s := range secrets {
		if len(s) >= 4 {
			nonEmpty = append(nonEmpty, s)
		}
	}
	if len(nonEmpty) > 0 {
		h = &scrubHandler{Handler: h, secrets: nonEmpty}
	}
	return slog.New(h)
}

// durationAsString logs every time.Duration as its string ("20s"), not as
// nanoseconds, whichever package logged it.
func durationAsString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// scrubHandler replaces secret values in string attributes and messages.
type scrubHandler struct {
	slog.Handler
	secrets []string
}

func (h *scrubHandler) scrub(s string) string {
	for _, sec := range h.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

func (h *scrubHandler) scrubAttr(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.scrub(a.Value.String()))
	case slog.KindGroup:
		g := a.Value.Group()
		out := make([]any, len(g))
		for i, x := range g {
			out[i] = h.scrubAttr(x)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			return slog.String(a.Key, h.scrub(err.Error()))
		}
		return slog.String(a.Key, h.scrub(fmt.Sprint(a.Value.Any())))
	}
	return a
}

func (h *scrubHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, h.scrub(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(h.scrubAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, nr)
}

func (h *scrubHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = h.scrubAttr(a)
	}
	return &scrubHandler{Handler: h.Handler.WithAttrs(out), secrets: h.secrets}
}

func (h *scrubHandler) WithGroup(name string) slog.Handler {
	return &scrubHandler{Handler: h.Handler.WithGroup(name), secrets: h.secrets}
}

// readiness is one /readyz condition: nil when it holds.
type readiness struct {
	name  string
	check func() error
}

// readyReport is the /readyz body: failing maps each failing condition to
// why (with several listeners, "listener: why" for each listener it fails
// for, joined by "; "), listeners each listener's failing conditions.
type readyReport struct {
	Ready     bool                         `json:"ready"`
	Failing   map[string]string            `json:"failing,omitempty"`
	Listeners map[string]map[string]string `json:"listeners,omitempty"`
}

func evaluate(conds []readiness) readyReport {
	rep := readyReport{Ready: true}
	for _, c := range conds {
		if err := c.check(); err != nil {
			if rep.Failing == nil {
				rep.Failing = map[string]string{}
			}
			rep.Ready = false
			rep.Failing[c.name] = err.Error()
		}
	}
	return rep
}

// readyState is what /readyz looks at: while the bridge starts, the step it
// is waiting for; then the running components.
type readyState struct {
	mu    sync.Mutex
	phase string // non-empty while starting
	sup   *supervisor.Supervisor
	pipe  *bridge.Pipeline
	sink  bridge.Sink
	store bridge.Store
}

func (r *readyState) starting(phase string) {
	r.mu.Lock()
	r.phase = phase
	r.mu.Unlock()
}

func (r *readyState) running(sup *supervisor.Supervisor, pipe *bridge.Pipeline, sink bridge.Sink, store bridge.Store) {
	r.mu.Lock()
	r.phase, r.sup, r.pipe, r.sink, r.store = "", sup, pipe, sink, store
	r.mu.Unlock()
}

func (r *readyState) get() (string, *supervisor.Supervisor, *bridge.Pipeline, bridge.Sink, bridge.Store) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase, r.sup, r.pipe, r.sink, r.store
}

// conditions are the /readyz conditions: while starting only "starting"
// fails (naming what is being reached); once running, the aviso stream, the
// sink, the checkpoint store (commits included) and acknowledgements.
func (r *readyState) conditions(readyStall time.Duration) []readiness {
	healthy := func(v any) error {
		if hr, ok := v.(bridge.HealthReporter); ok {
			return hr.Healthy()
		}
		return nil
	}
	return []readiness{
		{"starting", func() error {
			if phase, _, _, _, _ := r.get(); phase != "" {
				return errors.New("starting: " + phase)
			}
			return nil
		}},
		{"aviso_stream", func() error {
			if _, sup, _, _, _ := r.get(); sup != nil {
				if st := sup.Status(); !st.Connected {
					return fmt.Errorf("aviso stream not open: %s", st.Reason)
				}
			}
			return nil
		}},
		{"behind_checkpoint", func() error {
			if _, sup, _, _, _ := r.get(); sup != nil {
				if b := sup.Status().BehindCheckpoint; b != "" {
					return errors.New(b)
				}
			}
			return nil
		}},
		{"sink", func() error {
			if _, _, _, sink, _ := r.get(); sink != nil {
				return healthy(sink)
			}
			return nil
		}},
		{"checkpoint_store", func() error {
			_, _, pipe, _, store := r.get()
			if store != nil {
				if err := healthy(store); err != nil {
					return err
				}
			}
			if pipe != nil {
				return pipe.Status().CommitFailure()
			}
			return nil
		}},
		{"acknowledgements", func() error {
			_, _, pipe, _, _ := r.get()
			if pipe == nil {
				return nil
			}
			st := pipe.Status()
			if st.Stopped {
				return errors.New("pipeline stopped")
			}
			if st.Stalled(readyStall) {
				return fmt.Errorf("%d notifications in flight and nothing acknowledged for %s (BRIDGE_READY_STALL)", st.InFlight, readyStall)
			}
			return nil
		}},
	}
}

// newHTTPHandler serves /metrics, /healthz and /readyz over conds.
func newHTTPHandler(reg *prometheus.Registry, conds []readiness) http.Handler {
	return newEndpoints(reg, func() readyReport { return evaluate(conds) }, nil)
}

// newEndpoints serves /metrics, /healthz, /readyz (ready's report) and,
// when status is set, /status.
func newEndpoints(reg *prometheus.Registry, ready func() readyReport, status func() bridgeStatus) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		rep := ready()
		w.Header().Set("Content-Type", "application/json")
		if !rep.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
	if status != nil {
		mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(status())
		})
	}
	return mux
}

// httpTimeouts bound every phase of a request to the endpoints, so that
// slow or idle clients cannot hold connections (and goroutines) forever.
type httpTimeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

var defaultHTTPTimeouts = httpTimeouts{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 30 * time.Second, Idle: 60 * time.Second}

func newHTTPServer(h http.Handler, t httpTimeouts) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read, WriteTimeout: t.Write, IdleTimeout: t.Idle}
}

// httpEndpoints is the HTTP server as an actor: listening from
// listenHTTP (so that a bad BRIDGE_HTTP_ADDR stops start-up at once),
// serving in serve until stop.
type httpEndpoints struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

// listenHTTP listens on addr for h.
func listenHTTP(addr string, h http.Handler, log *slog.Logger, t httpTimeouts) (*httpEndpoints, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("BRIDGE_HTTP_ADDR: listen on %s: %w", addr, err)
	}
	log.Info("bridge.http.listening", "addr", ln.Addr().String())
	return &httpEndpoints{srv: newHTTPServer(h, t), ln: ln, log: log}, nil
}

// serve serves until stop; a failure is logged (the bridge goes on without
// its endpoints).
func (e *httpEndpoints) serve() error {
	if err := e.srv.Serve(e.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		e.log.Error("bridge.http.failed", "error", err.Error())
	}
	return nil
}

// stop shuts the server down gracefully until ctx ends, then closes it.
func (e *httpEndpoints) stop(ctx context.Context) {
	if e.srv.Shutdown(ctx) != nil {
		_ = e.srv.Close()
	}
}

// serveHTTP listens on addr and serves h until stop is called.
func serveHTTP(addr string, h http.Handler, log *slog.Logger, t httpTimeouts) (stop func(context.Context), err error) {
	e, err := listenHTTP(addr, h, log, t)
	if err != nil {
		return nil, err
	}
	go func() { _ = e.serve() }()
	return e.stop, nil
}

// healthcheck GETs /readyz on addr: exit 0 when ready, 1 otherwise.
func healthcheck(ctx context.Context, addr string, out io.Writer) int {
	if addr == "" {
		fmt.Fprintln(out, "healthcheck: BRIDGE_HTTP_ADDR is empty, so the bridge serves no /readyz")
		return 1
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintf(out, "healthcheck: BRIDGE_HTTP_ADDR %q: %v\n", addr, err)
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(out, "healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(out, "%s", body)
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
