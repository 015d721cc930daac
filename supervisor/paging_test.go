package supervisor_test

import (
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// A watch whose history is five cap pages long pages through it with
// immediate reconnects from last + 1 (no backoff growth, no escalation,
// even though every session is shorter than ShortSession), then goes live
// (departure 9). Under 0.13 each capped page ends with end_of_stream; under
// 0.7.1 the server would go on live after the cap, but the bridge pages
// there too so that nothing between the cap and the live tail is skipped.
func TestCapPagesThenLive(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v avisotest.Version) {
		e := newEnv(t, v, avisotest.WithReplayLimit(10))
		e.publish(50) // pages 1-10, 11-20, 21-30, 31-40 capped; 41-50 completes
		cfg := e.config()
		cfg.ShortSession = 0  // default 1 s
		e.clock.frozen = true // every session lasts 0 s
		cfg.Start.FromID = u64(1)
		r := e.start(cfg, 8)
		e.waitSeqs(50)
		last := e.publish(5)
		e.waitSeqs(55)
		if err := r.stop(); !isCanceled(err) {
			t.Fatalf("Run: %v", err)
		}
		e.checkExactlyOnce(seqRange(1, last))
		e.checkCursors(ids(1, 11, 21, 31, 41))
		e.checkDelays(make([]time.Duration, 4))
		e.checkReconnects(map[string]int64{"replay_limit_reached": 4})
		if n := e.m.replayLimits.Get(); n != 4 {
			t.Fatalf("replay limits counted %d, want 4", n)
		}
		for _, rec := range e.logs.records("aviso.connection.retrying") {
			if rec["level"] != "INFO" || rec["attempt"] != float64(0) {
				t.Fatalf("page reconnect logged as %v", rec)
			}
		}
	})
}
