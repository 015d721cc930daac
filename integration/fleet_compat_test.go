package integration

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// publishedTotal returns aviso_bridge_notifications_published_total of
// listener on bridge p (false when the series is absent).
func publishedTotal(t *testing.T, p *proc, listener string) (float64, bool) {
	t.Helper()
	_, body, err := httpGet(t.Context(), p.HTTPAddr, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if labels, v, ok := metricLine(line, "aviso_bridge_notifications_published_total"); ok && labels["listener"] == listener {
			return v, true
		}
	}
	return 0, false
}

// TestFleetSingleListenerMovesToFile: a deployment with AVISO_EVENT_TYPE and
// AVISO_IDENTIFIER commits its position; the same watch moved into a
// listener file (another name, the identifiers in another key order and
// style, AVISO_FROM_ID=1 still set) resumes from that checkpoint: its first
// request asks for checkpoint + 1, it publishes exactly the notifications
// that came after (aviso_bridge_notifications_published_total), and the
// stream holds every notification once. Run on the file and the nats-kv
// stores.
func TestFleetSingleListenerMovesToFile(t *testing.T) {
	t.Parallel()
	const ident = `{"domain":"g","class":"od"}`
	for _, store := range []string{"file", "nats-kv"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			aviso := avisotest.NewServer(t)
			dir := t.TempDir()
			ns := natstest.NewServer(t)
			js := ns.JetStream(t)
			cpFile := filepath.Join(dir, "checkpoint.json")
			e := jetStreamEnv(env{
				"AVISO_URL":        aviso.URL,
				"AVISO_EVENT_TYPE": eventType,
				"AVISO_IDENTIFIER": ident,
				"AVISO_FROM_ID":    "1",
				"CHECKPOINT_STORE": store,
				"CHECKPOINT_FILE":  cpFile,
			}, ns)
			key, err := bridge.CheckpointKey(aviso.URL, eventType, json.RawMessage(ident))
			if err != nil {
				t.Fatal(err)
			}
			stored := func() (uint64, bool) {
				if store == "file" {
					return checkpointSeq(t, cpFile)
				}
				c, ok := kvCheckpoint(t, js, key)
				return c.seq(), ok && c.Sequence != nil
			}
			var want []uint64
			pub := func(n int) {
				for i := range n {
					id := identifier(i)
					id["domain"] = "g"
					want = append(want, aviso.Publish(eventType, id, map[string]any{"i": i}))
					other := identifier(i) // another class: not this watch's
					other["class"], other["domain"] = "rd", "g"
					aviso.Publish(eventType, other, map[string]any{"i": i})
				}
			}
			pub(200)
			single := startBridge(t, "single", dir, e)
			if !eventually(startupWait, func() bool { s, _ := stored(); return s == lastOf(want) || single.Exited() }) || single.Exited() {
				s, _ := stored()
				t.Fatalf("single listener: checkpoint %d, want %d (exited %v)", s, lastOf(want), single.Exited())
			}
			single.Signal(syscall.SIGTERM)
			if code := single.Wait(startupWait); code != 0 {
				t.Fatalf("single listener: exit code %d after SIGTERM, want 0", code)
			}
			cp, _ := stored()
			firstRun := len(want)
			pub(100)

			file := writeTestFile(t, dir, "listeners.yaml", "listeners:\n  - name: moved\n    event: mars\n    identifiers:\n      class: \"od\"\n      domain: g\n")
			before := len(aviso.Requests())
			moved := startBridge(t, "moved", dir, e.With("AVISO_EVENT_TYPE", "", "AVISO_IDENTIFIER", "", "AVISO_LISTENERS_FILE", file))
			reqs, err := aviso.WaitRequests(t.Context(), before+1)
			if err != nil {
				t.Fatal(err)
			}
			if r := reqs[before]; r.FromID != strconv.FormatUint(cp+1, 10) {
				t.Errorf("listener moved into the file asked from_id %q, want %d (checkpoint %d + 1): the key changed", r.FromID, cp+1, cp)
			}
			if !eventually(startupWait, func() bool { s, _ := stored(); return s == lastOf(want) || moved.Exited() }) || moved.Exited() {
				s, _ := stored()
				t.Fatalf("moved listener: checkpoint %d, want %d (exited %v)", s, lastOf(want), moved.Exited())
			}
			if n, ok := publishedTotal(t, moved, "moved"); !ok || int(n) != len(want)-firstRun {
				t.Errorf("moved listener published %v notifications (series found %v), want %d: only those after the checkpoint", n, ok, len(want)-firstRun)
			}
			moved.Signal(syscall.SIGTERM)
			if code := moved.Wait(startupWait); code != 0 {
				t.Errorf("moved listener: exit code %d after SIGTERM, want 0", code)
			}
			requireComplete(t, "stream", readJetStream(t, ns), want, 0)
		})
	}
}
