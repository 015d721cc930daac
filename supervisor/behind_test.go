package supervisor_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// commitCheckpoint stores seq as e's checkpoint, as a previous run (or a
// restore from elsewhere) left it.
func (e *env) commitCheckpoint(seq uint64) {
	e.t.Helper()
	store, err := e.mem.Open(ckey)
	if err != nil {
		e.t.Fatal(err)
	}
	defer store.Close()
	if err := store.Commit(context.Background(), bridge.Checkpoint{Sequence: seq}); err != nil {
		e.t.Fatal(err)
	}
}

// aviso-server behind the checkpoint (its storage was reset): live
// notifications keep arriving below the cursor. After the grace the
// supervisor warns (rate-limited) with the fix, counts one detection,
// and reports it in Status until a notification above the cursor arrives.
func TestBehindCheckpoint(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v avisotest.Version) {
		e := newEnv(t, v)
		e.publish(10) // the reset server's history
		e.commitCheckpoint(100)
		cfg := e.config()
		cfg.Start = startFrom(100)
		cfg.CheckpointName = "mars-od"
		r := e.start(cfg, 8)
		waitUntil(t, "the connection", func() bool { return r.sup.Status().Connected })
		dup := func(n int64) {
			t.Helper()
			e.publish(1)
			waitUntil(t, "a duplicate", func() bool { return e.m.duplicates.Get() >= n })
		}
		dup(1)
		e.clock.advance(10 * time.Second)
		dup(2)
		if st := r.sup.Status(); st.BehindCheckpoint != "" || e.m.behind.Get() != 0 {
			t.Fatalf("behind reported within the grace: %+v", st)
		}
		e.clock.advance(25 * time.Second) // 35 s since the first duplicate
		dup(3)
		st := r.sup.Status()
		if !strings.Contains(st.BehindCheckpoint, "up to 13") || !strings.Contains(st.BehindCheckpoint, "position 100") {
			t.Fatalf("status after the grace: %+v", st)
		}
		recs := e.logs.records("aviso.stream.behind_checkpoint")
		if len(recs) != 1 || recs[0]["level"] != "WARN" || recs[0]["server_sequence"] != float64(13) ||
			recs[0]["checkpoint_sequence"] != float64(100) ||
			!strings.Contains(recs[0]["hint"].(string), "aviso-bridge checkpoint set mars-od SEQ") ||
			!strings.Contains(recs[0]["hint"].(string), "aviso-bridge checkpoint delete mars-od") {
			t.Fatalf("behind_checkpoint records %v", recs)
		}
		if _, ok := recs[0]["for"].(string); !ok {
			t.Fatalf("duration logged as %T, want a string", recs[0]["for"])
		}
		// Rate-limited: more duplicates within the interval say nothing new.
		dup(4)
		e.clock.advance(time.Minute)
		dup(5)
		if n := len(e.logs.records("aviso.stream.behind_checkpoint")); n != 1 {
			t.Fatalf("%d WARNs within the interval", n)
		}
		e.clock.advance(5 * time.Minute)
		dup(6)
		if n := len(e.logs.records("aviso.stream.behind_checkpoint")); n != 2 {
			t.Fatalf("%d WARNs after the interval, want 2", n)
		}
		if n := e.m.behind.Get(); n != 1 {
			t.Fatalf("behind counted %d, want 1 (one episode)", n)
		}
		// The server catches up past the checkpoint: resolved.
		last := e.publish(85) // 17 ... 101
		e.waitSeqs(1)
		waitUntil(t, "the resolution", func() bool { return r.sup.Status().BehindCheckpoint == "" })
		if n := len(e.logs.records("aviso.stream.behind_checkpoint_resolved")); n != 1 {
			t.Fatalf("%d resolved records", n)
		}
		r.halt()
		e.checkExactlyOnce([]uint64{last})
		if n := e.m.behind.Get(); n != 1 {
			t.Fatalf("behind counted %d, want 1", n)
		}
	})
}

// aviso-server 0.13 says in replay_started that its newest sequence is
// below the cursor: a quiet watch (heartbeats only) is reported after the
// grace, and a replay run that ends so reports it before finishing.
func TestBehindCheckpointReplayWindow(t *testing.T) {
	t.Parallel()
	t.Run("quiet watch", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, avisotest.V013, avisotest.WithHeartbeat(5*time.Millisecond))
		e.publish(10)
		e.commitCheckpoint(100)
		cfg := e.config()
		cfg.Start = startFrom(100)
		r := e.start(cfg, 8)
		waitUntil(t, "the connection", func() bool { return r.sup.Status().Connected })
		e.clock.advance(31 * time.Second)
		waitUntil(t, "the report", func() bool { return r.sup.Status().BehindCheckpoint != "" })
		recs := e.logs.records("aviso.stream.behind_checkpoint")
		if len(recs) != 1 || recs[0]["server_sequence"] != float64(10) {
			t.Fatalf("behind_checkpoint records %v", recs)
		}
		r.halt()
	})
	t.Run("replay run", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, avisotest.V013)
		e.publish(10)
		e.commitCheckpoint(100)
		cfg := e.config()
		cfg.Mode = aviso.Replay
		cfg.Start = startFrom(100)
		r := e.start(cfg, 8)
		if err := r.finish(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if n := e.m.behind.Get(); n != 1 || len(e.logs.records("aviso.stream.behind_checkpoint")) != 1 {
			t.Fatalf("behind counted %d, logs:\n%s", n, e.logs)
		}
		e.checkExactlyOnce(nil)
	})
}

// Normal duplicates never report: the 0.7.1 seam re-sends a few right
// after the replay, then the watch stays quiet past the grace, and after a
// reconnect another stray duplicate arrives: each connection's duplicates
// are a short burst, not a server behind the checkpoint.
func TestBehindCheckpointNotOnNormalDuplicates(t *testing.T) {
	t.Parallel()
	forEachVersion(t, func(t *testing.T, v avisotest.Version) {
		e := newEnv(t, v)
		e.publish(10)
		stray := avisotest.Malformed{Event: "replay", Data: `{"data":{"identifier":{"class":"od"},"payload":null},` +
			`"datacontenttype":"application/json","id":"mars@9","source":"s","specversion":"1.0","time":"2026-01-01T00:00:00Z","type":"int.ecmwf.aviso.mars"}`}
		e.srv.Fault(avisotest.SeamDuplicates{N: 3}, stray)
		e.commitCheckpoint(4)
		cfg := e.config()
		cfg.Start = startFrom(4)
		r := e.start(cfg, 8)
		e.waitSeqs(6)
		waitUntil(t, "the seam duplicates", func() bool { return e.m.duplicates.Get() == 3 })
		e.clock.advance(time.Minute)
		e.srv.CloseStreams("max_duration_reached")
		waitUntil(t, "the stray duplicate", func() bool { return e.m.duplicates.Get() == 4 })
		e.clock.advance(10 * time.Second)
		last := e.publish(1)
		e.waitSeqs(7)
		r.halt()
		e.checkExactlyOnce(append(seqRange(5, 10), last))
		e.checkCursors(ids(5, 11))
		if n := e.m.behind.Get(); n != 0 || r.sup.Status().BehindCheckpoint != "" {
			t.Fatalf("normal duplicates reported as behind (%d)", n)
		}
	})
}
