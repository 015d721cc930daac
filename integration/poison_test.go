package integration

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// mixed publishes n notifications, those whose index is in poison as poison
// notifications (every delivery is a "CloudEvent creation failed" error
// frame), and returns the sequences of the good ones and of the poisons.
func mixed(srv *avisotest.Server, n int, poison []int) (good, bad []uint64) {
	for i := range n {
		if slices.Contains(poison, i) {
			bad = append(bad, publishPoison(srv, i))
			continue
		}
		good = append(good, srv.Publish(eventType, identifier(i), map[string]any{"i": i}))
	}
	return good, bad
}

// publishPoison stores notification i as a poison one: every delivery of
// it is aviso's "CloudEvent creation failed" error frame with its sequence.
func publishPoison(srv *avisotest.Server, i int) uint64 {
	return srv.PublishPoison(eventType, identifier(i), "")
}

// TestPoisonNotifications: stored notifications aviso-server cannot turn
// into a CloudEvent (every delivery, replay or live, is the "CloudEvent
// creation failed" error frame with their sequence): several apart,
// adjacent, at the edges of replay-cap pages, during live. Every other
// notification arrives once, in order; the bridge neither reconnects on them
// nor loops (reconnects_total stays at the page boundaries);
// aviso_bridge_unrenderable_total equals the number of poisons; the
// checkpoint reaches the last notification; SIGTERM exits 0.
func TestPoisonNotifications(t *testing.T) {
	const capN = 100
	cases := []struct {
		name string
		// cap is the replay cap (0: none); pages is the number of
		// replay_limit_reached reconnects it causes at most.
		cap, pages int
		history    int
		poison     []int // indexes of the history
		live       int
		livePoison []int // indexes of the live notifications
		// cutAfter > 0 cuts the first connection in the middle of the
		// good notification after the cutAfter-th: the one reconnect
		// (eof) allowed, and it must ask for the sequence after the
		// poisons just before the cut.
		cutAfter int
	}{
		{name: "several apart, in the history", history: 600, poison: []int{50, 290, 599}},
		{name: "adjacent, in the history", history: 600, poison: []int{100, 101, 102, 103}},
		{
			// A poison does not count against the cap, so the server
			// sends it before the limit frame that the next good one
			// triggers: the first frame of all (nothing forwarded yet), the
			// last two frames of page 1 (after its capN good ones), the
			// last frame of page 2, the last of the history.
			name: "first and last of cap pages", cap: capN, pages: 4, history: 4*capN + 50,
			poison: []int{0, capN + 1, capN + 2, 2*capN + 3, 4*capN + 49},
		},
		{name: "adjacent, then a cut", history: 400, poison: []int{150, 151}, cutAfter: 150},
		{name: "during live", history: 200, poison: []int{10}, live: 600, livePoison: []int{0, 1, 250, 599}},
	}
	forVersions(t, func(t *testing.T, v avisoVersion) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				opts := slices.Clone(v.opts)
				if tc.cap > 0 {
					opts = append(opts, avisotest.WithReplayLimit(tc.cap))
				}
				srv := avisotest.NewServer(t, opts...)
				if tc.cutAfter > 0 {
					srv.Fault(avisotest.CutMidFrame{After: tc.cutAfter})
				}
				dir := t.TempDir()
				good, bad := mixed(srv, tc.history, tc.poison)
				p := startBridge(t, "bridge", dir, avisoEnv(srv, dir).With("CHECKPOINT_INTERVAL", "100ms"))
				ids := newStdoutIDs(t, p)
				if tc.live > 0 {
					p.WaitEvent(startupWait, "aviso.replay.completed")
					// Live: paced so that they arrive one by one.
					for i := range tc.live {
						if slices.Contains(tc.livePoison, i) {
							bad = append(bad, publishPoison(srv, tc.history+i))
						} else {
							good = append(good, srv.Publish(eventType, identifier(i), map[string]any{"i": i}))
						}
						if i%50 == 49 {
							waitStdout(t, p, ids, good, startupWait)
						}
					}
				}
				waitStdout(t, p, ids, good, startupWait)
				last := max(good[len(good)-1], bad[len(bad)-1])
				if !eventually(startupWait, func() bool {
					cp, _ := checkpointSeq(t, filepath.Join(dir, "checkpoint.json"))
					return cp >= good[len(good)-1]
				}) {
					cp, _ := checkpointSeq(t, filepath.Join(dir, "checkpoint.json"))
					t.Errorf("checkpoint %d, want at least %d", cp, good[len(good)-1])
				}
				samples, _ := scrape(t, p.HTTPAddr)
				rc := reconnectCounts(samples)
				t.Logf("reconnects: %s; poisons %v, last %d", nonZero(rc), bad, last)
				if got := samples["aviso_bridge_unrenderable_total"]; got != float64(len(bad)) {
					t.Errorf("aviso_bridge_unrenderable_total = %v, want %d (one per poison notification)", got, len(bad))
				}
				if tc.cutAfter > 0 {
					if rc["eof"] != 1 {
						t.Errorf("eof reconnects = %v, want 1 (the cut)", rc["eof"])
					}
					rc["eof"] = 0
					if reqs := srv.Requests(); len(reqs) < 2 || reqs[1].FromID != strconv.FormatUint(bad[len(tc.poison)-1]+1, 10) {
						t.Errorf("requests %v: want the reconnect after the cut from %d (past the poisons %v)", requestBodies(reqs), bad[len(tc.poison)-1]+1, bad)
					}
				}
				if n := sumCounts(rc) - rc["replay_limit_reached"]; n > 0 {
					t.Errorf("reconnects other than page boundaries: %s (a poison must not cause a reconnect)", nonZero(rc))
				}
				if n := rc["replay_limit_reached"]; n > float64(tc.pages) {
					t.Errorf("replay_limit_reached reconnects = %v, want at most %d (one per page)", n, tc.pages)
				}
				if n := p.CountEvent("aviso.sequence.abandoned"); n > 0 {
					t.Errorf("%d aviso.sequence.abandoned: poisons were retried until given up", n)
				}
				var logged []uint64
				for _, r := range p.Logs() {
					if r.Msg() == "aviso.notification.unrenderable" && r.Str("level") == "ERROR" && r.Str("message") != "" {
						seq, _ := strconv.ParseUint(r.Str("sequence"), 10, 64)
						logged = append(logged, seq)
					}
				}
				if !slices.Equal(logged, bad) {
					t.Errorf("ERROR aviso.notification.unrenderable logged for sequences %v, want once for each poison %v", logged, bad)
				}
				p.Signal(syscall.SIGTERM)
				if code := p.Wait(startupWait); code != 0 {
					t.Errorf("exit code %d after SIGTERM, want 0", code)
				}
				requireComplete(t, "stdout", ids.update(), good, 0)
			})
		}
	})
}

// TestPoisonDeadLetter: with BRIDGE_ON_REJECT=dlq and SINK=jetstream, each
// poison notification (history and live) becomes one dead-letter message of
// kind unrenderable on the DLQ subject, naming its sequence with the
// server's message; every other notification is stored once, in order.
func TestPoisonDeadLetter(t *testing.T) {
	forVersions(t, func(t *testing.T, v avisoVersion) {
		srv := avisotest.NewServer(t, v.opts...)
		ns := natstest.NewServer(t)
		dir := t.TempDir()
		good, bad := mixed(srv, 300, []int{0, 120, 121, 299})
		e := jetStreamEnv(avisoEnv(srv, dir), ns).With("BRIDGE_ON_REJECT", "dlq", "CHECKPOINT_INTERVAL", "100ms")
		p := startBridge(t, "bridge", dir, e)
		p.WaitEvent(startupWait, "aviso.replay.completed")
		g, b := mixed(srv, 50, []int{25})
		good, bad = append(good, g...), append(bad, b...)
		js := ns.JetStream(t)
		if !eventually(startupWait, func() bool { return jetStreamCount(t, js) >= uint64(len(good)+len(bad)) }) {
			t.Fatalf("stream %s holds %d messages, want %d notifications and %d dead letters", streamName, jetStreamCount(t, js), len(good), len(bad))
		}
		p.Signal(syscall.SIGTERM)
		if code := p.Wait(startupWait); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
		requireComplete(t, "JetStream "+subject, readJetStream(t, ns), good, 0)
		dl := natstest.ReadStream(t, js, streamName, "aviso.dlq")
		if len(dl) != len(bad) {
			t.Fatalf("%d dead letters, want %d (one per poison %v)", len(dl), len(bad), bad)
		}
		for i, m := range dl {
			h := m.Headers()
			kind, reason := h.Get("Aviso-Bridge-Dlq-Kind"), h.Get("Aviso-Bridge-Dlq-Reason")
			seq := strconv.FormatUint(bad[i], 10)
			if kind != "unrenderable" {
				t.Errorf("dead letter %d: kind %q, want unrenderable", i, kind)
			}
			if !strings.Contains(reason+" "+h.Get("ce-id")+" "+string(m.Data()), seq) {
				t.Errorf("dead letter %d (poison %s): nothing names the sequence: headers %v, body %q", i, seq, h, m.Data())
			}
			if !strings.Contains(reason+" "+string(m.Data()), "Failed to create CloudEvent") {
				t.Errorf("dead letter %d: reason %q / body %q do not carry the server's message", i, reason, m.Data())
			}
		}
	})
}

// requestBodies returns the bodies of reqs, for messages.
func requestBodies(reqs []avisotest.Request) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = string(r.Body)
	}
	return out
}
