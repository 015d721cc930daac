package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// isolationFile has two healthy listeners and one that aviso refuses (400:
// the identifier key colour is not in the schema of event fleet0).
const isolationFile = `listeners:
  - name: good-a
    event: fleet0
    identifiers: {class: od}
  - name: bad
    event: fleet0
    identifiers: {colour: red}
  - name: good-b
    event: fleet1
`

// TestFleetListenerFails: one listener of three fails permanently (aviso
// 0.13 answers 400 INVALID_WATCH_REQUEST for an identifier key outside the
// schema). It shows failed with its error in /status and in
// aviso_bridge_listener_state; the two others deliver everything; the
// process keeps running and exits 0 on SIGTERM. A bridge whose only
// listener fails exits 1 (none is left).
func TestFleetListenerFails(t *testing.T) {
	t.Parallel()
	newAviso := func(t *testing.T) *avisotest.Server {
		return avisotest.NewServer(t, avisotest.WithVersion(avisotest.V013),
			avisotest.WithSchema("fleet0", "class", "date", "step"), avisotest.WithSchema("fleet1", "class", "date", "step"))
	}

	t.Run("next to healthy ones", func(t *testing.T) {
		t.Parallel()
		aviso := newAviso(t)
		dir := t.TempDir()
		ns := natstest.NewServer(t)
		js := ns.JetStream(t)
		e := jetStreamEnv(env{
			"AVISO_URL":            aviso.URL,
			"AVISO_LISTENERS_FILE": writeTestFile(t, dir, "listeners.yaml", isolationFile),
			"AVISO_FROM_ID":        "1",
			"CHECKPOINT_FILE":      dir + "/checkpoint.json",
		}, ns)
		want := map[string][]uint64{}
		for i := range 100 {
			for _, et := range []string{"fleet0", "fleet1"} {
				want[et] = append(want[et], aviso.Publish(et, identifier(i), map[string]any{"i": i}))
			}
		}
		p := startBridge(t, "bridge", dir, e)
		b := &fleetBridge{proc: p}

		var failed listenerStatus
		p.WaitHTTP(startupWait, "/status", "listener bad failed, the others running", func(code int, body []byte) bool {
			st, err := getStatus(t.Context(), p)
			if err != nil {
				return false
			}
			bad, _ := st.listener("bad")
			a, _ := st.listener("good-a")
			g, _ := st.listener("good-b")
			failed = bad
			return bad.State == string(bridge.ListenerFailed) && a.State == string(bridge.ListenerRunning) && g.State == string(bridge.ListenerRunning)
		})
		t.Logf("bad: state %s, error %q", failed.State, failed.Error)
		if failed.Error == "" {
			t.Errorf("/status: listener bad is failed without an error")
		} else if !strings.Contains(failed.Error, "400") && !strings.Contains(failed.Error, "colour") && !strings.Contains(failed.Error, "INVALID_WATCH_REQUEST") {
			t.Errorf("/status: listener bad: error %q names neither the status 400, the code nor the key colour", failed.Error)
		}
		states, err := listenerStates(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		for name, st := range map[string]bridge.ListenerState{"bad": bridge.ListenerFailed, "good-a": bridge.ListenerRunning, "good-b": bridge.ListenerRunning} {
			if states[name] != string(st) {
				t.Errorf("aviso_bridge_listener_state{listener=%q}: %q is 1, want %q", name, states[name], st)
			}
		}

		// good-a watches class od: every notification of fleet0 has it.
		probe := fleetProbe{
			read:      func(et string) []uint64 { return readJetStreamEvent(t, ns, et) },
			last:      func(et string) (uint64, bool) { return jetStreamLastEvent(t, js, et) },
			pollEvery: 20 * time.Millisecond,
		}
		more := map[string][]uint64{}
		for i := 100; i < 150; i++ { // live, after the failure
			for _, et := range []string{"fleet0", "fleet1"} {
				more[et] = append(more[et], aviso.Publish(et, identifier(i), map[string]any{"i": i}))
			}
		}
		for et := range want {
			want[et] = append(want[et], more[et]...)
		}
		waitDelivered(t, probe, want, startupWait)
		for et, seqs := range want {
			requireComplete(t, et, probe.read(et), seqs, 0)
		}
		if p.Exited() {
			t.Fatalf("bridge exited (%v) with two healthy listeners", p.State())
		}
		if st, err := getStatus(t.Context(), p); err != nil {
			t.Fatal(err)
		} else if l, _ := st.listener("bad"); l.State != string(bridge.ListenerFailed) {
			t.Errorf("listener bad: state %q after the others delivered, want failed (not retried)", l.State)
		}
		stopGracefully(t, b)
	})

	t.Run("none left", func(t *testing.T) {
		t.Parallel()
		aviso := newAviso(t)
		dir := t.TempDir()
		ns := natstest.NewServer(t)
		e := jetStreamEnv(env{
			"AVISO_URL": aviso.URL,
			"AVISO_LISTENERS_FILE": writeTestFile(t, dir, "listeners.yaml",
				"listeners:\n  - name: bad\n    event: fleet0\n    identifiers: {colour: red}\n  - name: worse\n    event: fleet1\n    identifiers: {shape: round}\n"),
			"AVISO_FROM_ID":   "1",
			"CHECKPOINT_FILE": dir + "/checkpoint.json",
		}, ns)
		p := startBridge(t, "bridge", dir, e)
		if code := p.Wait(startupWait); code != 1 {
			t.Fatalf("exit code %d with every listener failed, want 1", code)
		}
	})
}
