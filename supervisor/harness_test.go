package supervisor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// waitLimit bounds every wait of these tests; reaching it is a failure.
const waitLimit = 30 * time.Second

// half makes Backoff.Delay deterministic: exactly half of each window.
func half() float64 { return 0.5 }

// window returns the delay the supervisor asks for at backoff attempt n
// with the default backoff (250 ms doubling to 30 s) and half().
func window(n int) time.Duration {
	return supervisor.Backoff{Base: 250 * time.Millisecond, Max: 30 * time.Second}.Ceiling(n) / 2
}

// fakeClock records every delay the supervisor asks for and returns at
// once. Now is real time (plus the delays asked for) unless frozen.
type fakeClock struct {
	mu      sync.Mutex
	frozen  bool
	base    time.Time
	offset  time.Duration
	delays  []time.Duration
	onSleep func(call int, d time.Duration) // runs in Run's goroutine, before Sleep returns
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen {
		return c.base.Add(c.offset)
	}
	return time.Now().Add(c.offset)
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.delays = append(c.delays, d)
	c.offset += d
	n, hook := len(c.delays), c.onSleep
	c.mu.Unlock()
	if hook != nil {
		hook(n, d)
	}
	return ctx.Err()
}

func (c *fakeClock) Delays() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.delays)
}

// counter and gauge are race-safe metrics for assertions.
type counter struct{ v atomic.Int64 }

func (c *counter) Inc()          { c.v.Add(1) }
func (c *counter) Add(f float64) { c.v.Add(int64(f)) }
func (c *counter) Get() int64    { return c.v.Load() }

type gauge struct{ bits atomic.Uint64 }

func (g *gauge) Set(f float64) { g.bits.Store(math.Float64bits(f)) }
func (g *gauge) Add(f float64) {
	for {
		o := g.bits.Load()
		if g.bits.CompareAndSwap(o, math.Float64bits(math.Float64frombits(o)+f)) {
			return
		}
	}
}
func (g *gauge) Inc()         { g.Add(1) }
func (g *gauge) Dec()         { g.Add(-1) }
func (g *gauge) Get() float64 { return math.Float64frombits(g.bits.Load()) }

type testMetrics struct {
	*bridge.Metrics
	received, duplicates, malformed, gaps, serverErrors, replayLimits counter
	unrenderable, behind                                              counter
	connected                                                         gauge

	mu         sync.Mutex
	reconnects map[string]*counter
}

func newTestMetrics() *testMetrics {
	m := &testMetrics{Metrics: bridge.NopMetrics(), reconnects: map[string]*counter{}}
	m.NotificationsReceived = &m.received
	m.DuplicatesDropped = &m.duplicates
	m.MalformedFrames = &m.malformed
	m.SequenceGaps = &m.gaps
	m.ServerErrors = &m.serverErrors
	m.ReplayLimitsReached = &m.replayLimits
	m.Unrenderable = &m.unrenderable
	m.BehindCheckpoint = &m.behind
	m.Connected = &m.connected
	m.Reconnects = func(reason string) bridge.Counter {
		m.mu.Lock()
		defer m.mu.Unlock()
		c := m.reconnects[reason]
		if c == nil {
			c = &counter{}
			m.reconnects[reason] = c
		}
		return c
	}
	return m
}

// reconnectCounts returns aviso_bridge_reconnects_total by reason.
func (m *testMetrics) reconnectCounts() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int64{}
	for k, c := range m.reconnects {
		out[k] = c.Get()
	}
	return out
}

// recordSink is a bridge.Sink that records what it is given and
// acknowledges at once, or, while held, when released.
type recordSink struct {
	mu      sync.Mutex
	seqs    []uint64
	dls     []bridge.DeadLetter
	held    bool
	pending []bridge.Ack
	acks    chan bridge.Ack
	changed chan struct{} // closed and replaced on every Publish and DeadLetter
}

func newRecordSink() *recordSink {
	return &recordSink{acks: make(chan bridge.Ack, 1024), changed: make(chan struct{})}
}

func (s *recordSink) Publish(_ context.Context, n *bridge.Notification) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seqs = append(s.seqs, n.Sequence)
	a := bridge.Ack{Sequence: n.Sequence, ID: n.ID}
	if s.held {
		s.pending = append(s.pending, a)
	} else {
		s.acks <- a // never blocks: the buffer holds more than a window
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

func (s *recordSink) Acks() <-chan bridge.Ack { return s.acks }

func (s *recordSink) DeadLetter(_ context.Context, dl bridge.DeadLetter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dl.Raw = bytes.Clone(dl.Raw)
	s.dls = append(s.dls, dl)
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

func (s *recordSink) Close(context.Context) error { return nil }

// hold keeps acknowledgements back until release.
func (s *recordSink) hold() {
	s.mu.Lock()
	s.held = true
	s.mu.Unlock()
}

func (s *recordSink) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.pending {
		s.acks <- a
	}
	s.pending, s.held = nil, false
}

func (s *recordSink) sequences() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seqs)
}

func (s *recordSink) deadLetters() []bridge.DeadLetter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.dls)
}

// waitFor waits until cond holds for the sink's state; it fails at once
// when exited is closed first.
func (s *recordSink) waitFor(t *testing.T, exited <-chan struct{}, runErr func() error, what string, cond func(seqs []uint64, dls []bridge.DeadLetter) bool) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, ch := cond(s.seqs, s.dls), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-exited:
			exited = nil
			// One more look: the condition may have been met just before.
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; sink has %v", what, compact(s.sequences()))
		}
		if exited == nil {
			s.mu.Lock()
			ok := cond(s.seqs, s.dls)
			s.mu.Unlock()
			if !ok {
				t.Fatalf("supervisor Run ended (%v) while waiting for %s; sink has %v", runErr(), what, compact(s.sequences()))
			}
			return
		}
	}
}

// waitSeqs waits until the sink has seen n notifications.
func (e *env) waitSeqs(n int) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("%d notifications", n), func(seqs []uint64, _ []bridge.DeadLetter) bool { return len(seqs) >= n })
}

// waitFor waits until cond holds for the sink's state, failing early when
// the supervisor's Run returns.
func (e *env) waitFor(what string, cond func(seqs []uint64, dls []bridge.DeadLetter) bool) {
	e.t.Helper()
	var exited <-chan struct{}
	if p := e.exited.Load(); p != nil {
		exited = *p
	}
	e.sink.waitFor(e.t, exited, func() error {
		if p := e.runErr.Load(); p != nil {
			return *p
		}
		return nil
	}, what, cond)
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// records returns the JSON log records whose msg is msg.
func (b *syncBuffer) records(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(b.b.Bytes(), []byte("\n")) {
		var r map[string]any
		if json.Unmarshal(line, &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// env is one aviso server with the supervisor's collaborators around it.
type env struct {
	t     *testing.T
	srv   *avisotest.Server
	sink  *recordSink
	mem   *checkpoint.Memory
	clock *fakeClock
	m     *testMetrics
	logs  *syncBuffer
	// sup is the supervisor of the latest start, set before it runs (for
	// clock hooks).
	sup atomic.Pointer[supervisor.Supervisor]
	// exited is closed when the latest run's Run returns, so that waits
	// fail fast when it ends early.
	exited atomic.Pointer[chan struct{}]
	runErr atomic.Pointer[error]
}

// versions are the aviso-server releases every fault test runs against.
var versions = []avisotest.Version{avisotest.V071, avisotest.V013}

// forEachVersion runs f as a parallel subtest per aviso-server version.
func forEachVersion(t *testing.T, f func(t *testing.T, v avisotest.Version)) {
	t.Helper()
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			f(t, v)
		})
	}
}

// newEnv starts an aviso server imitating version v.
func newEnv(t *testing.T, v avisotest.Version, opts ...avisotest.Option) *env {
	t.Helper()
	e := &env{
		t:     t,
		srv:   avisotest.NewServer(t, append([]avisotest.Option{avisotest.WithVersion(v)}, opts...)...),
		sink:  newRecordSink(),
		mem:   checkpoint.NewMemory(),
		clock: &fakeClock{},
		m:     newTestMetrics(),
		logs:  &syncBuffer{},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("supervisor logs:\n%s", e.logs.String())
		}
	})
	return e
}

// publish stores n notifications of "mars" and returns the last sequence.
func (e *env) publish(n int) uint64 {
	var last uint64
	for i := 0; i < n; i++ {
		last = e.srv.Publish("mars", map[string]string{"class": "od"}, map[string]any{"i": i})
	}
	return last
}

// config returns a supervisor configuration for e (the pipeline is set by
// start). ShortSession is tiny so that routine closes reconnect at once.
func (e *env) config() supervisor.Config {
	return supervisor.Config{
		Client:       &aviso.Client{BaseURL: e.srv.URL, HTTPClient: e.srv.Client()},
		Mode:         aviso.Watch,
		EventType:    "mars",
		Identifier:   json.RawMessage(`{}`),
		Logger:       slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:      e.m.Metrics,
		Clock:        e.clock,
		Backoff:      supervisor.Backoff{Rand: half},
		ShortSession: time.Nanosecond,
	}
}

// run is one supervisor and pipeline over e's sink and checkpoint store.
type run struct {
	t        *testing.T
	sup      *supervisor.Supervisor
	pipe     *bridge.Pipeline
	store    *checkpoint.MemoryStore
	cancel   context.CancelFunc
	supDone  chan error
	pipeDone chan error
	stopped  bool
	supErr   error
}

const ckey = "key"

// start opens the checkpoint store, builds the pipeline (starting from the
// stored checkpoint, as main does) and the supervisor, and runs both.
func (e *env) start(cfg supervisor.Config, maxInFlight int) *run {
	t := e.t
	t.Helper()
	store, err := e.mem.Open(ckey)
	if err != nil {
		t.Fatal(err)
	}
	pcfg := bridge.PipelineConfig{MaxInFlight: maxInFlight, CheckpointInterval: 10 * time.Millisecond}
	if cp, found, err := store.Load(context.Background()); err != nil {
		t.Fatal(err)
	} else if found {
		pcfg.Start = &cp
	}
	p, err := bridge.NewPipeline(e.sink, store, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Pipeline = p
	sup, err := supervisor.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.sup.Store(sup)
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{t: t, sup: sup, pipe: p, store: store, cancel: cancel, supDone: make(chan error, 1), pipeDone: make(chan error, 1)}
	go func() { r.pipeDone <- p.Run(ctx) }()
	exited := make(chan struct{})
	e.exited.Store(&exited)
	go func() {
		err := sup.Run(ctx)
		e.runErr.Store(&err)
		r.supDone <- err
		close(exited)
	}()
	t.Cleanup(r.halt)
	return r
}

// stop cancels the run, waits for both goroutines and returns Run's error.
func (r *run) stop() error {
	r.t.Helper()
	if r.stopped {
		return r.supErr
	}
	r.stopped = true
	r.cancel()
	r.supErr = wait(r.t, r.supDone, "supervisor Run")
	if err := wait(r.t, r.pipeDone, "pipeline Run"); err != nil {
		r.t.Errorf("pipeline Run: %v", err)
	}
	r.store.Close()
	return r.supErr
}

// halt stops the run where the test asserts on what it did rather than on
// Run's error (stop returns it).
func (r *run) halt() { _ = r.stop() }

// finish waits for Run to end by itself (a replay run, a fatal error),
// then drains the pipeline as main does and returns Run's error.
func (r *run) finish() error {
	r.t.Helper()
	err := wait(r.t, r.supDone, "supervisor Run")
	r.stopped, r.supErr = true, err
	r.pipe.CloseInput()
	if perr := wait(r.t, r.pipeDone, "pipeline Run"); perr != nil {
		r.t.Errorf("pipeline Run: %v", perr)
	}
	r.cancel()
	r.store.Close()
	return err
}

func wait(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(waitLimit):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

// streamRequests returns the watch/replay requests the server received.
func (e *env) streamRequests() []avisotest.Request {
	var out []avisotest.Request
	for _, r := range e.srv.Requests() {
		if r.Path == "/api/v1/watch" || r.Path == "/api/v1/replay" {
			out = append(out, r)
		}
	}
	return out
}

// cursor renders a request's start position: "id:N", "date:D" or "live".
func cursor(r avisotest.Request) string {
	switch {
	case r.HasFromID:
		return "id:" + r.FromID
	case r.FromDate != "":
		return "date:" + r.FromDate
	}
	return "live"
}

func cursors(rs []avisotest.Request) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = cursor(r)
	}
	return out
}

func ids(from ...uint64) []string {
	out := make([]string, len(from))
	for i, f := range from {
		out[i] = fmt.Sprintf("id:%d", f)
	}
	return out
}

// seqRange returns a, a+1, ..., b.
func seqRange(a, b uint64) []uint64 {
	var out []uint64
	for s := a; s <= b; s++ {
		out = append(out, s)
	}
	return out
}

// compact shortens long sequence lists in failure messages.
func compact(s []uint64) string {
	if len(s) <= 40 {
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%v ... %v (%d)", s[:20], s[len(s)-20:], len(s))
}

// checkExactlyOnce fails unless the sink saw exactly want, in order.
func (e *env) checkExactlyOnce(want []uint64) {
	e.t.Helper()
	got := e.sink.sequences()
	if !slices.Equal(got, want) {
		e.t.Fatalf("sink saw %s, want %s", compact(got), compact(want))
	}
}

func (e *env) checkCursors(want []string) {
	e.t.Helper()
	if got := cursors(e.streamRequests()); !slices.Equal(got, want) {
		e.t.Fatalf("request cursors %v, want %v", got, want)
	}
}

func (e *env) checkDelays(want []time.Duration) {
	e.t.Helper()
	if got := e.clock.Delays(); !slices.Equal(got, want) {
		e.t.Fatalf("delays asked of the clock %v, want %v", got, want)
	}
}

func (e *env) checkReconnects(want map[string]int64) {
	e.t.Helper()
	got := e.m.reconnectCounts()
	for k, v := range got {
		if v == 0 {
			delete(got, k)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Fatalf("reconnects by reason %v, want %v", got, want)
	}
}

// isCanceled reports a Run error that only says the context ended.
func isCanceled(err error) bool { return errors.Is(err, context.Canceled) }

func u64(v uint64) *uint64 { return &v }

func ptr[T any](v T) *T { return &v }

// advance moves the clock's Now forward by d (time passing without a Sleep).
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// waitUntil polls cond until it holds; it fails after waitLimit.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not synchronisation
	}
}
