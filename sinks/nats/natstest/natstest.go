// Package natstest runs an embedded nats-server with JetStream for tests and
// benchmarks, like net/http/httptest: NewServer(tb), .URL, Shutdown and
// Restart (same port, same store directory), cleanup registered with
// tb.Cleanup. It also holds helpers to read a stream back, to generate
// notifications, and a minimal ordered driver that feeds a bridge.Sink the
// way the pipeline does (for sinks tested without bridge.NewPipeline).
package natstest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded nats-server with JetStream (file storage in a
// temporary directory).
type Server struct {
	// URL is the client URL (nats://127.0.0.1:PORT); stable across Restart.
	URL string
	// StoreDir is the JetStream store directory; stable across Restart.
	StoreDir string

	tb   testing.TB
	opts server.Options
	mu   sync.Mutex
	srv  *server.Server
}

// Option changes the server options before start.
type Option func(*server.Options)

// WithMaxPayload sets the server's max_payload.
func WithMaxPayload(n int32) Option { return func(o *server.Options) { o.MaxPayload = n } }

// WithOptions applies f to the server options.
func WithOptions(f func(*server.Options)) Option { return Option(f) }

// NewServer starts a server on a free 127.0.0.1 port; tb.Cleanup stops it.
func NewServer(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s := &Server{tb: tb, StoreDir: tb.TempDir()}
	s.opts = server.Options{
		Host:      "127.0.0.1",
		Port:      freePort(tb),
		JetStream: true,
		StoreDir:  s.StoreDir,
		NoLog:     true,
		NoSigs:    true,
	}
	for _, o := range opts {
		o(&s.opts)
	}
	s.URL = "nats://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))
	s.start()
	tb.Cleanup(s.Shutdown)
	return s
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("natstest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *Server) start() {
	s.tb.Helper()
	o := s.opts
	var srv *server.Server
	var err error
	// The port of a server just shut down can take a moment to be free.
	deadline := time.Now().Add(10 * time.Second)
	for {
		srv, err = server.NewServer(&o)
		if err != nil {
			s.tb.Fatalf("natstest: new server: %v", err)
		}
		go srv.Start()
		if srv.ReadyForConnections(10 * time.Second) {
			break
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		if time.Now().After(deadline) {
			s.tb.Fatalf("natstest: server on port %d not ready", s.opts.Port)
		}
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
}

// Shutdown stops the server (idempotent); Restart starts it again.
func (s *Server) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart starts a stopped server again on the same port with the same
// store directory (it stops it first if it runs).
func (s *Server) Restart() {
	s.tb.Helper()
	s.Shutdown()
	s.start()
}

// Running reports whether the server is started.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil
}

// Conn connects a plain client (closed at cleanup).
func (s *Server) Conn(tb testing.TB, opts ...natsgo.Option) *natsgo.Conn {
	tb.Helper()
	nc, err := natsgo.Connect(s.URL, opts...)
	if err != nil {
		tb.Fatalf("natstest: connect %s: %v", s.URL, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a new client connection.
func (s *Server) JetStream(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	js, err := jetstream.New(s.Conn(tb))
	if err != nil {
		tb.Fatalf("natstest: jetstream: %v", err)
	}
	return js
}

// CreateStream creates a file-storage stream with a 2-minute duplicate
// window unless cfg says otherwise.
func (s *Server) CreateStream(tb testing.TB, cfg jetstream.StreamConfig) jetstream.Stream {
	tb.Helper()
	if cfg.Storage == 0 {
		cfg.Storage = jetstream.FileStorage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.JetStream(tb).CreateStream(ctx, cfg)
	if err != nil {
		tb.Fatalf("natstest: create stream %s: %v", cfg.Name, err)
	}
	return st
}

// ReadStream returns every message of stream (optionally only those on
// filter), in stream order, with an ordered consumer.
func ReadStream(tb testing.TB, js jetstream.JetStream, stream, filter string) []jetstream.Msg {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatalf("natstest: stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		tb.Fatalf("natstest: stream %s info: %v", stream, err)
	}
	want := int(info.State.Msgs)
	if filter != "" {
		// With a subject filter, Subjects holds only the matching subjects.
		want = 0
		for _, c := range info.State.Subjects {
			want += int(c)
		}
	}
	if want == 0 {
		return nil
	}
	occ := jetstream.OrderedConsumerConfig{}
	if filter != "" {
		occ.FilterSubjects = []string{filter}
	}
	cons, err := st.OrderedConsumer(ctx, occ)
	if err != nil {
		tb.Fatalf("natstest: consumer on %s: %v", stream, err)
	}
	var out []jetstream.Msg
	for len(out) < want {
		batch, err := cons.Fetch(min(want-len(out), 500), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatalf("natstest: fetch from %s: %v", stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			out = append(out, m)
			got++
		}
		if err := batch.Error(); err != nil {
			tb.Fatalf("natstest: fetch from %s after %d/%d: %v", stream, len(out), want, err)
		}
		if got == 0 {
			tb.Fatalf("natstest: fetch from %s: %d of %d messages", stream, len(out), want)
		}
	}
	return out
}

// StreamMsgs returns the number of messages stored in stream.
func StreamMsgs(tb testing.TB, js jetstream.JetStream, stream string) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatalf("natstest: stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		tb.Fatalf("natstest: stream %s info: %v", stream, err)
	}
	return info.State.Msgs
}

// String describes the server for test logs.
func (s *Server) String() string { return fmt.Sprintf("nats-server %s (store %s)", s.URL, s.StoreDir) }
