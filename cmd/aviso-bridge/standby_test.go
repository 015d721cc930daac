package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/natskv"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// runs is what a bridge's /status says it runs itself.
func (s bridgeStatus) runs() []string {
	var out []string
	for _, l := range s.Listeners {
		if l.State == "running" && l.Holder == s.Instance {
			out = append(out, l.Name)
		}
	}
	return out
}

// standbyTTL is CHECKPOINT_LEASE_TTL of the standby tests.
const standbyTTL = time.Second

// BRIDGE_STANDBY on one NATS KV bucket: a bridge takes over the listeners
// of a holder that died (its leases and member record stopped being
// refreshed) within the TTL plus 1 s and claims the free ones at once; a
// second bridge joining gets its fair share through graceful handovers;
// a graceful stop hands every listener over at once; nothing is delivered
// twice (stdout sinks, live stream).
func TestStandbyTakeOverSpreadAndHandover(t *testing.T) {
	aviso := avisotest.NewServer(t)
	ns := natstest.NewServer(t)
	file := writeListeners(t, "listeners:\n  - event: e0\n  - event: e1\n  - event: e2\n  - event: e3\n")
	env := func(id, addr string) map[string]string {
		return map[string]string{"AVISO_URL": aviso.URL, "AVISO_LISTENERS_FILE": file, "AVISO_FROM_ID": "1",
			"CHECKPOINT_STORE": "nats-kv", "NATS_URL": ns.URL, "CHECKPOINT_LEASE_TTL": standbyTTL.String(), "CHECKPOINT_INTERVAL": "20ms",
			"BRIDGE_STANDBY": "true", "BRIDGE_INSTANCE_ID": id, "BRIDGE_HTTP_ADDR": addr}
	}
	cfg, err := load(t, env("x", ""))
	if err != nil {
		t.Fatal(err)
	}
	names := cfg.listenerNames()
	// A "ghost" bridge held e0 and e1 and died: its leases and member
	// record stay in the bucket, never refreshed again.
	crashed := crashHolder(t, ns, cfg.listeners[0].Key, cfg.listeners[1].Key)
	publish := func(round int) {
		for i := range 4 {
			aviso.Publish(fmt.Sprintf("e%d", i), nil, round)
		}
	}
	publish(0)

	addrB := closedAddr(t)
	b := startRun(t, env("b", addrB))
	eventually(t, 5*time.Second, "b claims the free listeners", func() bool { return len(getStatus(t, addrB).runs()) >= 2 })
	if st := getStatus(t, addrB).get(names[0]); st.State != "standby" && st.State != "running" {
		t.Errorf("e0 while the ghost holds it: %+v", st)
	}
	eventually(t, standbyTTL+time.Second+2*time.Second, "b takes over the ghost's listeners", func() bool { return len(getStatus(t, addrB).runs()) == 4 })
	took := time.Since(crashed)
	t.Logf("take-over %v after the crash", took)
	if bound := standbyTTL + time.Second + 500*time.Millisecond; took > bound {
		t.Errorf("take-over %v after the crash, want at most TTL + 1 s (+0.5 s to start b and observe it)", took)
	}
	publish(1)

	addrC := closedAddr(t)
	c := startRun(t, env("c", addrC))
	eventually(t, 15*time.Second, "c gets its share", func() bool {
		return len(getStatus(t, addrB).runs()) == 2 && len(getStatus(t, addrC).runs()) == 2
	})
	if st := getStatus(t, addrC); !slices.ContainsFunc(st.Listeners, func(l listenerStatus) bool { return l.State == "standby" && l.Holder == "b" }) {
		t.Errorf("c shows no listener standby held by b: %+v", st)
	}
	publish(2)

	stopAt := time.Now()
	b.cancel()
	eventually(t, 5*time.Second, "c runs all after b's graceful stop", func() bool { return len(getStatus(t, addrC).runs()) == 4 })
	took = time.Since(stopAt)
	t.Logf("handover %v after the stop", took)
	if took > time.Second+500*time.Millisecond {
		t.Errorf("handover after a graceful stop took %v, want at most 1 s (+0.5 s to observe it)", took)
	}
	if err := b.wait(t); err != nil {
		t.Errorf("b stopped with %v", err)
	}
	publish(3)
	eventually(t, 10*time.Second, "every notification delivered", func() bool {
		return strings.Count(b.out.String()+c.out.String(), "\n") >= 16
	})
	c.cancel()
	if err := c.wait(t); err != nil {
		t.Errorf("c stopped with %v", err)
	}
	checkOnce(t, b.out.String()+c.out.String(), 4, 4)
}

// crashHolder takes keys and a member record as the bridge "ghost" on its
// own connection, then closes the connection without releasing anything,
// as kill -9 would; it returns when.
func crashHolder(t *testing.T, ns *natstest.Server, keys ...string) time.Time {
	t.Helper()
	nc := ns.Conn(t)
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	lc := lease.Config{TTL: standbyTTL, Owner: "ghost"}
	for _, k := range keys {
		if _, err := natskv.Open(ctx, nc, natskv.Config{Bucket: natskv.DefaultBucket, Key: k, Lease: lc}, log); err != nil {
			t.Fatal(err)
		}
	}
	bk, err := natskv.OpenBucket(ctx, nc, natskv.BucketConfig{Lease: lc}, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bk.Announce(ctx, "ghost"); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	return time.Now()
}

// checkOnce checks that out holds each of events' notifications 1..n
// exactly once.
func checkOnce(t *testing.T, out string, events, n int) {
	t.Helper()
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		i := strings.Index(line, `"id":"`)
		if i < 0 {
			t.Errorf("line without id: %s", line)
			continue
		}
		id := line[i+6:]
		seen[id[:strings.IndexByte(id, '"')]]++
	}
	for e := range events {
		for s := 1; s <= n; s++ {
			if id := fmt.Sprintf("e%d@%d", e, s); seen[id] != 1 {
				t.Errorf("%s delivered %d times", id, seen[id])
			}
		}
	}
}

// BRIDGE_STANDBY on the file store (bridges on one host): the key locks
// and member lock files spread the listeners and hand them over at a
// graceful stop.
func TestStandbyFileStore(t *testing.T) {
	aviso := avisotest.NewServer(t)
	file := writeListeners(t, "listeners:\n  - event: e0\n  - event: e1\n  - event: e2\n  - event: e3\n")
	cp := filepath.Join(t.TempDir(), "cp.json")
	env := func(id, addr string) map[string]string {
		return map[string]string{"AVISO_URL": aviso.URL, "AVISO_LISTENERS_FILE": file, "AVISO_FROM_ID": "1",
			"CHECKPOINT_FILE": cp, "CHECKPOINT_LEASE_TTL": standbyTTL.String(), "CHECKPOINT_INTERVAL": "20ms",
			"BRIDGE_STANDBY": "true", "BRIDGE_INSTANCE_ID": id, "BRIDGE_HTTP_ADDR": addr}
	}
	for i := range 4 {
		aviso.Publish(fmt.Sprintf("e%d", i), nil, 0)
	}
	addrB, addrC := closedAddr(t), closedAddr(t)
	b := startRun(t, env("b", addrB))
	eventually(t, 5*time.Second, "b runs all", func() bool { return len(getStatus(t, addrB).runs()) == 4 })
	c := startRun(t, env("c", addrC))
	eventually(t, 15*time.Second, "spread 2/2", func() bool {
		return len(getStatus(t, addrB).runs()) == 2 && len(getStatus(t, addrC).runs()) == 2
	})
	b.cancel()
	eventually(t, 3*time.Second, "c runs all after b's stop", func() bool { return len(getStatus(t, addrC).runs()) == 4 })
	if err := b.wait(t); err != nil {
		t.Errorf("b: %v", err)
	}
	for i := range 4 {
		aviso.Publish(fmt.Sprintf("e%d", i), nil, 1)
	}
	eventually(t, 10*time.Second, "every notification delivered", func() bool {
		return strings.Count(b.out.String()+c.out.String(), "\n") >= 8
	})
	c.cancel()
	if err := c.wait(t); err != nil {
		t.Errorf("c: %v", err)
	}
	checkOnce(t, b.out.String()+c.out.String(), 4, 2)
}
