package integration

import (
	"context"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// TestGracefulStopRestart: SIGTERM twice in the middle of a stream (once
// during the replay of the history, once while following live
// notifications), restarting each time with the same configuration: each
// stop exits 0 with the checkpoint at the newest stored notification, each
// restart asks aviso for exactly the next sequence (nothing is sent twice),
// and the destination read back holds every notification once, in order.
func TestGracefulStopRestart(t *testing.T) {
	for _, sk := range sinksUnderTest {
		t.Run(sk.name, func(t *testing.T) {
			t.Parallel()
			aviso := avisotest.NewServer(t)
			dir := t.TempDir()
			cpFile := filepath.Join(dir, "checkpoint.json")
			e, dst := sk.start(t, avisoEnv(aviso, dir))
			history := publish(aviso, 5000)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var pub *publisher

			var lastCP uint64
			for round, stopAt := range []int{2000, 9000, -1} {
				before := len(aviso.Requests())
				p := startBridge(t, "bridge-"+strconv.Itoa(round), dir, e)
				reqs, err := aviso.WaitRequests(ctx, before+1)
				if err != nil {
					t.Fatal(err)
				}
				if r := reqs[before]; round > 0 && r.FromID != strconv.FormatUint(lastCP+1, 10) {
					t.Errorf("restart %d asked from_id %q, want %d (checkpoint %d + 1)", round, r.FromID, lastCP+1, lastCP)
				}
				if pub == nil {
					pub = publishAt(ctx, aviso, 10000, 2000)
				}
				if stopAt < 0 {
					<-pub.done
					stopAt = len(history) + len(pub.seqs)
				}
				if !eventually(startupWait, func() bool { return dst.count() >= stopAt || p.Exited() }) || p.Exited() {
					t.Fatalf("round %d: destination holds %d, want %d (exited %v)", round, dst.count(), stopAt, p.Exited())
				}
				p.Signal(syscall.SIGTERM)
				if code := p.Wait(startupWait); code != 0 {
					t.Fatalf("round %d: exit code %d after SIGTERM, want 0", round, code)
				}
				cp, _ := checkpointSeq(t, cpFile)
				got := dst.read()
				if len(got) == 0 || cp != got[len(got)-1] {
					t.Fatalf("round %d: checkpoint %d, want the newest stored notification", round, cp)
				}
				t.Logf("round %d: stopped at checkpoint %d (%d stored, %d published)", round, cp, len(got), len(history)+int(pub.n.Load()))
				lastCP = cp
			}
			requireComplete(t, sk.name, dst.read(), append(history, pub.seqs...), 0)
		})
	}
}
