package integration

import (
	"context"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// fleetChaosPlan is the size of a randomized fleet run.
type fleetChaosPlan struct {
	rounds           int
	maxBridges       int
	minDwell, dwell  time.Duration // each round lasts minDwell + [0, dwell)
	settle           time.Duration // the final spread's deadline
	deliveryDeadline time.Duration
}

func fleetChaosPlanFor() fleetChaosPlan {
	if long() {
		return fleetChaosPlan{rounds: 80, maxBridges: 5, minDwell: 100 * time.Millisecond, dwell: 4 * time.Second,
			settle: time.Minute, deliveryDeadline: 2 * time.Minute}
	}
	return fleetChaosPlan{rounds: 10, maxBridges: 4, minDwell: 200 * time.Millisecond, dwell: 2500 * time.Millisecond,
		settle: 45 * time.Second, deliveryDeadline: time.Minute}
}

// fleetSeed is the seed of the randomized fleet test:
// AVISO_BRIDGE_FLEET_SEED, else a fixed default (the time in the long
// mode); logged so that a failure can be replayed.
func fleetSeed(t *testing.T) uint64 {
	seed := uint64(20261214)
	if long() {
		seed = uint64(time.Now().UnixNano())
	}
	if s := os.Getenv("AVISO_BRIDGE_FLEET_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("AVISO_BRIDGE_FLEET_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("fleet chaos from seed %d (AVISO_BRIDGE_FLEET_SEED=%d reproduces it)", seed, seed)
	return seed
}

// TestFleetChaos: rounds of a random action — kill -9 of a random bridge,
// SIGTERM of one, or a new bridge — against a fleet of up to four
// (BRIDGE_STANDBY=true, nine listeners, NATS KV store, JetStream sink,
// CHECKPOINT_LEASE_TTL=2s) while avisotest publishes a live stream; each
// round lasts a random time. Then a bridge is (re)started if none runs, the
// spread must settle (every listener on one bridge, none above its share),
// and the stream must hold every notification once (0 stored duplicates by
// Nats-Msg-Id), in order per listener; every SIGTERM exits 0.
// AVISO_BRIDGE_LONG=1: 80 rounds with up to five bridges.
func TestFleetChaos(t *testing.T) {
	plan := fleetChaosPlanFor()
	rng := rand.New(rand.NewPCG(fleetSeed(t), 14))
	aviso := avisotest.NewServer(t)
	dir := t.TempDir()
	sk := fleetSinks[0] // nats-kv + jetstream
	base, probe := sk.start(t, fleetBase(aviso, writeFleetFile(t, dir, fleetSize)))
	f := &fleet{t: t, base: base, dir: dir}
	events := make([]string, fleetSize)
	for i := range fleetSize {
		f.names = append(f.names, fleetName(i))
		events[i] = fleetEvent(i)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pub := publishFleet(ctx, aviso, events, fleetRate)
	defer pub.finish()

	next := 0
	// A started bridge serves /healthz before it may be chosen: a SIGTERM
	// in the first milliseconds of a process, before any Go program has
	// installed its handler, kills it (exit by signal), which is not what
	// this test is about.
	startOne := func() {
		b := f.start("chaos-" + strconv.Itoa(next))
		next++
		b.WaitHTTP(startupWait, "/healthz", "serving", func(code int, _ []byte) bool { return code == http.StatusOK })
	}
	startOne()
	startOne()
	var kills, terms, starts int
	var log []string
	for round := range plan.rounds {
		live := f.live()
		action := rng.IntN(3) // 0 kill -9, 1 SIGTERM, 2 start
		switch {
		case len(live) == 0:
			action = 2
		case len(live) >= plan.maxBridges && action == 2:
			action = rng.IntN(2)
		}
		switch action {
		case 0:
			b := live[rng.IntN(len(live))]
			b.Kill9()
			kills++
			log = append(log, "kill -9 "+b.id)
		case 1:
			b := live[rng.IntN(len(live))]
			b.Signal(syscall.SIGTERM)
			if code := b.Wait(startupWait); code != 0 {
				t.Errorf("round %d: %s: exit code %d after SIGTERM, want 0", round, b.Name, code)
			}
			terms++
			log = append(log, "SIGTERM "+b.id)
		case 2:
			startOne()
			starts++
			log = append(log, "start chaos-"+strconv.Itoa(next-1))
		}
		dwell := plan.minDwell + time.Duration(rng.Int64N(int64(plan.dwell)))
		select {
		case <-time.After(dwell): // a random moment of the next action, not synchronisation
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	t.Logf("%d rounds: %d kill -9, %d SIGTERM, %d starts: %v", plan.rounds, kills, terms, starts, log)
	if len(f.live()) == 0 {
		startOne()
	}
	live := f.live()
	share := ceilDiv(fleetSize, len(live))
	s, _ := waitSpread(t, live, plan.settle, "settled spread", func(s spread) bool {
		return s.complete(f.names) && s.maxHeld() <= share
	})
	t.Logf("settled on %d bridges: %v", len(live), s)
	want := pub.finish()
	waitDelivered(t, probe, want, plan.deliveryDeadline)
	for _, b := range live {
		stopGracefully(t, b)
	}
	checkFleetDelivery(t, aviso, probe, want, nil)
}
