package supervisor_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// ends renders the replay end of each request that reached the stream
// handler: "to_id:N", "to_date:D" or "-".
func ends(rs []avisotest.Request) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		switch {
		case r.HasToID:
			out[i] = "to_id:" + r.ToID
		case r.ToDate != "":
			out[i] = "to_date:" + r.ToDate
		default:
			out[i] = "-"
		}
	}
	return out
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// Bounded replays (departure 10): AVISO_TO_ID delivers exactly the range,
// through cap pages and cuts, and Run returns nil. aviso-server 0.13 gets
// to_id on every request; 0.7.1 refuses the field, so the bridge asks again
// without it and stops itself at the bound.
func TestBoundedReplayToID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    []avisotest.Option
		faults  []avisotest.Fault
		cursors []string // after the refused request of 0.7.1
		reasons map[string]int64
	}{
		{name: "one connection", cursors: ids(1), reasons: map[string]int64{}},
		{
			name: "cut in the middle", faults: []avisotest.Fault{avisotest.CutMidFrame{After: 12}},
			cursors: ids(1, 13), reasons: map[string]int64{"eof": 1},
		},
		{
			name: "cap pages", opts: []avisotest.Option{avisotest.WithReplayLimit(7)},
			cursors: ids(1, 8, 15, 22), reasons: map[string]int64{"replay_limit_reached": 3},
		},
		{
			name: "cap pages and a cut", opts: []avisotest.Option{avisotest.WithReplayLimit(7)},
			faults:  []avisotest.Fault{nil, avisotest.CutMidFrame{After: 3}},
			cursors: ids(1, 8, 11, 18, 25), reasons: map[string]int64{"replay_limit_reached": 3, "eof": 1},
		},
	}
	forEachVersion(t, func(t *testing.T, v avisotest.Version) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, v, tc.opts...)
				e.publish(40)
				faults := tc.faults
				if v == avisotest.V071 {
					// The refused request with to_id takes a fault too.
					faults = append([]avisotest.Fault{nil}, faults...)
				}
				e.srv.Fault(faults...)
				cfg := e.config()
				cfg.Mode = aviso.Replay
				cfg.Start.FromID = u64(1)
				cfg.ToID = u64(25)
				r := e.start(cfg, 8)
				if err := r.finish(); err != nil {
					t.Fatalf("Run: %v", err)
				}
				e.checkExactlyOnce(seqRange(1, 25))
				if cp, _ := e.mem.Checkpoint(ckey); cp.Sequence != 25 {
					t.Fatalf("checkpoint %+v after the drain, want 25", cp)
				}
				reqs := e.streamRequests()
				if v == avisotest.V071 {
					// The first request carried to_id and was refused.
					if got := ends(reqs[:1]); !slices.Equal(got, []string{"to_id:25"}) {
						t.Fatalf("first request's end %v", got)
					}
					if n := len(e.logs.records("aviso.replay.end_unsupported")); n != 1 {
						t.Fatalf("%d aviso.replay.end_unsupported records, want 1", n)
					}
					reqs = reqs[1:]
					if got, want := ends(reqs), repeat("-", len(reqs)); !slices.Equal(got, want) {
						t.Fatalf("request ends %v, want %v", got, want)
					}
				} else if got, want := ends(reqs), repeat("to_id:25", len(reqs)); !slices.Equal(got, want) {
					t.Fatalf("request ends %v, want %v", got, want)
				}
				if got := cursors(reqs); !slices.Equal(got, tc.cursors) {
					t.Fatalf("request cursors %v, want %v", got, tc.cursors)
				}
				e.checkReconnects(tc.reasons)
			})
		}
	})
}

// Without AVISO_TO_*, aviso-server 0.13's first end_sequence is pinned and
// sent as to_id on every reconnect, so the replay stays finite while the
// server keeps publishing; 0.7.1 has no end_sequence and follows the
// moving tail to replay_completed, as before.
func TestReplayEndPinned(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v avisotest.Version) {
		e := newEnv(t, v, avisotest.WithReplayLimit(5))
		e.publish(12)
		var once sync.Once
		e.clock.onSleep = func(int, time.Duration) {
			once.Do(func() { e.publish(8) }) // published between the first two pages
		}
		cfg := e.config()
		cfg.Mode = aviso.Replay
		cfg.Start.FromID = u64(1)
		r := e.start(cfg, 8)
		if err := r.finish(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		reqs := e.streamRequests()
		if v == avisotest.V071 {
			e.checkExactlyOnce(seqRange(1, 20))
			e.checkCursors(ids(1, 6, 11, 16))
			if got := ends(reqs); !slices.Equal(got, repeat("-", 4)) {
				t.Fatalf("request ends %v", got)
			}
			return
		}
		e.checkExactlyOnce(seqRange(1, 12))
		e.checkCursors(ids(1, 6, 11))
		if got := ends(reqs); !slices.Equal(got, []string{"-", "to_id:12", "to_id:12"}) {
			t.Fatalf("request ends %v", got)
		}
		if recs := e.logs.records("aviso.replay.end_pinned"); len(recs) != 1 || recs[0]["end_sequence"] != float64(12) {
			t.Fatalf("end_pinned records %v", recs)
		}
	})
}

// AVISO_TO_DATE: 0.13 fixes the end from it; 0.7.1 refuses it and the
// bridge stops at the first notification stored after it.
func TestBoundedReplayToDate(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v avisotest.Version) {
		var mu sync.Mutex
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		clock := func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return now
		}
		e := newEnv(t, v, avisotest.WithClock(clock), avisotest.WithReplayLimit(4))
		for i := 0; i < 15; i++ {
			e.publish(1)
			mu.Lock()
			now = now.Add(time.Minute)
			mu.Unlock()
		}
		cfg := e.config()
		cfg.Mode = aviso.Replay
		cfg.Start.FromID = u64(1)
		cfg.ToDate = "2026-03-01 12:09:00" // the 10th notification, inclusive
		r := e.start(cfg, 8)
		if err := r.finish(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		e.checkExactlyOnce(seqRange(1, 10))
		reqs := e.streamRequests()
		if v == avisotest.V013 {
			// The end is pinned by the first end_sequence, then sent as to_id.
			if got := ends(reqs); !slices.Equal(got, []string{"to_date:2026-03-01 12:09:00", "to_id:10", "to_id:10"}) {
				t.Fatalf("request ends %v", got)
			}
		} else if got := ends(reqs); len(got) < 2 || got[0] != "to_date:2026-03-01 12:09:00" || slices.ContainsFunc(got[1:], func(s string) bool { return s != "-" }) {
			t.Fatalf("request ends %v", got)
		}
	})
}

// A replay whose position is already at its end finishes at once, without
// a request.
func TestBoundedReplayAlreadyDone(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v avisotest.Version) {
		e := newEnv(t, v)
		e.publish(10)
		store, err := e.mem.Open(ckey)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Commit(context.Background(), bridge.Checkpoint{Sequence: 8}); err != nil {
			t.Fatal(err)
		}
		store.Close()
		cfg := e.config()
		cfg.Mode = aviso.Replay
		cfg.Start = startFrom(8)
		cfg.ToID = u64(8)
		r := e.start(cfg, 8)
		if err := r.finish(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if reqs := e.streamRequests(); len(reqs) != 0 {
			t.Fatalf("requests %v", cursors(reqs))
		}
		e.checkExactlyOnce(nil)
	})
}

func startFrom(cp uint64) supervisor.Start {
	return supervisor.Start{Checkpoint: cp, HasCheckpoint: true}
}
