package integration

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// stdoutIDs parses the CloudEvent id of each stdout line of p (the stdout
// sink writes one CloudEvent per line), incrementally.
type stdoutIDs struct {
	t    testing.TB
	p    *proc
	seqs []uint64
	seen map[uint64]bool
}

func newStdoutIDs(t testing.TB, p *proc) *stdoutIDs {
	return &stdoutIDs{t: t, p: p, seen: map[uint64]bool{}}
}

func (s *stdoutIDs) update() []uint64 {
	s.t.Helper()
	all := s.p.Stdout.Lines()
	for _, line := range all[len(s.seqs):] {
		var ce struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(line), &ce); err != nil {
			s.t.Fatalf("stdout line is not a CloudEvent: %q", line)
		}
		seq := seqOfID(s.t, ce.ID)
		s.seqs = append(s.seqs, seq)
		s.seen[seq] = true
	}
	return s.seqs
}

// hasAll reports whether every sequence of want was written.
func (s *stdoutIDs) hasAll(want []uint64) bool {
	s.update()
	for _, w := range want {
		if !s.seen[w] {
			return false
		}
	}
	return true
}

// avisoFault is one fault of the aviso side, injected while the bridge
// replays history and then follows live notifications.
type avisoFault struct {
	name string
	// opts configure avisotest; dir is the test's temp dir.
	opts func(dir string) []avisotest.Option
	// setup queues faults before the bridge starts; dir is the test's
	// temp dir (for token files).
	setup func(t *testing.T, srv *avisotest.Server, dir string, e env) env
	// during runs while live notifications are published (optional).
	during func(t *testing.T, srv *avisotest.Server, p *proc, dir string)
	// reconnects are the least reconnects_total{reason} the fault causes.
	reconnects map[string]float64
	// metrics are the least values of other counters.
	metrics map[string]float64
	// history, live and rate override faultHistory, faultLive and
	// faultRate when set.
	history, live, rate int
	// versions limits the fault to these aviso-server versions (nil: all of
	// avisoVersions).
	versions []string
}

// avisoVersion is one aviso-server version avisotest speaks: the fault
// matrix and the 0.13 cases run against each.
type avisoVersion struct {
	name string
	opts []avisotest.Option
}

// avisoVersions are the aviso-server versions the bridge supports (see
// ../shared/docs/aviso-protocol-0.13.md): 0.7.1, avisotest's default, and 0.13.
var avisoVersions = []avisoVersion{
	{name: "0.7.1", opts: []avisotest.Option{avisotest.WithVersion(avisotest.V071)}},
	{name: "0.13", opts: []avisotest.Option{avisotest.WithVersion(avisotest.V013)}},
}

// forVersions runs f as one subtest per aviso-server version (named by the
// version), each with that version's avisotest options.
func forVersions(t *testing.T, f func(t *testing.T, v avisoVersion)) {
	for _, v := range avisoVersions {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			f(t, v)
		})
	}
}

const (
	faultHistory = 1500 // replayed at start (After < 1500 hits the replay)
	faultLive    = 1500 // published while the bridge runs
	faultRate    = 3000 // live notifications per second
)

var avisoFaults = []avisoFault{
	{
		name: "cut mid-frame (unexpected EOF), 4 times",
		setup: func(t *testing.T, srv *avisotest.Server, _ string, e env) env {
			srv.Fault(avisotest.CutMidFrame{After: 400}, avisotest.CutMidFrame{After: 900},
				avisotest.CutMidFrame{After: 500}, avisotest.CutMidFrame{After: 700, Graceful: true})
			return e
		},
		reconnects: map[string]float64{"eof": 3},
	},
	{
		name: "stall past the idle timeout, in replay and in live",
		opts: func(string) []avisotest.Option {
			return []avisotest.Option{avisotest.WithHeartbeat(100 * time.Millisecond)}
		},
		setup: func(t *testing.T, srv *avisotest.Server, _ string, e env) env {
			srv.Fault(avisotest.Stall{After: 700}, avisotest.Stall{After: 1200})
			return e.With("AVISO_HEARTBEAT_INTERVAL", "100ms", "AVISO_IDLE_TIMEOUT", "750ms")
		},
		reconnects: map[string]float64{"idle_timeout": 2},
	},
	{
		name: "stall before the response headers and before the opening frame",
		opts: func(string) []avisotest.Option {
			return []avisotest.Option{avisotest.WithHeartbeat(100 * time.Millisecond)}
		},
		setup: func(t *testing.T, srv *avisotest.Server, _ string, e env) env {
			srv.Fault(avisotest.Stall{BeforeHeaders: true}, avisotest.Stall{BeforeOpening: true})
			return e.With("AVISO_HEARTBEAT_INTERVAL", "100ms", "AVISO_IDLE_TIMEOUT", "750ms")
		},
		reconnects: map[string]float64{"opening_timeout": 1},
	},
	{
		// Every session forwards 300 notifications before it is closed,
		// so none counts as short (a short session without progress would
		// escalate the reconnect delay, by design). Live at 400/s: 3 s.
		name: "max_duration_reached every 300 notifications",
		setup: func(t *testing.T, srv *avisotest.Server, _ string, e env) env {
			srv.FaultEvery(avisotest.CloseWith{Reason: "max_duration_reached", After: 300})
			return e
		},
		history: 600, live: 1200, rate: 400,
		reconnects: map[string]float64{"max_duration_reached": 5},
	},
	{
		name: "server_shutdown mid-replay",
		setup: func(t *testing.T, srv *avisotest.Server, _ string, e env) env {
			srv.Fault(avisotest.CloseWith{Reason: "server_shutdown", After: 600})
			return e
		},
		reconnects: map[string]float64{"server_shutdown": 1},
	},
	{
		name: "503 with Retry-After, then 429",
		setup: func(t *testing.T, srv *avisotest.Server, _ string, e env) env {
			srv.Fault(avisotest.Status{Code: 503, RetryAfter: "1"}, avisotest.CutMidFrame{After: 800},
				avisotest.Status{Code: 503, RetryAfter: "1"}, avisotest.Status{Code: 429, RetryAfter: "1"})
			return e
		},
		reconnects: map[string]float64{"throttled": 3, "eof": 1},
	},
	{
		name: "401 after token rotation, new token file arrives late",
		opts: func(dir string) []avisotest.Option {
			return []avisotest.Option{avisotest.WithTokenFile(filepath.Join(dir, "server-token"))}
		},
		setup: func(t *testing.T, srv *avisotest.Server, dir string, e env) env {
			writeFile(t, filepath.Join(dir, "server-token"), "token-one")
			writeFile(t, filepath.Join(dir, "client-token"), "token-one\n")
			return e.With("AVISO_TOKEN_FILE", filepath.Join(dir, "client-token"))
		},
		during: func(t *testing.T, srv *avisotest.Server, p *proc, dir string) {
			// Rotate on the server, cut the stream: the bridge gets 401s
			// until its own token file is rotated too.
			p.WaitEvent(startupWait, "aviso.replay.completed")
			writeFile(t, filepath.Join(dir, "server-token"), "token-two")
			srv.DropStreams()
			// Wait for the second 401: the first is retried at once after
			// re-reading the (still old) token file, the second backs off.
			seen := 0
			p.WaitLog(startupWait, "a second 401", func(r logRecord) bool {
				if r.Msg() == "aviso.connection.retrying" && r.Str("reason") == "unauthorized" {
					seen++
				}
				return seen >= 2
			})
			writeFile(t, filepath.Join(dir, "client-token"), "token-two\n")
		},
		reconnects: map[string]float64{"unauthorized": 2},
	},
	{
		name: "replay limit: paging through 250 at a time",
		opts: func(string) []avisotest.Option { return []avisotest.Option{avisotest.WithReplayLimit(250)} },
		setup: func(t *testing.T, srv *avisotest.Server, _ string, e env) env {
			return e
		},
		reconnects: map[string]float64{"replay_limit_reached": 5},
	},
	{
		// A failed replay batch: 0.7.1 goes on with replay_completed and
		// live, 0.13 ends the stream; the bridge reconnects from the cursor
		// either way. (A "CloudEvent creation failed" frame is a stored
		// poison notification, skipped without a reconnect: see
		// TestPoisonNotifications.)
		name: "error frame during replay (failed batch), twice",
		setup: func(t *testing.T, srv *avisotest.Server, _ string, e env) env {
			srv.Fault(avisotest.ErrorFrame{After: 500}, avisotest.ErrorFrame{After: 300})
			return e
		},
		reconnects: map[string]float64{"server_error": 2},
		metrics:    map[string]float64{"aviso_bridge_server_errors_total": 2},
	},
	{
		name: "seam duplicates after replay_completed",
		setup: func(t *testing.T, srv *avisotest.Server, _ string, e env) env {
			srv.Fault(avisotest.SeamDuplicates{N: 40}, avisotest.CutMidFrame{After: 100}, avisotest.SeamDuplicates{N: 25})
			return e
		},
		metrics: map[string]float64{"aviso_bridge_duplicates_dropped_total": 40},
	},
	{
		name: "malformed frames in replay and live",
		setup: func(t *testing.T, srv *avisotest.Server, _ string, e env) env {
			srv.Fault(avisotest.Combine(
				avisotest.Malformed{After: 200, Event: "replay", Data: `{"id":"mars@x","data":`},
				avisotest.Malformed{After: 1600, Data: `{"specversion":"1.0","id":"mars@77","source":"s","type":"t"}`},
			))
			return e
		},
		metrics: map[string]float64{"aviso_bridge_malformed_frames_total": 2},
	},
	{
		name: "tiny TCP chunks (7 bytes)",
		setup: func(t *testing.T, srv *avisotest.Server, _ string, e env) env {
			srv.Fault(avisotest.TinyChunks{Size: 7})
			return e
		},
	},
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestAvisoFaults: for each fault of the aviso side and each aviso-server
// version (subtests named by version), the bridge (stdout sink: every line it
// writes is visible, duplicates included) delivers every notification of the
// history and of the live stream, in order, with no duplicate, and the fault
// is visible in its metrics; then SIGTERM exits 0.
func TestAvisoFaults(t *testing.T) {
	forVersions(t, func(t *testing.T, v avisoVersion) {
		for _, f := range avisoFaults {
			if f.versions != nil && !slices.Contains(f.versions, v.name) {
				continue
			}
			t.Run(f.name, func(t *testing.T) {
				t.Parallel()
				runAvisoFault(t, v, f)
			})
		}
	})
}

func runAvisoFault(t *testing.T, v avisoVersion, f avisoFault) {
	dir := t.TempDir()
	opts := slices.Clone(v.opts)
	if f.opts != nil {
		opts = append(opts, f.opts(dir)...)
	}
	srv := avisotest.NewServer(t, opts...)
	e := avisoEnv(srv, dir).With("CHECKPOINT_INTERVAL", "100ms")
	if f.setup != nil {
		e = f.setup(t, srv, dir, e)
	}
	nHistory, nLive, rate := cmp.Or(f.history, faultHistory), cmp.Or(f.live, faultLive), cmp.Or(f.rate, faultRate)
	history := publish(srv, nHistory)
	p := startBridge(t, "bridge", dir, e)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// Live notifications start once the watch is open, so that
	// "After" counts include them.
	if err := waitRequests(ctx, srv, 1); err != nil {
		t.Fatalf("%v (bridge exited: %v)", err, p.Exited())
	}
	pub := publishAt(ctx, srv, nLive, rate)
	if f.during != nil {
		f.during(t, srv, p, dir)
	}
	<-pub.done
	want := append(history, pub.seqs...)
	ids := newStdoutIDs(t, p)
	if !eventually(60*time.Second, func() bool { return ids.hasAll(want) || p.Exited() }) || p.Exited() {
		got := ids.update()
		t.Fatalf("stdout holds %d lines, missing %d (exited %v)", len(got), len(count(got, want).Missing), p.Exited())
	}
	samples, _ := scrape(t, p.HTTPAddr)
	t.Logf("reconnects: %s", nonZero(reconnectCounts(samples)))
	for reason, least := range f.reconnects {
		name := fmt.Sprintf("aviso_bridge_reconnects_total{reason=%q}", reason)
		if samples[name] < least {
			t.Errorf("%s = %v, want at least %v (did the fault happen?)", name, samples[name], least)
		}
	}
	for name, least := range f.metrics {
		if samples[name] < least {
			t.Errorf("%s = %v, want at least %v", name, samples[name], least)
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
}
