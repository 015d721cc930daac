package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// The binary against the differences of aviso-server 0.13
// (../shared/docs/aviso-protocol-0.13.md, departures 8-11), on both versions
// where they apply: a history of several cap pages then live, bounded
// replays (AVISO_TO_ID / AVISO_TO_DATE) with cuts, 400 on an unknown
// identifier key, AVISO_TO_* outside replay mode. Poison notifications are
// in poison_test.go.

// reconnectCounts returns aviso_bridge_reconnects_total by reason (every
// series the bridge exposes, zeros included).
func reconnectCounts(samples map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for name, v := range samples {
		if rest, ok := strings.CutPrefix(name, `aviso_bridge_reconnects_total{reason="`); ok {
			out[strings.TrimSuffix(rest, `"}`)] = v
		}
	}
	return out
}

// nonZero formats the reasons with a count above 0, sorted, for messages.
func nonZero(counts map[string]float64) string {
	var out []string
	for r, v := range counts {
		if v > 0 {
			out = append(out, fmt.Sprintf("%s=%v", r, v))
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// countOf returns how many elements of s are v.
func countOf(s []string, v string) int {
	n := 0
	for _, e := range s {
		if e == v {
			n++
		}
	}
	return n
}

func sumCounts(counts map[string]float64) float64 {
	var n float64
	for _, v := range counts {
		n += v
	}
	return n
}

// waitStdout waits until the stdout sink of p holds every sequence of want
// (fails the test if not within timeout or if p exits first).
func waitStdout(t *testing.T, p *proc, ids *stdoutIDs, want []uint64, timeout time.Duration) {
	t.Helper()
	if !eventually(timeout, func() bool { return ids.hasAll(want) || p.Exited() }) || p.Exited() {
		got := ids.update()
		t.Fatalf("stdout holds %d lines, missing %d of %d (exited %v)", len(got), len(count(got, want).Missing), len(want), p.Exited())
	}
}

// retryDelays returns the delay (a duration string in the log) of every
// aviso.connection.retrying record, with its reason; -1 where it is missing
// or unreadable.
func retryDelays(p *proc) (reasons []string, delays []time.Duration) {
	for _, r := range p.Logs() {
		if r.Msg() != "aviso.connection.retrying" {
			continue
		}
		d, err := time.ParseDuration(r.Str("delay"))
		if err != nil {
			d = -1
		}
		reasons, delays = append(reasons, r.Str("reason")), append(delays, d)
	}
	return reasons, delays
}

// TestCapPagesThenLive: a history of 5 full replay-cap pages and a partial
// one, then live. 0.13 ends each capped page (limit frame, end_of_stream),
// 0.7.1 goes on to live after it; either way the bridge pages on from
// last + 1 at once: everything arrives once, in order, the only reconnects
// are the 5 page boundaries, and no retry waited (no backoff escalation).
func TestCapPagesThenLive(t *testing.T) {
	const capN, live = 200, 600
	forVersions(t, func(t *testing.T, v avisoVersion) {
		srv := avisotest.NewServer(t, append(slices.Clone(v.opts), avisotest.WithReplayLimit(capN))...)
		dir := t.TempDir()
		history := publish(srv, 5*capN+capN/2)
		p := startBridge(t, "bridge", dir, avisoEnv(srv, dir).With("CHECKPOINT_INTERVAL", "100ms"))
		p.WaitEvent(startupWait, "aviso.replay.completed")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pub := publishAt(ctx, srv, live, 2000)
		<-pub.done
		want := append(history, pub.seqs...)
		ids := newStdoutIDs(t, p)
		waitStdout(t, p, ids, want, 60*time.Second)
		samples, _ := scrape(t, p.HTTPAddr)
		rc := reconnectCounts(samples)
		t.Logf("reconnects: %s", nonZero(rc))
		if rc["replay_limit_reached"] != 5 || sumCounts(rc) != 5 {
			t.Errorf("reconnects %s, want exactly replay_limit_reached=5 (one per full page)", nonZero(rc))
		}
		if got := samples["aviso_bridge_replay_limit_reached_total"]; got != 5 {
			t.Errorf("aviso_bridge_replay_limit_reached_total = %v, want 5", got)
		}
		reasons, delays := retryDelays(p)
		for i, d := range delays {
			if d != 0 {
				t.Errorf("retry %d (%s) waited %v, want 0: a page boundary is not a failure", i, reasons[i], d)
			}
		}
		p.Signal(syscall.SIGTERM)
		if code := p.Wait(startupWait); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
		requireComplete(t, "stdout", ids.update(), want, 0)
		if cp, _ := checkpointSeq(t, filepath.Join(dir, "checkpoint.json")); cp != want[len(want)-1] {
			t.Errorf("checkpoint %d after SIGTERM, want %d", cp, want[len(want)-1])
		}
	})
}

// settableClock is a clock for avisotest (notification and control-frame
// timestamps), so that AVISO_TO_DATE cuts the history at a known sequence.
type settableClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *settableClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *settableClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// TestBoundedReplay: AVISO_MODE=replay with AVISO_TO_ID or AVISO_TO_DATE,
// while the server keeps publishing and the stream is cut (and capped) in
// the middle: the bridge delivers exactly the range from AVISO_FROM_ID to the
// bound, each once, in order, exits 0 by itself, and the checkpoint is the
// bound. Against 0.13 the end is pinned on every reconnect; a 0.7.1 server
// knows no end, and the bridge stops itself there.
func TestBoundedReplay(t *testing.T) {
	const history, bound = 1000, 600
	base := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	toID := func(b uint64) []string { return []string{"AVISO_TO_ID", strconv.FormatUint(b, 10)} }
	cut := func(after int) avisotest.Fault { return avisotest.CutMidFrame{After: after} }
	cases := []struct {
		name string
		cap  int
		// every is the fault of every connection, queue the faults of the
		// first connections (a 0.7.1 server refuses the first request,
		// which names to_id/to_date, and that uses up a queued fault).
		every avisotest.Fault
		queue []avisotest.Fault
		// bound is the AVISO_TO_* setting of the bound; nil: none (the
		// replay ends at the first end_sequence, 0.13 only).
		bound func(bound uint64) []string
		// least reconnects by reason, read from the retry logs.
		least map[string]int
	}{
		{
			name: "to_id, a cut on every connection", every: cut(150),
			bound: toID,
			least: map[string]int{"eof": 3},
		},
		{
			name: "to_id, cap pages and cuts", cap: 150,
			queue: []avisotest.Fault{nil, cut(100), nil, cut(100), nil, cut(100), nil, cut(100)},
			bound: toID,
			least: map[string]int{"eof": 1, "replay_limit_reached": 1},
		},
		{
			name: "to_date, a graceful cut on every connection", every: avisotest.CutMidFrame{After: 250, Graceful: true},
			bound: func(b uint64) []string {
				return []string{"AVISO_TO_DATE", base.Add(time.Duration(b) * time.Second).Format(time.RFC3339)}
			},
			least: map[string]int{"eof": 2},
		},
		{
			name: "no AVISO_TO_*: 0.13 pins the first end_sequence, a cut on every connection", every: cut(200),
			least: map[string]int{"eof": 4},
		},
	}
	forVersions(t, func(t *testing.T, v avisoVersion) {
		for _, tc := range cases {
			if tc.bound == nil && v.name != "0.13" {
				continue // 0.7.1 follows a moving tail: no end to pin
			}
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				last, setting := uint64(history), []string(nil)
				if tc.bound != nil {
					last, setting = bound, tc.bound(bound)
				}
				clk := &settableClock{now: base}
				opts := append(slices.Clone(v.opts), avisotest.WithClock(clk.Now))
				if tc.cap > 0 {
					opts = append(opts, avisotest.WithReplayLimit(tc.cap))
				}
				srv := avisotest.NewServer(t, opts...)
				for i := range history { // notification i+1 at base + (i+1) s
					clk.Set(base.Add(time.Duration(i+1) * time.Second))
					srv.Publish(eventType, identifier(i), map[string]any{"i": i})
				}
				clk.Set(base.Add(time.Hour))
				srv.Fault(tc.queue...)
				srv.FaultEvery(tc.every)
				dir := t.TempDir()
				e := avisoEnv(srv, dir).With("AVISO_MODE", "replay", "CHECKPOINT_INTERVAL", "100ms").With(setting...)
				p := startBridge(t, "bridge", dir, e)
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				// The server keeps publishing (past the bound) from the
				// first notification the bridge writes (the replay's end is
				// fixed by then) until the bridge is done.
				if !eventually(startupWait, func() bool { return len(p.Stdout.Lines()) > 0 || p.Exited() }) {
					t.Fatal("the bridge wrote nothing")
				}
				pub := publishAt(ctx, srv, 100000, 1000)
				code := p.Wait(60 * time.Second)
				cancel()
				<-pub.done
				if code != 0 {
					t.Errorf("exit code %d, want 0 (a bounded replay ends by itself)", code)
				}
				ids := newStdoutIDs(t, p)
				requireComplete(t, "stdout", ids.update(), seqRange(1, last), 0)
				if cp, _ := checkpointSeq(t, filepath.Join(dir, "checkpoint.json")); cp != last {
					t.Errorf("checkpoint %d, want the end %d", cp, last)
				}
				reasons, _ := retryDelays(p)
				t.Logf("retries %v; %d notifications published meanwhile", reasons, pub.n.Load())
				for reason, least := range tc.least {
					if n := countOf(reasons, reason); n < least {
						t.Errorf("%d retries for %s, want at least %d (did the fault happen?)", n, reason, least)
					}
				}
				if v.name != "0.13" {
					return
				}
				// 0.13: the end is sent on every request: the first sends
				// AVISO_TO_* (if set), every reconnect to_id pinned to the
				// first end_sequence.
				for i, r := range srv.Requests() {
					var body struct {
						ToID   string `json:"to_id"`
						ToDate string `json:"to_date"`
					}
					if err := json.Unmarshal(r.Body, &body); err != nil {
						t.Fatalf("request %d: %v: %s", i, err, r.Body)
					}
					first := ""
					if setting != nil {
						first = setting[1]
					}
					if i == 0 && (body.ToID+body.ToDate != first) || i > 0 && body.ToID != strconv.FormatUint(last, 10) {
						t.Errorf("request %d %s: want %q on the first request and to_id %d on every reconnect", i, r.Body, first, last)
					}
				}
			})
		}
	})
}

// TestUnknownIdentifierKey: aviso-server 0.13 rejects an identifier key the
// event type's schema does not know with 400; the bridge exits 2 with the
// server's message, naming AVISO_IDENTIFIER.
func TestUnknownIdentifierKey(t *testing.T) {
	for _, v := range avisoVersions {
		if v.name != "0.13" {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			srv := avisotest.NewServer(t, append(slices.Clone(v.opts), avisotest.WithSchema(eventType, "class", "date", "step"))...)
			for _, mode := range []string{"watch", "replay"} {
				t.Run(mode, func(t *testing.T) {
					e := env{"AVISO_URL": srv.URL, "AVISO_EVENT_TYPE": eventType, "AVISO_MODE": mode, "AVISO_FROM_ID": "1",
						"AVISO_IDENTIFIER": `{"class":"od","severtiy":"high"}`, "CHECKPOINT_STORE": "none", "BRIDGE_HTTP_ADDR": ""}
					p := startBridge(t, "bridge", "", e)
					if code := p.Wait(startupWait); code != 2 {
						t.Fatalf("exit code %d, want 2", code)
					}
					r := p.WaitEvent(time.Second, "bridge.config.invalid")
					msg := r.Str("error")
					if !strings.Contains(msg, "AVISO_IDENTIFIER") {
						t.Errorf("error %q does not name AVISO_IDENTIFIER", msg)
					}
					if !strings.Contains(msg, "severtiy") {
						t.Errorf("error %q does not carry the server's message (unknown field 'severtiy')", msg)
					}
				})
			}
		})
	}
}

// TestToWithoutReplayMode: AVISO_TO_ID or AVISO_TO_DATE without
// AVISO_MODE=replay is a configuration error: run and config exit 2 naming
// the variable, before asking the server anything.
func TestToWithoutReplayMode(t *testing.T) {
	cases := []struct{ name, variable, value, mode string }{
		{"to_id, default mode", "AVISO_TO_ID", "10", ""},
		{"to_date, mode watch", "AVISO_TO_DATE", "2026-11-29T00:00:00Z", "watch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := avisotest.NewServer(t)
			e := env{"AVISO_URL": srv.URL, "AVISO_EVENT_TYPE": eventType, "AVISO_FROM_ID": "1", "CHECKPOINT_STORE": "none",
				"BRIDGE_HTTP_ADDR": ""}.With(tc.variable, tc.value, "AVISO_MODE", tc.mode)
			p := startBridge(t, "run", "", e)
			if code := p.Wait(startupWait); code != 2 {
				t.Fatalf("run: exit code %d, want 2", code)
			}
			r := p.WaitEvent(time.Second, "bridge.config.invalid")
			if msg := r.Str("error"); !strings.Contains(msg, tc.variable) || !strings.Contains(msg, "AVISO_MODE") {
				t.Errorf("run: error %q does not name %s and AVISO_MODE", msg, tc.variable)
			}
			c := startBridge(t, "config", "", e, "config")
			if code := c.Wait(startupWait); code != 2 {
				t.Errorf("config: exit code %d, want 2", code)
			}
			if n := len(srv.Requests()); n != 0 {
				t.Errorf("the server got %d requests, want none (a static configuration error)", n)
			}
		})
	}
}

// waitRequests waits up to startupWait for n requests to reach srv.
func waitRequests(ctx context.Context, srv *avisotest.Server, n int) error {
	ctx, cancel := context.WithTimeout(ctx, startupWait)
	defer cancel()
	_, err := srv.WaitRequests(ctx, n)
	return err
}
