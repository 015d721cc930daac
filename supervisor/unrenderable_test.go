package supervisor_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// publishPattern stores one notification per character of pattern, in
// order: 'o' a renderable one, 'x' a poison one (aviso cannot build its
// CloudEvent). It returns the sequences of each kind.
func (e *env) publishPattern(pattern string) (good, poison []uint64) {
	e.t.Helper()
	for i, c := range pattern {
		switch c {
		case 'o':
			good = append(good, e.srv.Publish("mars", map[string]string{"class": "od"}, map[string]any{"i": i}))
		case 'x':
			poison = append(poison, e.srv.PublishPoison("mars", map[string]string{"class": "od"}, fmt.Sprintf("bad polygon %d", i)))
		default:
			e.t.Fatalf("pattern %q: unknown %q", pattern, c)
		}
	}
	return good, poison
}

// Poison notifications (departure 8): each one above the cursor is logged
// at ERROR, counted once, dead-lettered when configured, and skipped; it
// never causes a reconnect, a stop or a stall, on either server version.
func TestUnrenderable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mode    aviso.Mode
		history string // stored before the start
		live    string // published once the history is delivered (watch only)
		limit   int    // replay cap (0: none)
		fault   avisotest.Fault
		// reasons are the reconnects expected besides replay-limit pages.
		reasons map[string]int64
	}{
		{name: "several", history: "ooxoooxoooooxoo"},
		{name: "adjacent", history: "oooxxxxooo"},
		{name: "first of the history", history: "xxooo"},
		{name: "last of the history, then live", history: "oooox", live: "ooo"},
		{name: "only poison in the history, then live", history: "xxx", live: "oo"},
		{name: "during live", history: "ooo", live: "oxooxxo"},
		{
			name: "first and last of cap pages", limit: 4,
			history: "xoooo" + "xxoooox" + "oooo" + "xoooox" + "ooo", live: "oxo",
		},
		{name: "replay", mode: aviso.Replay, history: "oxooxxoo"},
		{name: "replay ending on poison", mode: aviso.Replay, history: "oooxx"},
		{name: "replay in cap pages", mode: aviso.Replay, limit: 3, history: "oooxoooxxoxooox"},
		{
			// The reconnect after the cut asks for the notification after
			// the poison: it is not met again.
			name: "cut right after a poison", history: "oooxoooo",
			fault: avisotest.CutMidFrame{After: 3}, reasons: map[string]int64{"eof": 1},
		},
	}
	forEachVersion(t, func(t *testing.T, v avisotest.Version) {
		for _, tc := range tests {
			for _, dlq := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/dlq=%v", tc.name, dlq), func(t *testing.T) {
					t.Parallel()
					var opts []avisotest.Option
					if tc.limit > 0 {
						opts = append(opts, avisotest.WithReplayLimit(tc.limit))
					}
					e := newEnv(t, v, opts...)
					good, poison := e.publishPattern(tc.history)
					if tc.fault != nil {
						e.srv.Fault(tc.fault)
					}
					cfg := e.config()
					cfg.Mode = tc.mode
					cfg.DeadLetters = dlq
					cfg.Start.FromID = u64(1)
					r := e.start(cfg, 8)
					if tc.mode == aviso.Replay {
						if err := r.finish(); err != nil {
							t.Fatalf("Run: %v", err)
						}
					} else {
						e.waitFor("the history", func(seqs []uint64, dls []bridge.DeadLetter) bool {
							return len(seqs) >= len(good) && (!dlq || len(dls) >= len(poison))
						})
						g, p := e.publishPattern(tc.live)
						good, poison = append(good, g...), append(poison, p...)
						e.waitFor("the live part", func(seqs []uint64, dls []bridge.DeadLetter) bool {
							return len(seqs) >= len(good) && (!dlq || len(dls) >= len(poison))
						})
						if err := r.stop(); !isCanceled(err) {
							t.Fatalf("Run: %v", err)
						}
					}
					e.checkExactlyOnce(good)
					checkUnrenderable(t, e, poison, dlq)

					// No reconnect but the cap's pages (and the fault), none
					// of them delayed.
					got := e.m.reconnectCounts()
					pages := got["replay_limit_reached"]
					if (tc.limit == 0) != (pages == 0) {
						t.Fatalf("%d replay-limit pages with limit %d", pages, tc.limit)
					}
					want := map[string]int64{}
					for k, n := range tc.reasons {
						want[k] = n
					}
					if pages > 0 {
						want["replay_limit_reached"] = pages
					}
					e.checkReconnects(want)
					for _, d := range e.clock.Delays() {
						if tc.fault == nil && d != 0 {
							t.Fatalf("delays %v: a poison or a page was waited for", e.clock.Delays())
						}
					}
					// No request ever starts at a poison already met: it
					// is never met twice.
					for _, rq := range e.streamRequests()[1:] {
						if slices.Contains(poison, parseU64(t, rq.FromID)) {
							t.Fatalf("request cursors %v: a reconnect asked for a poison again", cursors(e.streamRequests()))
						}
					}
				})
			}
		}
	})
}

// checkUnrenderable checks the count, logs and dead letters of the poison
// notifications.
func checkUnrenderable(t *testing.T, e *env, poison []uint64, dlq bool) {
	t.Helper()
	if n := e.m.unrenderable.Get(); n != int64(len(poison)) {
		t.Fatalf("unrenderable counted %d, want %d (%v)", n, len(poison), poison)
	}
	recs := e.logs.records("aviso.notification.unrenderable")
	if len(recs) != len(poison) {
		t.Fatalf("%d aviso.notification.unrenderable records, want %d", len(recs), len(poison))
	}
	for i, rec := range recs {
		if rec["level"] != "ERROR" || rec["sequence"] != float64(poison[i]) || !strings.HasPrefix(fmt.Sprint(rec["message"]), "bad polygon") || rec["request_id"] == "" {
			t.Fatalf("unrenderable record %v, want sequence %d at ERROR with message and request id", rec, poison[i])
		}
	}
	dls := e.sink.deadLetters()
	if !dlq {
		if len(dls) != 0 {
			t.Fatalf("dead letters without DeadLetters: %v", dls)
		}
		return
	}
	if len(dls) != len(poison) {
		t.Fatalf("%d dead letters, want %d", len(dls), len(poison))
	}
	for i, d := range dls {
		seq := fmt.Sprint(poison[i])
		if d.Kind != bridge.DeadLetterUnrenderable || d.Notification != nil || d.Event != "error" ||
			!strings.Contains(string(d.Raw), `"sequence":`+seq) || !strings.Contains(d.Reason, "sequence "+seq) ||
			!strings.Contains(d.Reason, "bad polygon") {
			t.Fatalf("dead letter %d: %+v (raw %s), want kind unrenderable for sequence %s with the server's message", i, d, d.Raw, seq)
		}
	}
}

func parseU64(t *testing.T, s string) uint64 {
	t.Helper()
	var v uint64
	if _, err := fmt.Sscan(s, &v); err != nil {
		t.Fatalf("sequence %q: %v", s, err)
	}
	return v
}
