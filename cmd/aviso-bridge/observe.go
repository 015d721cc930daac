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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	opts := &slog.HandlerOptions{Level: lv}
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

// readyReport is the /readyz body.
type readyReport struct {
	Ready   bool              `json:"ready"`
	Failing map[string]string `json:"failing,omitempty"`
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

// newHTTPHandler serves /metrics, /healthz and /readyz.
func newHTTPHandler(reg *prometheus.Registry, conds []readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		rep := evaluate(conds)
		w.Header().Set("Content-Type", "application/json")
		if !rep.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
	return mux
}

// serveHTTP listens on addr and serves h until ctx is done.
func serveHTTP(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("BRIDGE_HTTP_ADDR: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("bridge.http.failed", "error", err.Error())
		}
	}()
	log.Info("bridge.http.listening", "addr", ln.Addr().String())
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
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
