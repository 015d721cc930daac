package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/integration/harness"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// Fleet tests (issue 14, interface.md section 7): several listeners per
// bridge, standby, failover and fair spreading through the checkpoint
// store, proved on the binary.

const (
	// fleetTTL is CHECKPOINT_LEASE_TTL of the fleet tests: short, so that
	// a kill -9 costs seconds, not the 6 s default.
	fleetTTL = 2 * time.Second
	// fleetSize is the number of listeners of the fleet tests.
	fleetSize = 9
	// statusSlack is what observing a change through GET /status adds to
	// the contract's bound: a poll every 10 ms of two or three processes'
	// /status on a loaded 2-core machine.
	statusSlack = 500 * time.Millisecond
	// fleetRate is the total publish rate of the live stream, per second
	// (spread round-robin over the listeners' event types).
	fleetRate = 270
)

// fleetEvent is the event type of listener i (one event type per listener,
// so that every listener has its own sequence counter in avisotest, its own
// subject aviso.<event> and its own topic aviso.<event>).
func fleetEvent(i int) string { return "fleet" + strconv.Itoa(i) }

// fleetName is the name of listener i in the listener file.
func fleetName(i int) string { return "watch-" + strconv.Itoa(i) }

// writeFleetFile writes a listener file in the aviso CLI format with n
// listeners (name watch-i, event fleet-i) and returns its path.
func writeFleetFile(t testing.TB, dir string, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("listeners:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: %s\n    event: %s\n    triggers:\n      - type: echo\n", fleetName(i), fleetEvent(i))
	}
	return writeTestFile(t, dir, "listeners.yaml", b.String())
}

func writeTestFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// listenerStatus is one entry of GET /status (interface.md section 5).
// Members whose JSON type the contract does not fix are kept raw.
type listenerStatus struct {
	Name                 string          `json:"name"`
	EventType            string          `json:"event_type"`
	Identifier           json.RawMessage `json:"identifier"`
	State                string          `json:"state"`
	Holder               string          `json:"holder"`
	Checkpoint           json.RawMessage `json:"checkpoint"`
	LastForwarded        json.RawMessage `json:"last_forwarded"`
	LastNotificationTime json.RawMessage `json:"last_notification_time"`
	InFlight             json.RawMessage `json:"in_flight"`
	Error                string          `json:"error"`
}

// bridgeStatus is the body of GET /status.
type bridgeStatus struct {
	Instance  string           `json:"instance"`
	Version   string           `json:"version"`
	Listeners []listenerStatus `json:"listeners"`
}

// listener returns the entry named name.
func (s bridgeStatus) listener(name string) (listenerStatus, bool) {
	for _, l := range s.Listeners {
		if l.Name == name {
			return l, true
		}
	}
	return listenerStatus{}, false
}

// runs returns the listeners this bridge runs itself: state running and
// the holder this bridge (or not named), sorted.
func (s bridgeStatus) runs() []string {
	var out []string
	for _, l := range s.Listeners {
		if l.State == string(bridge.ListenerRunning) && (l.Holder == s.Instance || l.Holder == "") {
			out = append(out, l.Name)
		}
	}
	slices.Sort(out)
	return out
}

// getStatus GETs /status of a bridge.
func getStatus(ctx context.Context, p *proc) (bridgeStatus, error) {
	code, body, err := httpGet(ctx, p.HTTPAddr, "/status")
	if err != nil {
		return bridgeStatus{}, err
	}
	if code != http.StatusOK {
		return bridgeStatus{}, fmt.Errorf("%s: GET /status: %d %s", p.Name, code, body)
	}
	var st bridgeStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return bridgeStatus{}, fmt.Errorf("%s: GET /status: %w: %s", p.Name, err, body)
	}
	return st, nil
}

// listenerStates reads aviso_bridge_listener_state from /metrics and
// returns, per listener, the state whose series is 1.
func listenerStates(ctx context.Context, p *proc) (map[string]string, error) {
	code, body, err := httpGet(ctx, p.HTTPAddr, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%s: GET /metrics: %d", p.Name, code)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(body), "\n") {
		labels, value, ok := metricLine(line, "aviso_bridge_listener_state")
		if !ok || value != 1 {
			continue
		}
		out[labels["listener"]] = labels["state"]
	}
	return out, nil
}

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// metricLine parses one sample line of the Prometheus text format for the
// metric name.
func metricLine(line, name string) (map[string]string, float64, bool) {
	rest, ok := strings.CutPrefix(line, name+"{")
	if !ok {
		return nil, 0, false
	}
	i := strings.LastIndexByte(rest, '}')
	if i < 0 {
		return nil, 0, false
	}
	labels := map[string]string{}
	for _, m := range labelRE.FindAllStringSubmatch(rest[:i], -1) {
		labels[m[1]] = m[2]
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(rest[i+1:]), 64)
	if err != nil {
		return nil, 0, false
	}
	return labels, v, true
}

// fleetBridge is one bridge process of a fleet test.
type fleetBridge struct {
	*proc
	id string // BRIDGE_INSTANCE_ID
}

// fleetSink is the sink (and store) of a fleet test, read back per
// listener event type.
type fleetSink struct {
	name string
	// start starts the broker and returns e with the sink and the store
	// configured.
	start func(t *testing.T, e env) (env, fleetProbe)
	// storedDuplicates: after a kill -9 the sink may store the killed
	// bridge's in-flight window again (Kafka); JetStream may not.
	storedDuplicates bool
}

// fleetProbe reads a fleet test's destination and store.
type fleetProbe struct {
	// read returns the sequences stored for event type et, in order.
	read func(et string) []uint64
	// last returns the newest sequence stored for et.
	last func(et string) (uint64, bool)
	// stored returns the checkpoint stored under key.
	stored func(key string) (storedCheckpoint, bool)
	// pollEvery is how often last may be polled (reading Kafka is dearer).
	pollEvery time.Duration
}

var fleetSinks = []fleetSink{
	{
		name: "nats-kv+jetstream",
		start: func(t *testing.T, e env) (env, fleetProbe) {
			ns := natstest.NewServer(t)
			js := ns.JetStream(t)
			return jetStreamEnv(e, ns).With("CHECKPOINT_STORE", "nats-kv"), fleetProbe{
				read:      func(et string) []uint64 { return readJetStreamEvent(t, ns, et) },
				last:      func(et string) (uint64, bool) { return jetStreamLastEvent(t, js, et) },
				stored:    func(key string) (storedCheckpoint, bool) { return kvCheckpoint(t, js, key) },
				pollEvery: 20 * time.Millisecond,
			}
		},
	},
	{
		name: "kafka",
		start: func(t *testing.T, e env) (env, fleetProbe) {
			cl := newKafka(t)
			return kafkaEnv(e, cl).With("CHECKPOINT_STORE", "kafka"), fleetProbe{
				read: func(et string) []uint64 { return readKafkaEvent(t, cl, et) },
				last: func(et string) (uint64, bool) {
					s := readKafkaEvent(t, cl, et)
					if len(s) == 0 {
						return 0, false
					}
					return slices.Max(s), true
				},
				stored:    func(key string) (storedCheckpoint, bool) { return kafkaCheckpoint(t, cl, key) },
				pollEvery: 250 * time.Millisecond,
			}
		},
		storedDuplicates: true,
	},
}

// readJetStreamEvent reads the messages of event type et (subject
// aviso.<et>) from stream AVISO and returns their sequences in stream order.
func readJetStreamEvent(t testing.TB, ns *natstest.Server, et string) []uint64 {
	t.Helper()
	js := ns.JetStream(t)
	msgs := natstest.ReadStream(t, js, streamName, "aviso."+et)
	out := make([]uint64, 0, len(msgs))
	for _, m := range msgs {
		id := m.Headers().Get(jetstream.MsgIDHeader)
		if ce := m.Headers().Get("ce-id"); ce != id {
			t.Fatalf("JetStream message on %s: Nats-Msg-Id %q, ce-id %q", m.Subject(), id, ce)
		}
		out = append(out, harness.SeqOfID(t, et, id))
	}
	return out
}

// jetStreamLastEvent returns the sequence of the newest message of et.
func jetStreamLastEvent(t testing.TB, js jetstream.JetStream, et string) (uint64, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, streamName)
	if err != nil {
		return 0, false
	}
	m, err := st.GetLastMsgForSubject(ctx, "aviso."+et)
	if err != nil {
		return 0, false
	}
	return harness.SeqOfID(t, et, m.Header.Get(jetstream.MsgIDHeader)), true
}

// readKafkaEvent reads topic aviso.<et> and returns the sequences of its
// records in offset order (nil while the topic does not exist).
func readKafkaEvent(t testing.TB, cl *kafkatest.Cluster, et string) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := "aviso." + et
	recs, err := cl.Records(ctx, topic)
	if err != nil {
		return nil
	}
	out := make([]uint64, 0, len(recs))
	part := int32(-1)
	for _, r := range recs {
		if part >= 0 && r.Partition != part {
			t.Fatalf("topic %s: records of one event type in partitions %d and %d", topic, part, r.Partition)
		}
		part = r.Partition
		id, ok := kafkatest.Header(r, "ce_id")
		if !ok {
			t.Fatalf("topic %s offset %d: no ce_id header", topic, r.Offset)
		}
		out = append(out, harness.SeqOfID(t, et, id))
	}
	return out
}

// fleetPublisher publishes a live stream round-robin over event types at
// about rate per second until stop is called.
type fleetPublisher struct {
	mu   sync.Mutex
	seqs map[string][]uint64 // per event type, in publish order
	stop chan struct{}
	done chan struct{}
}

func publishFleet(ctx context.Context, srv *avisotest.Server, events []string, rate int) *fleetPublisher {
	p := &fleetPublisher{seqs: map[string][]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		const tick = 10 * time.Millisecond
		per := max(1, rate*int(tick)/int(time.Second))
		tk := time.NewTicker(tick) // pacing, not synchronisation
		defer tk.Stop()
		for i := 0; ; {
			for range per {
				et := events[i%len(events)]
				s := srv.Publish(et, identifier(i), map[string]any{"i": i})
				p.mu.Lock()
				p.seqs[et] = append(p.seqs[et], s)
				p.mu.Unlock()
				i++
			}
			select {
			case <-ctx.Done():
				return
			case <-p.stop:
				return
			case <-tk.C:
			}
		}
	}()
	return p
}

// finish stops publishing and returns what was published, per event type.
func (p *fleetPublisher) finish() map[string][]uint64 {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.seqs)
}

// total returns how many notifications were published so far.
func (p *fleetPublisher) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.seqs {
		n += len(s)
	}
	return n
}

// fleet is the bridges of a fleet test sharing one configuration.
type fleet struct {
	t     *testing.T
	base  env
	dir   string
	names []string
	all   []*fleetBridge // every bridge started, in start order
}

// start starts a bridge with instance id id.
func (f *fleet) start(id string) *fleetBridge {
	f.t.Helper()
	p := startBridge(f.t, id, "", f.base.With("BRIDGE_INSTANCE_ID", id))
	b := &fleetBridge{proc: p, id: id}
	f.all = append(f.all, b)
	return b
}

// live returns the bridges still running.
func (f *fleet) live() []*fleetBridge {
	var out []*fleetBridge
	for _, b := range f.all {
		if !b.Exited() {
			out = append(out, b)
		}
	}
	return out
}

// spread is who runs which listener, as the bridges' /status say.
type spread struct {
	runners map[string][]string // listener -> instance ids running it
	held    map[string][]string // instance id -> listeners it runs
}

func (s spread) String() string {
	ids := slices.Sorted(maps.Keys(s.held))
	parts := make([]string, 0, len(ids))
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("%s:%v", id, s.held[id]))
	}
	return strings.Join(parts, " ")
}

// complete reports whether every listener of names runs on exactly one
// bridge.
func (s spread) complete(names []string) bool {
	for _, n := range names {
		if len(s.runners[n]) != 1 {
			return false
		}
	}
	return true
}

// maxHeld is the most listeners one bridge runs.
func (s spread) maxHeld() int {
	m := 0
	for _, l := range s.held {
		m = max(m, len(l))
	}
	return m
}

// observe reads /status of bridges; an error when one that still runs does
// not answer.
func observe(ctx context.Context, bridges []*fleetBridge) (spread, error) {
	s := spread{runners: map[string][]string{}, held: map[string][]string{}}
	for _, b := range bridges {
		st, err := getStatus(ctx, b.proc)
		if err != nil {
			if b.Exited() {
				continue
			}
			return s, err
		}
		if st.Instance != b.id {
			return s, fmt.Errorf("%s: /status instance %q, want BRIDGE_INSTANCE_ID %q", b.Name, st.Instance, b.id)
		}
		s.held[b.id] = st.runs()
		for _, n := range st.runs() {
			s.runners[n] = append(s.runners[n], b.id)
		}
	}
	return s, nil
}

// waitSpread polls the bridges' /status until cond holds and returns the
// spread and when it was first seen; it fails the test after timeout.
func waitSpread(t *testing.T, bridges []*fleetBridge, timeout time.Duration, what string, cond func(spread) bool) (spread, time.Time) {
	t.Helper()
	var last spread
	var lastErr error
	var at time.Time
	ok := eventually(timeout, func() bool {
		s, err := observe(t.Context(), bridges)
		last, lastErr = s, err
		if err == nil && cond(s) {
			at = time.Now()
			return true
		}
		return false
	})
	if !ok {
		t.Fatalf("%s: not within %v; last spread %v (err %v)", what, timeout, last, lastErr)
	}
	return last, at
}

// fleetBase is the environment of every bridge of a fleet: the listener
// file, history from sequence 1, standby, the short lease.
func fleetBase(aviso *avisotest.Server, file string) env {
	return env{
		"AVISO_URL":            aviso.URL,
		"AVISO_LISTENERS_FILE": file,
		"AVISO_FROM_ID":        "1",
		"BRIDGE_STANDBY":       "true",
		"CHECKPOINT_LEASE_TTL": fleetTTL.String(),
		"BRIDGE_MAX_IN_FLIGHT": strconv.Itoa(maxInFlight),
	}
}

// waitDelivered waits until the destination holds, for every event type,
// the last sequence published.
func waitDelivered(t *testing.T, probe fleetProbe, want map[string][]uint64, timeout time.Duration) {
	t.Helper()
	pending := func() []string {
		var out []string
		for et, seqs := range want {
			if len(seqs) == 0 {
				continue
			}
			if s, _ := probe.last(et); s != seqs[len(seqs)-1] {
				out = append(out, fmt.Sprintf("%s: newest %d, want %d", et, s, seqs[len(seqs)-1]))
			}
		}
		slices.Sort(out)
		return out
	}
	deadline := time.Now().Add(timeout)
	for {
		p := pending()
		if len(p) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered within %v: %v", timeout, p)
		}
		select {
		case <-time.After(probe.pollEvery): // poll interval
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

// checkFleetDelivery reads every event type back: nothing missing, order
// kept, at most maxDup[et] duplicates; and the stored checkpoint of every
// listener is the last notification, released.
func checkFleetDelivery(t *testing.T, aviso *avisotest.Server, probe fleetProbe, want map[string][]uint64, maxDup map[string]int) {
	t.Helper()
	total, dups := 0, 0
	for i := range fleetSize {
		et := fleetEvent(i)
		tl := requireComplete(t, fleetName(i), probe.read(et), want[et], maxDup[et])
		total += len(want[et])
		dups += tl.Duplicates
		key, err := bridge.CheckpointKey(aviso.URL, et, json.RawMessage(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		c, ok := probe.stored(key)
		if w := lastOf(want[et]); !ok || c.seq() != w || c.Owner != "" {
			t.Errorf("%s: stored checkpoint %+v (seq %d, found %v), want %d and released", fleetName(i), c, c.seq(), ok, w)
		}
	}
	t.Logf("%d notifications over %d listeners, %d duplicates stored", total, fleetSize, dups)
}

// stopGracefully sends SIGTERM and expects exit 0.
func stopGracefully(t *testing.T, b *fleetBridge) {
	t.Helper()
	b.Signal(syscall.SIGTERM)
	if code := b.Wait(startupWait); code != 0 {
		t.Errorf("%s: exit code %d after SIGTERM, want 0", b.Name, code)
	}
}

// TestFleetFailover: three bridges (BRIDGE_STANDBY=true, one listener file
// of nine listeners, CHECKPOINT_LEASE_TTL=2s) share the store, while
// avisotest publishes a live stream on the nine event types:
//
//  1. spread: each bridge runs 3 (GET /status, and the
//     aviso_bridge_listener_state series agree);
//  2. kill -9 of one: the two others run all nine within TTL + 1 s of the
//     kill, none more than ceil(9/2);
//  3. SIGTERM of another: it exits 0 and the last one runs all nine before
//     the lease TTL could have lapsed (the graceful handover releases; the
//     bench measures its time against the 1 s target);
//  4. a new bridge joins: it gets its share (the single bridge hands over
//     until none runs more than ceil(9/2));
//
// then every notification is in the sink once (JetStream: 0 stored
// duplicates; Kafka: duplicates only in listeners the killed bridge ran, at
// most its in-flight window each), in order per listener, and every
// listener's checkpoint is its last notification, released.
func TestFleetFailover(t *testing.T) {
	for _, sk := range fleetSinks {
		t.Run(sk.name, func(t *testing.T) {
			aviso := avisotest.NewServer(t)
			dir := t.TempDir()
			file := writeFleetFile(t, dir, fleetSize)
			base, probe := sk.start(t, fleetBase(aviso, file))
			f := &fleet{t: t, base: base, dir: dir}
			events := make([]string, fleetSize)
			for i := range fleetSize {
				f.names = append(f.names, fleetName(i))
				events[i] = fleetEvent(i)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			pub := publishFleet(ctx, aviso, events, fleetRate)
			defer pub.finish()

			// 1. Spread.
			b1, b2, b3 := f.start("fleet-a"), f.start("fleet-b"), f.start("fleet-c")
			s, _ := waitSpread(t, f.live(), 45*time.Second, "spread 3/3/3", func(s spread) bool {
				return s.complete(f.names) && len(s.held["fleet-a"]) == 3 && len(s.held["fleet-b"]) == 3 && len(s.held["fleet-c"]) == 3
			})
			t.Logf("spread: %v", s)
			checkStatusListsAll(t, b2, f.names, s)
			checkStatesAgree(t, []*fleetBridge{b1, b2, b3}, f.names)

			// 2. kill -9 of b1.
			killedRan := s.held[b1.id]
			killAt := time.Now()
			b1.Kill9()
			s, at := waitSpread(t, []*fleetBridge{b2, b3}, 30*time.Second, "take-over after kill -9", func(s spread) bool {
				return s.complete(f.names)
			})
			took := at.Sub(killAt)
			t.Logf("kill -9 of %s (ran %v): all nine running again after %v: %v", b1.id, killedRan, took, s)
			if bound := fleetTTL + time.Second + statusSlack; took > bound {
				t.Errorf("take-over after kill -9 took %v, want at most TTL + 1 s (%v, plus %v to observe it)", took, fleetTTL+time.Second, statusSlack)
			}
			_, _ = waitSpread(t, []*fleetBridge{b2, b3}, 10*time.Second, "fair share of two", func(s spread) bool {
				return s.complete(f.names) && s.maxHeld() <= 5
			})

			// 3. SIGTERM of b2: handover at once.
			termAt := time.Now()
			b2.Signal(syscall.SIGTERM)
			s, at = waitSpread(t, []*fleetBridge{b3}, 30*time.Second, "handover after SIGTERM", func(s spread) bool {
				return s.complete(f.names)
			})
			took = at.Sub(termAt)
			t.Logf("SIGTERM of %s: all nine on %s after %v", b2.id, b3.id, took)
			// The ≤ 1 s target is measured by the bench (`aviso-bench -only
			// fleet`), not asserted here (no wall-clock targets in tests): what
			// the test proves is that the handover is a release, not a lapse,
			// so it must beat the lease TTL.
			if took >= fleetTTL {
				t.Errorf("handover after SIGTERM took %v, want less than the lease TTL %v (a release, not a lapse)", took, fleetTTL)
			}
			if code := b2.Wait(startupWait); code != 0 {
				t.Errorf("%s: exit code %d after SIGTERM, want 0", b2.Name, code)
			}

			// 4. A new bridge joins and gets its share.
			b4 := f.start("fleet-d")
			share := (fleetSize + 1) / 2 // ceil(9/2)
			s, _ = waitSpread(t, []*fleetBridge{b3, b4}, 45*time.Second, "joiner's share", func(s spread) bool {
				return s.complete(f.names) && s.maxHeld() <= share && len(s.held[b4.id]) >= fleetSize-share
			})
			t.Logf("after %s joined: %v", b4.id, s)

			// A little more live stream on the new spread, then drain.
			more := pub.total() + fleetRate
			if !eventually(30*time.Second, func() bool { return pub.total() >= more }) {
				t.Fatalf("publisher stalled at %d", pub.total())
			}
			want := pub.finish()
			waitDelivered(t, probe, want, 60*time.Second)
			stopGracefully(t, b3)
			stopGracefully(t, b4)

			maxDup := map[string]int{}
			if sk.storedDuplicates {
				for _, n := range killedRan {
					maxDup["fleet"+strings.TrimPrefix(n, "watch-")] = maxInFlight
				}
			}
			checkFleetDelivery(t, aviso, probe, want, maxDup)
		})
	}
}

// checkStatusListsAll checks that /status of b lists every configured
// listener, with its event type and a state of the contract, names the
// bridge and a version, and that a listener b has in standby names the
// bridge running it (per s) as its holder; the holder may lag one fleet
// round behind, so that is polled for up to two TTLs.
func checkStatusListsAll(t *testing.T, b *fleetBridge, names []string, s spread) {
	t.Helper()
	states := map[string]bool{}
	for _, st := range bridge.ListenerStates() {
		states[string(st)] = true
	}
	var problems []string
	ok := eventually(2*fleetTTL, func() bool {
		problems = nil
		st, err := getStatus(t.Context(), b.proc)
		if err != nil {
			problems = append(problems, err.Error())
			return false
		}
		if st.Version == "" {
			problems = append(problems, "no version")
		}
		if len(st.Listeners) != len(names) {
			problems = append(problems, fmt.Sprintf("%d listeners listed, want %d", len(st.Listeners), len(names)))
		}
		for i, n := range names {
			l, ok := st.listener(n)
			switch {
			case !ok:
				problems = append(problems, "listener "+n+" not listed")
			case l.EventType != fleetEvent(i) || !states[l.State]:
				problems = append(problems, fmt.Sprintf("listener %s: event_type %q state %q", n, l.EventType, l.State))
			case l.State == string(bridge.ListenerStandby) && (len(s.runners[n]) != 1 || l.Holder != s.runners[n][0]):
				problems = append(problems, fmt.Sprintf("listener %s: standby with holder %q, runs on %v", n, l.Holder, s.runners[n]))
			}
		}
		return len(problems) == 0
	})
	if !ok {
		t.Errorf("%s: /status: %v", b.Name, problems)
	}
}

// checkStatesAgree checks that aviso_bridge_listener_state{listener,state}
// says running for exactly the listeners /status says each bridge runs.
func checkStatesAgree(t *testing.T, bridges []*fleetBridge, names []string) {
	t.Helper()
	for _, b := range bridges {
		st, err := getStatus(t.Context(), b.proc)
		if err != nil {
			t.Fatal(err)
		}
		states, err := listenerStates(t.Context(), b.proc)
		if err != nil {
			t.Fatal(err)
		}
		runs := st.runs()
		for _, n := range names {
			isRun := states[n] == string(bridge.ListenerRunning)
			if isRun != slices.Contains(runs, n) {
				t.Errorf("%s: listener %s: listener_state says %q, /status runs %v", b.Name, n, states[n], runs)
			}
			if states[n] == "" {
				t.Errorf("%s: no aviso_bridge_listener_state{listener=%q} series at 1", b.Name, n)
			}
		}
	}
}

// ceilDiv is ceil(a/b).
func ceilDiv(a, b int) int { return int(math.Ceil(float64(a) / float64(b))) }
