package bridge_test

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func note(seq uint64) bridge.Notification {
	id := bridge.EventID("mars", seq)
	return bridge.Notification{
		EventType:  "mars",
		Sequence:   seq,
		ID:         id,
		CloudEvent: []byte(`{"id":"` + id + `"}`),
		Received:   time.Now(),
	}
}

// manualSink lets a test see each Publish and decide each Ack.
type manualSink struct {
	acks   chan bridge.Ack
	pubs   chan bridge.Notification
	pubErr func(n *bridge.Notification) error // nil: accept

	mu  sync.Mutex
	dlF func(dl bridge.DeadLetter) error
	dls []bridge.DeadLetter
}

func newManualSink(window int) *manualSink {
	return &manualSink{acks: make(chan bridge.Ack, window), pubs: make(chan bridge.Notification, 10000)}
}

func (s *manualSink) Publish(_ context.Context, n *bridge.Notification) error {
	s.pubs <- *n
	if s.pubErr != nil {
		return s.pubErr(n)
	}
	return nil
}

func (s *manualSink) Acks() <-chan bridge.Ack { return s.acks }

func (s *manualSink) DeadLetter(_ context.Context, dl bridge.DeadLetter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dlF != nil {
		if err := s.dlF(dl); err != nil {
			return err
		}
	}
	s.dls = append(s.dls, dl)
	return nil
}

func (s *manualSink) Close(context.Context) error { return nil }

func (s *manualSink) deadLetters() []bridge.DeadLetter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bridge.DeadLetter(nil), s.dls...)
}

// next returns the next published notification.
func (s *manualSink) next(t *testing.T) bridge.Notification {
	t.Helper()
	select {
	case n := <-s.pubs:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a publish")
		return bridge.Notification{}
	}
}

func (s *manualSink) expect(t *testing.T, seqs ...uint64) {
	t.Helper()
	for _, want := range seqs {
		if n := s.next(t); n.Sequence != want {
			t.Fatalf("published sequence %d, want %d", n.Sequence, want)
		}
	}
}

func (s *manualSink) ack(seq uint64, err error) {
	s.acks <- bridge.Ack{Sequence: seq, ID: bridge.EventID("mars", seq), Err: err}
}

// counter and gauge record values for assertions.
type counter struct{ bits atomic.Uint64 }

func (c *counter) Inc()          { c.Add(1) }
func (c *counter) Dec()          { c.Add(-1) }
func (c *counter) Set(v float64) { c.bits.Store(math.Float64bits(v)) }
func (c *counter) Add(v float64) {
	for {
		old := c.bits.Load()
		if c.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}
func (c *counter) Observe(float64) { c.Inc() }
func (c *counter) get() float64    { return math.Float64frombits(c.bits.Load()) }

type testMetrics struct {
	*bridge.Metrics
	published, commits, cpErrors, sinkErrors, retries, deadLettered *counter
	inFlight, cpSeq, lastAck, latency, eventAge                     *counter
	rejected                                                        map[string]*counter
}

func newTestMetrics() *testMetrics {
	m := &testMetrics{Metrics: bridge.NopMetrics(), rejected: map[string]*counter{}}
	for _, c := range []**counter{&m.published, &m.commits, &m.cpErrors, &m.sinkErrors, &m.retries, &m.deadLettered, &m.inFlight, &m.cpSeq, &m.lastAck, &m.latency, &m.eventAge} {
		*c = &counter{}
	}
	for _, a := range []string{"fail", "dlq", "skip"} {
		m.rejected[a] = &counter{}
	}
	m.NotificationsPublished = m.published
	m.CheckpointCommits = m.commits
	m.CheckpointErrors = m.cpErrors
	m.SinkErrors = m.sinkErrors
	m.SinkRetries = m.retries
	m.DeadLettered = m.deadLettered
	m.InFlight = m.inFlight
	m.CheckpointSequence = m.cpSeq
	m.LastAckTimestamp = m.lastAck
	m.PublishLatency = m.latency
	m.EventAge = m.eventAge
	m.NotificationsRejected = func(a string) bridge.Counter { return m.rejected[a] }
	return m
}

// faultStore wraps a store: fail makes Commit return an error; it records
// every Commit call.
type faultStore struct {
	bridge.Store
	mu      sync.Mutex
	fail    func(cp bridge.Checkpoint) error
	commits []bridge.Checkpoint
}

func (s *faultStore) Commit(ctx context.Context, cp bridge.Checkpoint) error {
	s.mu.Lock()
	f := s.fail
	s.commits = append(s.commits, cp)
	s.mu.Unlock()
	if f != nil {
		if err := f(cp); err != nil {
			return err
		}
	}
	return s.Store.Commit(ctx, cp)
}

func (s *faultStore) setFail(f func(bridge.Checkpoint) error) {
	s.mu.Lock()
	s.fail = f
	s.mu.Unlock()
}

func memStore(t *testing.T) (*faultStore, *checkpoint.Memory) {
	t.Helper()
	mem := checkpoint.NewMemory()
	s, err := mem.Open("k")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &faultStore{Store: s}, mem
}

// started runs p.Run in a goroutine; the returned function waits for its
// result.
func started(ctx context.Context, t *testing.T, p *bridge.Pipeline) func() error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	var once sync.Once
	var err error
	wait := func() error {
		once.Do(func() {
			select {
			case err = <-errc:
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { p.CloseInput() })
	return wait
}

func fastBackoff(int) time.Duration { return 100 * time.Microsecond }
