package e2ebench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// The fleet timeline: what a downstream consumer sees of each listener
// while one of two bridges is killed with kill -9 and later rejoins. The
// bench command draws it (aviso-bench -svg); TestFleetTimeline checks that
// nothing is lost or stored twice across it.

// FleetTimelineConfig configures FleetTimeline.
type FleetTimelineConfig struct {
	// Binary is the aviso-bridge executable (see BuildBinary).
	Binary string
	// Rates holds the live publish rate of each listener, per second: one
	// listener per rate (default 10, 20, 30 and 40, so that the lines of
	// the figure do not overlap).
	Rates []int
	// TTL is CHECKPOINT_LEASE_TTL (default 2s).
	TTL time.Duration
	// Before is the time from the start of publishing to the kill -9
	// (default 4s), Down the time from the kill to the killed bridge's
	// restart (default 6s), After the time from the two bridges' spreading
	// the listeners again to the end of publishing (default 2s).
	Before, Down, After time.Duration
	// Bucket is the width of a timeline sample (default 500ms).
	Bucket time.Duration
	// Settle caps each wait for a spread and for the last delivery
	// (default 60s).
	Settle time.Duration
	// Dir holds the JetStream store and the listener file (default: a
	// temporary directory).
	Dir string
	// Stderr, when set, receives the bridges' log lines.
	Stderr io.Writer
}

func (c FleetTimelineConfig) withDefaults() FleetTimelineConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if len(c.Rates) == 0 {
		c.Rates = []int{10, 20, 30, 40}
	}
	def(&c.TTL, 2*time.Second)
	def(&c.Before, 4*time.Second)
	def(&c.Down, 6*time.Second)
	def(&c.After, 2*time.Second)
	def(&c.Bucket, 500*time.Millisecond)
	def(&c.Settle, 60*time.Second)
	return c
}

// TimelineListener is one listener of a FleetTimeline run.
type TimelineListener struct {
	// Name is the listener's name; Event its event type.
	Name, Event string
	// FirstOn is the bridge that ran it before the kill -9.
	FirstOn string
	// Rate is its publish rate, per second.
	Rate int
	// Published is the number of notifications avisotest published for
	// it; Stored the number of messages of its subject in the stream
	// (JetStream drops a repeated Nats-Msg-Id, so a redelivery is not
	// stored twice).
	Published, Stored int
	// Counts holds the messages stored per bucket, from the start of
	// publishing.
	Counts []int
	// LongestGap is the longest time between two consecutive stored
	// messages (from the start of publishing for the first).
	LongestGap time.Duration
}

// TimelineMark is an event of a FleetTimeline run, from the start of
// publishing.
type TimelineMark struct {
	At    time.Duration
	Label string
}

// FleetTimelineResult is one run of FleetTimeline.
type FleetTimelineResult struct {
	TTL    time.Duration
	Bucket time.Duration
	// End is when publishing ended, from its start.
	End       time.Duration
	Listeners []TimelineListener
	Marks     []TimelineMark
}

// FleetTimeline runs a fleet of two aviso-bridge binaries, bridge-a and
// bridge-b (BRIDGE_STANDBY=true, CHECKPOINT_STORE=nats-kv and
// SINK=jetstream on an embedded nats-server, CHECKPOINT_LEASE_TTL=TTL,
// one listener per rate, from AVISO_FROM_ID=1). Once they have spread the
// listeners, avisotest publishes each listener's notifications at its
// rate; after Before bridge-a is killed with kill -9, after Down it is
// started again, and publishing ends After the two have spread the
// listeners again. When the stream holds every published notification,
// both bridges stop with SIGTERM (exit 0 expected) and the stream is read
// back: per listener, the messages stored per Bucket. Marks are the kill,
// bridge-b running every listener (its /status), the restart and the
// spread over both again. The spread closure follows a to the restarted
// process.
func FleetTimeline(ctx context.Context, cfg FleetTimelineConfig) (FleetTimelineResult, error) {
	cfg = cfg.withDefaults()
	res := FleetTimelineResult{TTL: cfg.TTL, Bucket: cfg.Bucket}
	n := len(cfg.Rates)
	if cfg.Binary == "" {
		return res, errors.New("FleetTimelineConfig.Binary: no aviso-bridge executable given (see BuildBinary)")
	}
	for i, r := range cfg.Rates {
		if r <= 0 {
			return res, fmt.Errorf("FleetTimelineConfig.Rates[%d]: %d is not a positive rate", i, r)
		}
		res.Listeners = append(res.Listeners, TimelineListener{Name: fmt.Sprintf("tl-%03d", i), Event: fmt.Sprintf("tl%03d", i), Rate: r})
	}
	fl, err := newBenchFleet(ctx, cfg.Binary, cfg.Dir, "tl", n, cfg.TTL, cfg.Stderr)
	if err != nil {
		return res, err
	}
	defer fl.close()
	url := fl.ns.ClientURL()
	if err := createStreams(ctx, url, map[string]string{bridgeStream: "aviso.>"}); err != nil {
		return res, err
	}
	start := func(id string) (*benchProc, error) { return fl.start(id, "AVISO_FROM_ID=1", "SINK=jetstream") }
	a, err := start("bridge-a")
	if err != nil {
		return res, err
	}
	b, err := start("bridge-b")
	if err != nil {
		return res, err
	}
	spread := func() bool { return spreadOver(ctx, n, a, b) }
	if err := b.poll(ctx, cfg.Settle, spread); err != nil {
		return res, fmt.Errorf("bridge-a and bridge-b spreading %d listeners: %w", n, err)
	}
	held, err := holders(ctx, a, b)
	if err != nil {
		return res, err
	}
	for i := range res.Listeners {
		res.Listeners[i].FirstOn = held[res.Listeners[i].Name]
	}

	t0 := time.Now()
	pub := publishTimeline(fl.src, res.Listeners, t0)
	defer pub.finish()
	mark := func(label string) { res.Marks = append(res.Marks, TimelineMark{At: time.Since(t0), Label: label}) }
	if err := waitUntil(ctx, t0.Add(cfg.Before), b); err != nil {
		return res, err
	}
	if err := a.cmd.Process.Kill(); err != nil {
		return res, fmt.Errorf("kill -9 bridge-a: %w", err)
	}
	mark("kill -9 bridge-a")
	a.kill()
	if err := b.poll(ctx, cfg.Settle, func() bool { return runsAll(ctx, n, b) }); err != nil {
		return res, fmt.Errorf("bridge-b taking over: %w", err)
	}
	mark("bridge-b runs all")
	if err := waitUntil(ctx, t0.Add(cfg.Before+cfg.Down), b); err != nil {
		return res, err
	}
	if a, err = start("bridge-a"); err != nil {
		return res, err
	}
	mark("bridge-a restarts")
	if err := a.poll(ctx, cfg.Settle, spread); err != nil {
		return res, fmt.Errorf("bridge-a rejoining: %w", err)
	}
	mark("spread again")
	if err := waitUntil(ctx, time.Now().Add(cfg.After), a); err != nil {
		return res, err
	}
	published := pub.finish()
	res.End = time.Since(t0)
	total := 0
	for i := range res.Listeners {
		res.Listeners[i].Published = published[res.Listeners[i].Event]
		total += res.Listeners[i].Published
	}
	stored := func() bool {
		n, err := streamMsgs(ctx, url, bridgeStream)
		return err == nil && n >= uint64(total)
	}
	if err := a.poll(ctx, cfg.Settle, stored); err != nil {
		n, _ := streamMsgs(ctx, url, bridgeStream)
		return res, fmt.Errorf("stream %s holding the %d notifications published (it holds %d): %w", bridgeStream, total, n, err)
	}
	for _, p := range []*benchProc{a, b} {
		if err := p.stop(30 * time.Second); err != nil {
			return res, err
		}
	}
	return res, readTimeline(ctx, url, t0, &res)
}

// waitUntil waits until at, failing when p exits first.
func waitUntil(ctx context.Context, at time.Time, p *benchProc) error {
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-t.C: // the timeline's schedule
		return nil
	case <-p.done:
		return p.exitErr("during the timeline")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// holders returns, per listener name, which of ps runs it, as their
// /status says.
func holders(ctx context.Context, ps ...*benchProc) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range ps {
		st, err := status(ctx, p)
		if err != nil {
			return nil, err
		}
		for i, l := range st.Listeners {
			if st.runsItself(i) {
				out[l.Name] = st.Instance
			}
		}
	}
	return out, nil
}

// timelinePublisher publishes at a steady total rate, round robin over the
// listeners' event types.
type timelinePublisher struct {
	mu    sync.Mutex
	count map[string]int
	stop  chan struct{}
	done  chan struct{}
}

func publishTimeline(src *avisotest.Server, ls []TimelineListener, t0 time.Time) *timelinePublisher {
	p := &timelinePublisher{count: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tk := time.NewTicker(10 * time.Millisecond) // pacing, not synchronisation
		defer tk.Stop()
		sent := make([]int, len(ls))
		for {
			elapsed := time.Since(t0).Seconds()
			for i, l := range ls {
				for due := int(elapsed * float64(l.Rate)); sent[i] < due; sent[i]++ {
					src.Publish(l.Event, nil, map[string]any{"i": sent[i]})
					p.mu.Lock()
					p.count[l.Event]++
					p.mu.Unlock()
				}
			}
			select {
			case <-p.stop:
				return
			case <-tk.C:
			}
		}
	}()
	return p
}

// finish stops publishing and returns the count per event type.
func (p *timelinePublisher) finish() map[string]int {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.count))
	for k, v := range p.count {
		out[k] = v
	}
	return out
}

// readTimeline reads every message of the bridge stream back and fills
// each listener's Stored, Counts and LongestGap from the messages' stored
// times.
func readTimeline(ctx context.Context, url string, t0 time.Time, res *FleetTimelineResult) error {
	return withStream(ctx, url, bridgeStream, func(st jetstream.Stream, info *jetstream.StreamInfo) error {
		return fillTimeline(ctx, st, info, t0, res)
	})
}

// fillTimeline reads the messages of st (info) into res.
func fillTimeline(ctx context.Context, st jetstream.Stream, info *jetstream.StreamInfo, t0 time.Time, res *FleetTimelineResult) error {
	index := map[string]int{}
	last := make([]time.Duration, len(res.Listeners))
	for i, l := range res.Listeners {
		index["aviso."+l.Event] = i
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			return fmt.Errorf("stream %s message %d: %w", bridgeStream, seq, err)
		}
		i, ok := index[m.Subject]
		if !ok {
			return fmt.Errorf("stream %s message %d: subject %q is none of the listeners'", bridgeStream, seq, m.Subject)
		}
		at := max(m.Time.Sub(t0), 0)
		l := &res.Listeners[i]
		b := int(at / res.Bucket)
		for len(l.Counts) <= b {
			l.Counts = append(l.Counts, 0)
		}
		l.Counts[b]++
		l.Stored++
		l.LongestGap = max(l.LongestGap, at-last[i])
		last[i] = at
	}
	// Every series spans the whole run.
	n := 0
	for _, l := range res.Listeners {
		n = max(n, len(l.Counts))
	}
	for i := range res.Listeners {
		for len(res.Listeners[i].Counts) < n {
			res.Listeners[i].Counts = append(res.Listeners[i].Counts, 0)
		}
	}
	return nil
}

// Label names the listener with its rate and the bridge that ran it
// before the kill.
func (l TimelineListener) Label() string {
	return fmt.Sprintf("%s, %d/s (first on %s)", l.Name, l.Rate, l.FirstOn)
}
