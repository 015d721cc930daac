package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
)

var (
	chaosSeeds = flag.Int("chaos.seeds", 40, "seeds of TestPipelineChaos (the long run: -chaos.seeds=500 -chaos.notes=20000)")
	chaosNotes = flag.Int("chaos.notes", 4000, "notifications per seed in TestPipelineChaos")
	chaosSeed0 = flag.Uint64("chaos.seed0", 1, "first seed of TestPipelineChaos (to replay one seed: -chaos.seed0=N -chaos.seeds=1)")
)

// TestPipelineChaos drives the pipeline through many lifetimes against a
// fault-injecting sink (random delays, withheld acknowledgements, retryable
// failures on acks and on Publish, permanent rejections, dead-letter
// failures) and store (commit failures), ending each lifetime with a crash
// (all in-memory state dropped, nothing persisted after the crash point) or
// a graceful stop, and the last one with the end of the input. It checks:
//   - at least once: every notification was stored by the sink (or, when
//     rejected, dead-lettered / skipped as the policy says);
//   - order: each Publish is the next notification or the start of a re-send
//     from the earliest failure, after every outstanding ack arrived; what
//     the sink stores in one lifetime is in receipt order with nothing
//     missing but rejected notifications;
//   - the window: never more than MaxInFlight outstanding;
//   - commits: monotonic, never below the start, and never past a
//     notification the sink has not acknowledged (or rejected and handled);
//   - after a graceful stop the next lifetime re-sends nothing;
//   - under BRIDGE_ON_REJECT=fail, Run stops at the rejected notification
//     with the checkpoint before it.
func TestPipelineChaos(t *testing.T) {
	for s := *chaosSeed0; s < *chaosSeed0+uint64(*chaosSeeds); s++ {
		t.Run(fmt.Sprint("seed=", s), func(t *testing.T) {
			t.Parallel()
			runChaos(t, s, *chaosNotes)
		})
	}
}

type endMode int

const (
	endCrash endMode = iota
	endGraceful
	endInput // replay finished: CloseInput, drain everything
)

func (m endMode) String() string { return [...]string{"crash", "graceful", "input"}[m] }

// world is what outlives a process: the aviso stream, what the sink stored,
// the dead-letter destination, the checkpoint backing.
type world struct {
	rng    *rand.Rand // guarded by mu
	policy bridge.RejectPolicy
	window int
	notes  []bridge.Notification
	bySeq  map[uint64]int
	mem    *checkpoint.Memory

	mu       sync.Mutex
	poison   map[int]bool // the sink rejects these permanently
	acked    []bool       // the sink acknowledged it (stored)
	rejected []bool       // the sink reported a permanent rejection
	dlq      []bool       // dead-lettered
	stores   []storeRec   // every store, in order
	doneIn   []int        // the lifetime that last handled it (-1: none)
	problems []string
}

type storeRec struct{ epoch, idx int }

func (w *world) failf(format string, args ...any) {
	if len(w.problems) < 20 {
		w.problems = append(w.problems, fmt.Sprintf(format, args...))
	}
}

// handled reports whether the position may pass idx: it was stored, or
// rejected and dealt with under the policy.
func (w *world) handled(idx int) bool {
	switch {
	case w.acked[idx]:
		return true
	case w.policy == bridge.RejectSkip:
		return w.rejected[idx]
	case w.policy == bridge.RejectDLQ:
		return w.dlq[idx]
	}
	return false
}

func (w *world) chance(p float64) bool { return w.rng.Float64() < p }

func runChaos(t *testing.T, seed uint64, count int) {
	rng := rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15))
	w := &world{
		rng:    rng,
		policy: []bridge.RejectPolicy{bridge.RejectSkip, bridge.RejectDLQ, bridge.RejectFail}[rng.IntN(3)],
		window: []int{1, 2, 3, 8, 32, 64, 256}[rng.IntN(7)],
		bySeq:  map[uint64]int{},
		mem:    checkpoint.NewMemory(),
		poison: map[int]bool{},
	}
	seq := rng.Uint64N(1000)
	for i := range count {
		seq += 1 + rng.Uint64N(4) // sequences have gaps
		n := note(seq)
		n.Time = time.Now().Add(-time.Minute)
		w.notes = append(w.notes, n)
		w.bySeq[seq] = i
	}
	for range rng.IntN(4) {
		w.poison[rng.IntN(count)] = true
	}
	w.acked = make([]bool, count)
	w.rejected = make([]bool, count)
	w.dlq = make([]bool, count)
	w.doneIn = make([]int, count)
	for i := range w.doneIn {
		w.doneIn[i] = -1
	}
	t.Logf("policy %s, window %d, %d notifications, poison %v", w.policy, w.window, count, keys(w.poison))

	lifetimes := 3 + rng.IntN(6)
	prevGraceful := false
	for epoch := 0; ; epoch++ {
		mode := endMode(rng.IntN(2))
		if epoch >= lifetimes {
			mode = endInput
		}
		res := runEpoch(t, w, epoch, mode, prevGraceful)
		if len(w.problems) > 0 {
			t.Fatalf("lifetime %d (%s, policy %s, window %d): %d problems:\n%s", epoch, mode, w.policy, w.window, len(w.problems), joinLines(w.problems))
		}
		prevGraceful = mode == endGraceful && res.err == nil
		if mode == endInput && res.err == nil {
			break
		}
		if epoch > lifetimes+10 {
			t.Fatalf("no complete run after %d lifetimes", epoch)
		}
	}

	// At least once, and the final position covers everything.
	cp, _ := w.mem.Checkpoint("k")
	if last := w.notes[count-1].Sequence; cp.Sequence != last {
		t.Errorf("final checkpoint %d, want %d", cp.Sequence, last)
	}
	for i := range count {
		if !w.handled(i) {
			t.Fatalf("notification %s (index %d) was lost: stored %v rejected %v dlq %v", w.notes[i].ID, i, w.acked[i], w.rejected[i], w.dlq[i])
		}
	}
	// Per lifetime, the sink stored notifications in receipt order, nothing
	// missing between two stores but rejected ones.
	for k := 1; k < len(w.stores); k++ {
		a, b := w.stores[k-1], w.stores[k]
		if a.epoch != b.epoch {
			continue
		}
		if b.idx <= a.idx {
			t.Fatalf("lifetime %d stored index %d after %d", a.epoch, b.idx, a.idx)
		}
		for i := a.idx + 1; i < b.idx; i++ {
			if !w.rejected[i] {
				t.Fatalf("lifetime %d stored index %d after %d, skipping %d which was never rejected", a.epoch, b.idx, a.idx, i)
			}
		}
	}
}

type epochResult struct{ err error }

func runEpoch(t *testing.T, w *world, epoch int, mode endMode, prevGraceful bool) epochResult {
	w.mu.Lock()
	rng := w.rng
	crashed := &atomic.Bool{}
	store, err := w.mem.Open("k")
	if err != nil {
		w.mu.Unlock()
		t.Fatal(err)
	}
	start, found, _ := store.Load(context.Background())
	first := 0
	if found {
		first = sort.Search(len(w.notes), func(i int) bool { return w.notes[i].Sequence > start.Sequence })
	}
	sink := &chaosSink{
		w: w, epoch: epoch, mode: mode, prevGraceful: prevGraceful, crashed: crashed, first: first, next: -1, minFail: -1,
		acks:         make(chan bridge.Ack, w.window),
		queue:        make(chan int, 2*w.window+1),
		trigger:      make(chan struct{}),
		quit:         make(chan struct{}),
		triggerAfter: 1 + rng.IntN(max(1, (len(w.notes)-first)/2)),
		pStall:       []float64{0, 0.002, 0.02}[rng.IntN(3)],
		pFail:        []float64{0, 0.002, 0.02, 0.1}[rng.IntN(4)],
		pSyncFail:    []float64{0, 0.002, 0.02}[rng.IntN(3)],
	}
	if mode == endCrash && rng.IntN(3) == 0 {
		sink.withholdAt = 1 + rng.IntN(sink.triggerAfter) // stop acknowledging, then crash
	}
	cs := &chaosStore{MemoryStore: store, w: w, crashed: crashed, epoch: epoch, pFail: []float64{0, 0.05, 0.3}[rng.IntN(3)]}
	if found {
		cs.lastOK, cs.lastTry = start.Sequence, start.Sequence
	}
	cfg := bridge.PipelineConfig{
		MaxInFlight:        w.window,
		CheckpointInterval: time.Duration(1+rng.IntN(3)) * time.Millisecond,
		ShutdownTimeout:    time.Minute,
		OnReject:           w.policy,
		Backoff:            func(int) time.Duration { return time.Duration(rand.IntN(200)) * time.Microsecond },
	}
	if found {
		cfg.Start = &start
	}
	if mode == endCrash {
		cfg.ShutdownTimeout = time.Millisecond // nothing will be acknowledged: do not wait (nor commit, mostly)
	}
	w.mu.Unlock()

	p, err := bridge.NewPipeline(sink, cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sink.wg.Add(1)
	go sink.worker()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- p.Run(ctx) }()
	srcDone := make(chan struct{})
	go func() {
		defer close(srcDone)
		for i := first; i < len(w.notes); i++ {
			n := w.notes[i]
			n.Received = time.Now()
			if err := p.Submit(ctx, &n); err != nil {
				if !errors.Is(err, bridge.ErrStopped) && !errors.Is(err, context.Canceled) {
					w.mu.Lock()
					w.failf("Submit(%s): %v", n.ID, err)
					w.mu.Unlock()
				}
				return
			}
		}
		if mode == endInput {
			p.CloseInput()
		} else {
			sink.end() // everything submitted before the trigger: end now
		}
	}()

	var runErr error
	select {
	case runErr = <-runDone:
	case <-sink.trigger:
		cancel()
		runErr = <-runDone
	}
	cancel()
	<-srcDone
	close(sink.quit)
	sink.wg.Wait()
	store.Close()

	w.mu.Lock()
	defer w.mu.Unlock()
	var rej *bridge.RejectedError
	switch {
	case runErr == nil:
	case mode == endCrash && errors.Is(runErr, context.DeadlineExceeded):
		// The 1 ms deadline of the whole stop passed before a commit
		// returned; a crash is what follows anyway.
	case w.policy == bridge.RejectFail && errors.As(runErr, &rej):
		// The position stays before the rejected notification; the
		// operator fixes the cause and restarts.
		idx := w.bySeq[rej.Sequence]
		if !w.poison[idx] {
			w.failf("RejectedError for %s which the sink never rejected", rej.ID)
		}
		if cp, _ := w.mem.Checkpoint("k"); cp.Sequence >= rej.Sequence {
			w.failf("checkpoint %d passed the rejected %s", cp.Sequence, rej.ID)
		}
		delete(w.poison, idx)
	default:
		w.failf("Run (%s): %v", mode, runErr)
	}
	if mode == endInput && runErr == nil {
		if cp, _ := w.mem.Checkpoint("k"); cp.Sequence != w.notes[len(w.notes)-1].Sequence {
			w.failf("input drained but checkpoint %d", cp.Sequence)
		}
	}
	return epochResult{err: runErr}
}

// chaosSink is a fault-injecting Sink that checks the order of publishes.
type chaosSink struct {
	w            *world
	epoch        int
	mode         endMode
	crashed      *atomic.Bool
	prevGraceful bool
	acks         chan bridge.Ack
	queue        chan int
	trigger      chan struct{}
	triggerOnce  sync.Once
	quit         chan struct{}
	wg           sync.WaitGroup

	triggerAfter, withholdAt   int
	pStall, pFail, pSyncFail   float64
	first, next, minFail, pubs int  // guarded by w.mu
	outstanding                int  // accepted, ack not yet sent; guarded by w.mu
	syncFailed                 bool // a retryable error was returned from Publish
}

// end ends the lifetime: a crash (from now on nothing is stored,
// acknowledged or committed) or a graceful stop.
func (s *chaosSink) end() {
	if s.mode == endCrash {
		s.crashed.Store(true)
	}
	s.triggerOnce.Do(func() { close(s.trigger) })
}

func (s *chaosSink) Publish(_ context.Context, n *bridge.Notification) error {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.crashed.Load() {
		return nil // a dead process: accepted, never acknowledged
	}
	i, ok := w.bySeq[n.Sequence]
	if !ok || n.ID != w.notes[i].ID || !bytes.Equal(n.CloudEvent, w.notes[i].CloudEvent) {
		w.failf("published unknown or altered notification %+v", n)
		return bridge.Permanent(errors.New("unknown"))
	}
	// Order: the next one, or a re-send from the earliest failure once
	// every outstanding ack was sent.
	switch {
	case s.syncFailed && (i != s.minFail || s.outstanding != 0):
		w.failf("lifetime %d: Publish index %d after a synchronous failure, before the re-send from %d", s.epoch, i, s.minFail)
	case s.next == -1 && i == s.first:
		s.next = i + 1
	case s.next != -1 && i == s.next:
		s.next++
	case s.next != -1 && i == s.minFail && s.outstanding == 0:
		s.next = i + 1
		s.syncFailed = false
	default:
		w.failf("lifetime %d: Publish index %d, want %d (first %d) or a re-send from %d (outstanding %d)", s.epoch, i, s.next, s.first, s.minFail, s.outstanding)
	}
	if s.prevGraceful && w.doneIn[i] == s.epoch-1 {
		w.failf("lifetime %d: re-sent %s after a graceful stop", s.epoch, n.ID)
	}
	if s.minFail != -1 && i <= s.minFail {
		s.minFail = -1 // the re-send round starts
	}
	s.pubs++
	if s.pubs == s.triggerAfter && s.mode != endInput {
		s.end()
	}
	// Fail fast after a reported failure (the Sink contract), or at random.
	switch {
	case s.minFail != -1 && i > s.minFail, w.chance(s.pSyncFail):
		s.fail(i)
		s.syncFailed = true
		return errors.New("sync: not connected")
	case w.poison[i] && w.chance(0.5):
		w.rejected[i] = true
		if w.policy == bridge.RejectSkip {
			w.doneIn[i] = s.epoch
		}
		return bridge.Permanent(errors.New("sync: invalid subject"))
	}
	if s.outstanding >= w.window {
		w.failf("lifetime %d: more than %d outstanding", s.epoch, w.window)
	}
	s.outstanding++
	select {
	case s.queue <- i:
	default:
		w.failf("lifetime %d: sink queue overflow", s.epoch)
	}
	return nil
}

func (s *chaosSink) fail(i int) {
	if s.minFail == -1 || i < s.minFail {
		s.minFail = i
	}
}

// worker stores accepted notifications in order and sends their acks.
func (s *chaosSink) worker() {
	defer s.wg.Done()
	w := s.w
	processed := 0
	for {
		var i int
		select {
		case i = <-s.queue:
		case <-s.quit:
			return
		}
		processed++
		w.mu.Lock()
		stall := w.chance(s.pStall)
		withhold := s.withholdAt > 0 && processed >= s.withholdAt
		var d time.Duration
		if stall || withhold {
			d = time.Duration(w.rng.IntN(2000)) * time.Microsecond
		}
		w.mu.Unlock()
		if withhold {
			// Acknowledgements withheld until the process dies.
			time.Sleep(d)
			s.end()
			<-s.quit
			return
		}
		if stall {
			time.Sleep(d)
		}
		w.mu.Lock()
		if s.crashed.Load() {
			w.mu.Unlock()
			continue
		}
		var err error
		switch {
		case s.minFail != -1 && i > s.minFail:
			err = errors.New("failing fast after an earlier failure")
		case w.poison[i]:
			w.rejected[i] = true
			if w.policy == bridge.RejectSkip {
				w.doneIn[i] = s.epoch
			}
			err = bridge.Permanent(errors.New("maximum payload exceeded"))
		case w.chance(s.pFail):
			s.fail(i)
			err = errors.New("timeout")
		default:
			w.acked[i] = true
			w.doneIn[i] = s.epoch
			w.stores = append(w.stores, storeRec{epoch: s.epoch, idx: i})
		}
		s.outstanding--
		n := &w.notes[i]
		w.mu.Unlock()
		select {
		case s.acks <- bridge.Ack{Sequence: n.Sequence, ID: n.ID, Err: err}:
		case <-s.quit:
			return
		}
	}
}

func (s *chaosSink) Acks() <-chan bridge.Ack { return s.acks }

func (s *chaosSink) DeadLetter(_ context.Context, dl bridge.DeadLetter) error {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.crashed.Load() {
		return errors.New("dead process")
	}
	if dl.Kind != bridge.DeadLetterRejected || dl.Notification == nil {
		w.failf("dead letter %+v", dl)
		return nil
	}
	i := w.bySeq[dl.Notification.Sequence]
	if !w.rejected[i] || !bytes.Equal(dl.Raw, w.notes[i].CloudEvent) || dl.Reason == "" {
		w.failf("dead letter for %s: rejected %v raw %q reason %q", dl.Notification.ID, w.rejected[i], dl.Raw, dl.Reason)
	}
	if w.chance(0.3) {
		return errors.New("dlq: timeout")
	}
	w.dlq[i] = true
	w.doneIn[i] = s.epoch
	return nil
}

func (s *chaosSink) Close(context.Context) error { return nil }

// chaosStore checks every commit and fails some; after a crash nothing
// reaches the backing.
type chaosStore struct {
	*checkpoint.MemoryStore
	w               *world
	crashed         *atomic.Bool
	epoch           int
	pFail           float64
	lastOK, lastTry uint64
}

func (s *chaosStore) Commit(ctx context.Context, cp bridge.Checkpoint) error {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if cp.Sequence <= s.lastOK || cp.Sequence < s.lastTry {
		w.failf("lifetime %d: commit %d after committed %d / attempted %d", s.epoch, cp.Sequence, s.lastOK, s.lastTry)
	}
	s.lastTry = cp.Sequence
	idx, ok := w.bySeq[cp.Sequence]
	if !ok || cp.EventID != w.notes[idx].ID {
		w.failf("lifetime %d: commit of unknown position %+v", s.epoch, cp)
	}
	for i := idx; i >= 0 && ok; i-- {
		if !w.handled(i) {
			w.failf("lifetime %d: commit %d passes %s, which was not acknowledged", s.epoch, cp.Sequence, w.notes[i].ID)
			break
		}
		if i > 0 && s.lastOK >= w.notes[i-1].Sequence {
			break // checked by an earlier commit
		}
	}
	if s.crashed.Load() {
		return nil // the process is gone: nothing is written
	}
	if w.chance(s.pFail) {
		return errors.New("store unavailable")
	}
	if err := s.MemoryStore.Commit(ctx, cp); err != nil {
		return err
	}
	s.lastOK = cp.Sequence
	return nil
}

func keys(m map[int]bool) []int {
	var k []int
	for i := range m {
		k = append(k, i)
	}
	sort.Ints(k)
	return k
}

func joinLines(s []string) string {
	var b bytes.Buffer
	for _, l := range s {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}
