package integration

import (
	"encoding/json"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// listRow returns the row of listener in the table `checkpoint list`
// prints (a header line of column names, one line per listener), by column
// name; nil when there is none.
func listRow(out, listener string) map[string]string {
	var header []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case slices.Contains(f, "LISTENER") && slices.Contains(f, "HOLDER"):
			header = f
		case header != nil && len(f) == len(header) && f[slices.Index(header, "LISTENER")] == listener:
			row := map[string]string{}
			for i, h := range header {
				row[h] = f[i]
			}
			return row
		}
	}
	return nil
}

// TestFleetCheckpointCommand: `aviso-bridge checkpoint list|get|set|delete`
// against the nats-kv store of a fleet (two listeners, BRIDGE_STANDBY=true):
//
//   - while bridge admin-a holds both listeners: list names both, the holder
//     and a lease expiry; get shows the committed sequence; set and delete
//     exit 1 naming the holder and change nothing;
//   - after admin-a's graceful stop: set and delete work without --force,
//     and a new bridge resumes watch-0 after the set position and watch-1
//     from AVISO_FROM_ID (its checkpoint deleted);
//   - while admin-b holds them: set --force and delete --force change the
//     store at once.
func TestFleetCheckpointCommand(t *testing.T) {
	t.Parallel()
	aviso := avisotest.NewServer(t)
	dir := t.TempDir()
	sk := fleetSinks[0] // nats-kv + jetstream
	base, probe := sk.start(t, fleetBase(aviso, writeFleetFile(t, dir, 2)))
	keys := map[string]string{}
	for i := range 2 {
		k, err := bridge.CheckpointKey(aviso.URL, fleetEvent(i), json.RawMessage(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		keys[fleetName(i)] = k
	}
	for i := range 50 {
		aviso.Publish(fleetEvent(0), identifier(i), map[string]any{"i": i})
		aviso.Publish(fleetEvent(1), identifier(i), map[string]any{"i": i})
	}
	seqOf := func(name string) (uint64, bool) {
		c, ok := probe.stored(keys[name])
		return c.seq(), ok && c.Sequence != nil
	}
	// checkpoint runs `aviso-bridge checkpoint args...` with the fleet's
	// configuration and returns its exit code and output.
	checkpoint := func(args ...string) (int, string) {
		t.Helper()
		e := base.With()
		e["BRIDGE_HTTP_ADDR"] = "" // a command serves nothing
		p := startBridge(t, "checkpoint "+strings.Join(args, " "), "", e, append([]string{"checkpoint"}, args...)...)
		code := p.Wait(startupWait)
		out := strings.Join(p.Stdout.Lines(), "\n") + "\n" + strings.Join(p.Stderr.Lines(), "\n")
		t.Logf("checkpoint %s: exit %d\n%s", strings.Join(args, " "), code, out)
		return code, out
	}

	a := &fleetBridge{proc: startBridge(t, "admin-a", "", base.With("BRIDGE_INSTANCE_ID", "admin-a")), id: "admin-a"}
	waitSpread(t, []*fleetBridge{a}, startupWait, "admin-a runs both", func(s spread) bool { return len(s.held["admin-a"]) == 2 })
	if !eventually(startupWait, func() bool {
		s0, _ := seqOf("watch-0")
		s1, _ := seqOf("watch-1")
		return s0 == 50 && s1 == 50
	}) {
		t.Fatal("admin-a did not commit 50 on both listeners")
	}

	// Held: list and get show; set and delete refuse.
	code, out := checkpoint("list")
	if code != 0 {
		t.Errorf("checkpoint list: exit %d, want 0", code)
	}
	for _, want := range []string{"watch-0", "watch-1", "admin-a", "50"} {
		if !strings.Contains(out, want) {
			t.Errorf("checkpoint list: output lacks %q", want)
		}
	}
	for _, n := range []string{"watch-0", "watch-1"} {
		row := listRow(out, n)
		exp, err := time.Parse(time.RFC3339, row["LEASE_EXPIRES"])
		if row["HOLDER"] != "admin-a" || err != nil || time.Until(exp) < -time.Minute || time.Until(exp) > time.Minute {
			t.Errorf("checkpoint list: row of %s %v: want HOLDER admin-a and LEASE_EXPIRES a time about now (%v)", n, row, err)
		}
	}
	code, out = checkpoint("get", "watch-0")
	if code != 0 || !strings.Contains(out, "50") {
		t.Errorf("checkpoint get watch-0: exit %d, want 0 and the sequence 50 in the output", code)
	}
	for _, args := range [][]string{{"set", "watch-0", "10"}, {"delete", "watch-1"}} {
		code, out = checkpoint(args...)
		if code != 1 || !strings.Contains(out, "admin-a") {
			t.Errorf("checkpoint %v while admin-a holds it: exit %d, want 1 naming the holder admin-a", args, code)
		}
	}
	for _, n := range []string{"watch-0", "watch-1"} {
		if s, ok := seqOf(n); !ok || s != 50 {
			t.Errorf("%s: stored %d (found %v) after refused changes, want 50", n, s, ok)
		}
	}

	// Released: set and delete work without --force.
	a.Signal(syscall.SIGTERM)
	if code := a.Wait(startupWait); code != 0 {
		t.Fatalf("admin-a: exit code %d after SIGTERM, want 0", code)
	}
	if code, _ = checkpoint("set", "watch-0", "10"); code != 0 {
		t.Errorf("checkpoint set watch-0 10 on a released listener: exit %d, want 0", code)
	}
	if c, ok := probe.stored(keys["watch-0"]); !ok || c.seq() != 10 || c.Owner != "" {
		t.Errorf("watch-0 after set: stored %+v (seq %d), want 10 and released", c, c.seq())
	}
	if code, _ = checkpoint("delete", "watch-1"); code != 0 {
		t.Errorf("checkpoint delete watch-1 on a released listener: exit %d, want 0", code)
	}
	if _, ok := seqOf("watch-1"); ok {
		t.Errorf("watch-1: a checkpoint is still stored after delete")
	}
	before := len(aviso.Requests())
	b := &fleetBridge{proc: startBridge(t, "admin-b", "", base.With("BRIDGE_INSTANCE_ID", "admin-b")), id: "admin-b"}
	reqs, err := aviso.WaitRequests(t.Context(), before+2)
	if err != nil {
		t.Fatal(err)
	}
	from := map[string]string{}
	for _, r := range reqs[before:] {
		if _, seen := from[r.EventType]; !seen {
			from[r.EventType] = r.FromID
		}
	}
	if from[fleetEvent(0)] != "11" || from[fleetEvent(1)] != "1" {
		t.Errorf("admin-b asked from_id %q for watch-0 (want 11: set 10 + 1) and %q for watch-1 (want 1: deleted, AVISO_FROM_ID)",
			from[fleetEvent(0)], from[fleetEvent(1)])
	}
	waitSpread(t, []*fleetBridge{b}, startupWait, "admin-b runs both", func(s spread) bool { return len(s.held["admin-b"]) == 2 })
	if !eventually(startupWait, func() bool { s, _ := seqOf("watch-1"); return s == 50 }) {
		t.Fatal("admin-b did not commit 50 on watch-1")
	}

	// Held by admin-b: --force changes the store at once.
	if code, _ = checkpoint("set", "--force", "watch-0", "20"); code != 0 {
		t.Errorf("checkpoint set --force watch-0 20 while admin-b holds it: exit %d, want 0", code)
	}
	if s, _ := seqOf("watch-0"); s != 20 {
		t.Errorf("watch-0 after set --force: stored %d, want 20", s)
	}
	if code, _ = checkpoint("delete", "--force", "watch-1"); code != 0 {
		t.Errorf("checkpoint delete --force watch-1 while admin-b holds it: exit %d, want 0", code)
	}
	if _, ok := seqOf("watch-1"); ok {
		t.Errorf("watch-1: a checkpoint is still stored after delete --force")
	}
	_, out = checkpoint("list")
	if slices.Contains(strings.Fields(out), "admin-a") {
		t.Errorf("checkpoint list still names admin-a after its graceful stop")
	}
	b.Kill9() // its leases were forced away: how it stops is not this test's matter
}
