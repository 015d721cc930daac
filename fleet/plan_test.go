package fleet_test

import (
	"fmt"
	"slices"
	"sort"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/fleet"
)

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return out
}

// hold maps the given listeners to holder.
func hold(h map[string]string, holder string, ls ...string) map[string]string {
	if h == nil {
		h = map[string]string{}
	}
	for _, l := range ls {
		h[l] = holder
	}
	return h
}

func TestShare(t *testing.T) {
	for _, c := range []struct{ n, m, want int }{{0, 3, 0}, {9, 3, 3}, {9, 4, 3}, {10, 3, 4}, {1, 5, 1}, {5, 1, 5}, {5, 0, 0}} {
		if got := fleet.Share(c.n, c.m); got != c.want {
			t.Errorf("Share(%d, %d) = %d, want %d", c.n, c.m, got, c.want)
		}
	}
}

func TestHomeIsStableAndSpread(t *testing.T) {
	members := []string{"a", "b", "c"}
	homes := map[string]int{}
	for _, l := range names("l", 300) {
		h := fleet.Home(l, members)
		if h2 := fleet.Home(l, []string{"c", "a", "b"}); h2 != h {
			t.Fatalf("Home(%s) depends on member order: %s, %s", l, h, h2)
		}
		homes[h]++
	}
	for _, m := range members {
		if homes[m] < 70 {
			t.Errorf("member %s is home of %d of 300 listeners; rendezvous hashing should spread them", m, homes[m])
		}
	}
	if fleet.Weight("l", "a") == fleet.Weight("a", "l") || fleet.Weight("ab", "c") == fleet.Weight("a", "bc") {
		t.Error("Weight must separate listener from member")
	}
}

func TestCompute(t *testing.T) {
	ls := names("l", 6)
	tests := []struct {
		name        string
		in          fleet.Input
		share, held int
		claim       int // how many claims
		claimSet    []string
		release     []string // exact, when set
		releaseN    int
	}{
		{
			name:  "lone bridge takes everything",
			in:    fleet.Input{Self: "a", Listeners: ls},
			share: 6, claim: 6, claimSet: ls,
		},
		{
			name:  "self added to members, unknown and empty member ids ignored",
			in:    fleet.Input{Self: "a", Listeners: ls, Members: []string{"", "b"}, Holders: hold(nil, "b", "zz")},
			share: 3, claim: 3,
		},
		{
			name:  "listeners of a dead holder are not free until their lease lapses",
			in:    fleet.Input{Self: "a", Listeners: ls, Members: []string{"a"}, Holders: hold(nil, "dead", ls[:4]...)},
			share: 6, claim: 2, claimSet: ls[4:],
		},
		{
			name:  "at share: nothing to do",
			in:    fleet.Input{Self: "a", Listeners: ls, Members: []string{"a", "b"}, Holders: hold(hold(nil, "a", ls[:3]...), "b", ls[3:]...)},
			share: 3, held: 3,
		},
		{
			name:  "below share with all others held: nothing to claim, nothing to release",
			in:    fleet.Input{Self: "a", Listeners: ls, Members: []string{"a", "b", "c"}, Holders: hold(hold(nil, "b", ls[:2]...), "c", ls[2:]...)},
			share: 2,
		},
		{
			name:  "above share after a join: release the surplus",
			in:    fleet.Input{Self: "a", Listeners: ls, Members: []string{"a", "b"}, Holders: hold(nil, "a", ls...)},
			share: 3, held: 6, releaseN: 3,
		},
		{
			name:  "three members, one holds all: releases down to 2",
			in:    fleet.Input{Self: "a", Listeners: ls, Members: []string{"a", "b", "c"}, Holders: hold(nil, "a", ls...)},
			share: 2, held: 6, releaseN: 4,
		},
		{
			name:  "claims limited to the room below share",
			in:    fleet.Input{Self: "a", Listeners: ls, Members: []string{"a", "b"}, Holders: hold(nil, "a", ls[0], ls[1])},
			share: 3, held: 2, claim: 1,
		},
		{
			name: "failed listeners do not count and are never claimed or released",
			in: fleet.Input{Self: "a", Listeners: ls, Members: []string{"a", "b"},
				Holders: hold(hold(nil, "a", ls[0], ls[1], ls[2], ls[3]), "b", ls[4]),
				Failed:  map[string]bool{ls[0]: true, ls[4]: true, ls[5]: true}},
			// active: l01 l02 l03 (a) and l05 (free; failed mark ignored): 4 on 2 members.
			share: 2, held: 3, releaseN: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := fleet.Compute(tt.in)
			if p.Share != tt.share || p.Held != tt.held {
				t.Errorf("share, held = %d, %d; want %d, %d", p.Share, p.Held, tt.share, tt.held)
			}
			if len(p.Claim) != tt.claim {
				t.Errorf("claim %v: %d, want %d", p.Claim, len(p.Claim), tt.claim)
			}
			if tt.claimSet != nil && !sameSet(p.Claim, tt.claimSet) {
				t.Errorf("claim %v, want %v", p.Claim, tt.claimSet)
			}
			if len(p.Release) != tt.releaseN {
				t.Errorf("release %v: %d, want %d", p.Release, len(p.Release), tt.releaseN)
			}
			for _, l := range p.Release {
				if tt.in.Holders[l] != tt.in.Self || tt.in.Failed[l] {
					t.Errorf("releases %s, which self does not hold or which failed", l)
				}
			}
			for _, l := range p.Claim {
				if tt.in.Holders[l] != "" {
					t.Errorf("claims %s, held by %s", l, tt.in.Holders[l])
				}
			}
			if again := fleet.Compute(tt.in); !slices.Equal(again.Claim, p.Claim) || !slices.Equal(again.Release, p.Release) {
				t.Errorf("not deterministic: %+v then %+v", p, again)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

// TestSameViewNoRace: members that see the same store claim disjoint
// listeners that together cover every free one (up to the shares).
func TestSameViewNoRace(t *testing.T) {
	ls := names("l", 10)
	members := []string{"a", "b", "c"}
	holders := hold(nil, "a", ls[0])
	claimed := map[string]string{}
	for _, m := range members {
		for _, l := range fleet.Compute(fleet.Input{Self: m, Listeners: ls, Members: members, Holders: holders}).Claim {
			if other, ok := claimed[l]; ok {
				t.Errorf("%s and %s both claim %s", other, m, l)
			}
			claimed[l] = m
		}
	}
	if len(claimed) != 9 {
		t.Errorf("claimed %d of 9 free listeners: %v", len(claimed), claimed)
	}
}

// TestSurplusGoesHome: a bridge above its share releases the listeners whose
// home is the member that has room.
func TestSurplusGoesHome(t *testing.T) {
	ls := names("l", 8)
	members := []string{"a", "b"}
	p := fleet.Compute(fleet.Input{Self: "a", Listeners: ls, Members: members, Holders: hold(nil, "a", ls...)})
	homeB := 0
	for _, l := range ls {
		if fleet.Home(l, members) == "b" {
			homeB++
		}
	}
	want := min(homeB, 4)
	got := 0
	for _, l := range p.Release {
		if fleet.Home(l, members) == "b" {
			got++
		}
	}
	if len(p.Release) != 4 || got != want {
		t.Errorf("released %v: %d with home b, want %d of 4", p.Release, got, want)
	}
}

func TestCountFree(t *testing.T) {
	ls := []string{"x", "y", "z"}
	next := fleet.CountFree(map[string]int{"x": 2, "y": 5}, ls, map[string]string{"y": "a"})
	if next["x"] != 3 || next["y"] != 0 || next["z"] != 1 {
		t.Errorf("CountFree = %v", next)
	}
}

// TestOverdueListener: a listener assigned to another member that stays free
// for GraceRounds plans is claimed by a member with room.
func TestOverdueListener(t *testing.T) {
	members := []string{"a", "b"}
	var l string
	for _, c := range names("l", 50) {
		if fleet.Home(c, members) == "b" {
			l = c
			break
		}
	}
	in := fleet.Input{Self: "a", Listeners: []string{l}, Members: members, GraceRounds: 2}
	for rounds, want := range []int{0, 0, 1, 1} {
		in.FreeRounds = map[string]int{l: rounds}
		if got := len(fleet.Compute(in).Claim); got != want {
			t.Errorf("free for %d rounds: %d claims, want %d", rounds, got, want)
		}
	}
	in.GraceRounds = 0 // DefaultGraceRounds
	in.FreeRounds = map[string]int{l: fleet.DefaultGraceRounds - 1}
	if got := len(fleet.Compute(in).Claim); got != 0 {
		t.Errorf("default grace: claimed after %d rounds", fleet.DefaultGraceRounds-1)
	}
}
