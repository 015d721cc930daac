package fleet_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/fleet"
)

// fleetSim is the store as the bridges see it: listener leases (holder per
// listener), failed marks, live members. Each member keeps its FreeRounds.
type fleetSim struct {
	t         *testing.T
	rng       *rand.Rand
	listeners []string
	members   []string
	holders   map[string]string
	failed    map[string]bool
	free      map[string]map[string]int // member -> FreeRounds
	grace     int
}

func (s *fleetSim) input(m string) fleet.Input {
	return fleet.Input{Self: m, Listeners: s.listeners, Members: s.members, Holders: s.holders,
		Failed: s.failed, FreeRounds: s.free[m], GraceRounds: s.grace}
}

// plan computes m's plan and checks what must hold for every plan.
func (s *fleetSim) plan(m string) fleet.Plan {
	in := s.input(m)
	p := fleet.Compute(in)
	if len(p.Release) > 0 && p.Held <= p.Share {
		s.t.Fatalf("%s releases %v at or below its share (%d of %d)", m, p.Release, p.Held, p.Share)
	}
	if len(p.Release) > 0 && len(p.Claim) > 0 {
		s.t.Fatalf("%s claims and releases at once: %+v", m, p)
	}
	if len(p.Claim) > 0 && p.Held+len(p.Claim) > p.Share {
		s.t.Fatalf("%s would hold %d+%d, above its share %d", m, p.Held, len(p.Claim), p.Share)
	}
	for _, l := range p.Release {
		if s.holders[l] != m || s.failed[l] {
			s.t.Fatalf("%s releases %s held by %q (failed %v)", m, l, s.holders[l], s.failed[l])
		}
	}
	s.free[m] = fleet.CountFree(s.free[m], s.listeners, s.holders)
	return p
}

// apply releases, then claims: a claim wins only on a free lease (create).
func (s *fleetSim) apply(m string, p fleet.Plan) (changed bool) {
	for _, l := range p.Release {
		delete(s.holders, l)
		changed = true
	}
	for _, l := range p.Claim {
		if s.holders[l] == "" {
			s.holders[l] = m
			changed = true
		}
	}
	return changed
}

// roundSync: every member plans on the same snapshot, then all apply, claims
// in random order (the lease settles races).
func (s *fleetSim) roundSync() bool {
	plans := map[string]fleet.Plan{}
	for _, m := range s.members {
		plans[m] = s.plan(m)
	}
	changed := false
	for _, m := range s.members {
		changed = s.apply(m, fleet.Plan{Release: plans[m].Release}) || changed
	}
	order := slices.Clone(s.members)
	s.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for _, m := range order {
		changed = s.apply(m, fleet.Plan{Claim: plans[m].Claim}) || changed
	}
	return changed
}

// roundAsync: members plan and apply one after another, in random order.
func (s *fleetSim) roundAsync() bool {
	order := slices.Clone(s.members)
	s.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	changed := false
	for _, m := range order {
		changed = s.apply(m, s.plan(m)) || changed
	}
	return changed
}

// lapse frees the leases of holders that are not live members.
func (s *fleetSim) lapse() {
	for l, h := range s.holders {
		if !slices.Contains(s.members, h) {
			delete(s.holders, l)
			delete(s.failed, l)
		}
	}
}

// converge runs rounds until nothing changes and checks the end state.
func (s *fleetSim) converge(sync bool, maxRounds int) int {
	return s.convergeWith(sync, maxRounds, false)
}

// convergeWith: deadHolders allows leases of gone holders that have not
// lapsed yet.
func (s *fleetSim) convergeWith(sync bool, maxRounds int, deadHolders bool) int {
	for r := 1; r <= maxRounds+1; r++ {
		var changed bool
		if sync {
			changed = s.roundSync()
		} else {
			changed = s.roundAsync()
		}
		if !changed {
			s.checkStable(deadHolders)
			return r
		}
	}
	s.t.Fatalf("no convergence in %d rounds: members %v, holders %v", maxRounds, s.members, s.holders)
	return 0
}

// checkStable: every listener held by a live member, nobody above the share,
// and further rounds change nothing (no oscillation).
func (s *fleetSim) checkStable(deadHolders bool) {
	active := 0
	load := map[string]int{}
	for _, l := range s.listeners {
		h := s.holders[l]
		if deadHolders && h != "" && !slices.Contains(s.members, h) {
			if !s.failed[l] {
				active++
			}
			continue
		}
		if !slices.Contains(s.members, h) {
			s.t.Fatalf("listener %s held by %q, not a live member: %v", l, h, s.holders)
		}
		if !s.failed[l] {
			active++
			load[h]++
		}
	}
	share := fleet.Share(active, len(s.members))
	for m, n := range load {
		if n > share {
			s.t.Fatalf("%s holds %d, above the share %d", m, n, share)
		}
	}
	for range 3 {
		for _, m := range s.members {
			if p := s.plan(m); len(p.Claim)+len(p.Release) > 0 {
				s.t.Fatalf("stable state but %s plans %+v", m, p)
			}
		}
	}
}

func newSim(t *testing.T, seed uint64) *fleetSim {
	rng := rand.New(rand.NewPCG(seed, 1))
	s := &fleetSim{t: t, rng: rng, holders: map[string]string{}, failed: map[string]bool{}, free: map[string]map[string]int{}}
	s.listeners = names("l", rng.IntN(40))
	for i := range 1 + rng.IntN(7) {
		s.members = append(s.members, fmt.Sprintf("bridge-%d", i))
	}
	s.grace = 1 + rng.IntN(3)
	for _, l := range s.listeners {
		switch r := rng.IntN(10); {
		case r < 4: // free
		case r < 6:
			s.holders[l] = "dead-" + fmt.Sprint(rng.IntN(2))
		default:
			s.holders[l] = s.members[rng.IntN(len(s.members))]
			s.failed[l] = rng.IntN(8) == 0
		}
	}
	return s
}

// TestSimulation: over many random fleets, bridges that apply their plans
// converge within a few rounds to every listener held once, nobody above its
// share, and stay there; through joins, crashes and graceful leaves too.
func TestSimulation(t *testing.T) {
	for seed := range uint64(400) {
		sync := seed%2 == 0
		t.Run(fmt.Sprintf("seed%d-sync%v", seed, sync), func(t *testing.T) {
			s := newSim(t, seed)
			s.convergeWith(sync, 4, true) // dead holders' leases still valid
			s.lapse()
			s.converge(sync, 4)
			for step := range 6 {
				s.churn(step)
				s.lapse()
				s.converge(sync, 4)
			}
		})
	}
}

// churn changes membership: a join, a crash (leases lapse) or a graceful
// leave (leases released at once).
func (s *fleetSim) churn(step int) {
	switch r := s.rng.IntN(3); {
	case r == 0 || len(s.members) == 1:
		s.members = append(s.members, fmt.Sprintf("joiner-%d", step))
	default:
		i := s.rng.IntN(len(s.members))
		gone := s.members[i]
		s.members = slices.Delete(s.members, i, i+1)
		if r == 2 { // graceful: release (failed ones too: the process ends)
			for l, h := range s.holders {
				if h == gone {
					delete(s.holders, l)
					delete(s.failed, l)
				}
			}
		}
	}
}

// TestJoinGetsShare: a bridge joining two that hold everything gets its
// share as they release their surplus.
func TestJoinGetsShare(t *testing.T) {
	s := &fleetSim{t: t, rng: rand.New(rand.NewPCG(1, 2)), listeners: names("l", 9), members: []string{"a"},
		holders: map[string]string{}, failed: map[string]bool{}, free: map[string]map[string]int{}}
	if rounds := s.converge(true, 2); rounds > 2 {
		t.Errorf("lone bridge took %d rounds", rounds)
	}
	s.members = append(s.members, "b")
	s.converge(true, 3)
	s.members = append(s.members, "c")
	s.converge(true, 3)
	load := map[string]int{}
	for _, h := range s.holders {
		load[h]++
	}
	if load["a"] != 3 || load["b"] != 3 || load["c"] != 3 {
		t.Errorf("9 listeners on 3 bridges: %v, want 3 each", load)
	}
}
