package fleet

import (
	"slices"
	"sort"
)

// view is Input digested: live members, active listeners, loads.
type view struct {
	self    string
	members []string        // sorted, unique, Self included
	live    map[string]bool // members as a set
	active  []string        // configured, not failed, unique, config order
	free    []string        // active and free, name order
	mine    []string        // active and held by self, config order
	load    map[string]int  // active listeners held, per live member
	share   int
}

func digest(in Input) view {
	v := view{self: in.Self, live: map[string]bool{in.Self: true}, load: map[string]int{}}
	for _, m := range in.Members {
		if m != "" {
			v.live[m] = true
		}
	}
	for m := range v.live {
		v.members = append(v.members, m)
	}
	sort.Strings(v.members)
	seen := map[string]bool{}
	for _, l := range in.Listeners {
		holder := in.Holders[l]
		if seen[l] || (holder != "" && in.Failed[l]) {
			continue
		}
		seen[l] = true
		v.active = append(v.active, l)
		switch {
		case holder == "":
			v.free = append(v.free, l)
		case v.live[holder]:
			v.load[holder]++
			if holder == in.Self {
				v.mine = append(v.mine, l)
			}
		}
	}
	sort.Strings(v.free)
	v.share = Share(len(v.active), len(v.members))
	return v
}

// Compute is the plan of bridge in.Self for its view in. It is a pure
// function of in: the same view gives the same plan on every bridge.
func Compute(in Input) Plan {
	v := digest(in)
	p := Plan{Share: v.share, Held: len(v.mine)}
	if p.Held > p.Share {
		p.Release = v.surplus()
		return p
	}
	room := p.Share - p.Held
	if room == 0 || len(v.free) == 0 {
		return p
	}
	grace := in.GraceRounds
	if grace <= 0 {
		grace = DefaultGraceRounds
	}
	assigned := v.assign()
	for _, l := range v.free {
		if assigned[l] == v.self {
			p.Claim = append(p.Claim, l)
		}
	}
	for _, l := range v.free {
		if assigned[l] != v.self && in.FreeRounds[l] >= grace {
			p.Claim = append(p.Claim, l)
		}
	}
	if len(p.Claim) > room {
		p.Claim = p.Claim[:room]
	}
	return p
}

// assign hands each free listener, in name order, to its highest-ranked
// member with room left below the share.
func (v view) assign() map[string]string {
	room := make(map[string]int, len(v.members))
	for _, m := range v.members {
		room[m] = max(v.share-v.load[m], 0)
	}
	out := make(map[string]string, len(v.free))
	for _, l := range v.free {
		for _, m := range ranked(l, v.members) {
			if room[m] > 0 {
				room[m]--
				out[l] = m
				break
			}
		}
	}
	return out
}

// surplus picks Held - Share of self's listeners to release: first those
// whose home is another member with room, then those whose home is another
// member, then the ones ranked lowest for self.
func (v view) surplus() []string {
	type cand struct {
		name  string
		class int // 0: home elsewhere with room, 1: home elsewhere, 2: home here
		w     uint64
	}
	cands := make([]cand, 0, len(v.mine))
	for _, l := range v.mine {
		c := cand{name: l, class: 2, w: Weight(l, v.self)}
		if home := Home(l, v.members); home != v.self {
			c.class = 1
			if v.load[home] < v.share {
				c.class = 0
			}
		}
		cands = append(cands, c)
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.class != b.class {
			return a.class < b.class
		}
		if a.w != b.w {
			return a.w < b.w
		}
		return a.name < b.name
	})
	n := len(v.mine) - v.share
	out := make([]string, 0, n)
	for _, c := range cands[:n] {
		out = append(out, c.name)
	}
	return slices.Clip(out)
}
