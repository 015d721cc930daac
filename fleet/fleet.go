// Package fleet decides how bridges that share a store spread their
// listeners (BRIDGE_STANDBY=true, README, "Several listeners and fleets"). It is the pure
// part: given one bridge's view of the store (the configured listeners, the
// live members, who holds which listener lease), Compute says which free
// listeners this bridge should try to claim now and which of its own it
// should hand over. The caller reads the store, applies the plan through the
// per-listener leases (claim: create the lease; release: drain, commit,
// release) and computes again on the next lease refresh.
//
// # Rules
//
// Share is ceil(active listeners / live members). A bridge holding more
// active listeners than its share releases the surplus; a bridge holding its
// share or less releases nothing. A bridge below its share claims free
// listeners up to its share. Since members x share >= listeners, every
// listener is held once the views agree, and nobody holds more than its
// share; a joining bridge gets listeners only from bridges above the new
// share (9 listeners on 3 bridges holding 3 each: a fourth gets nothing, as
// ceil(9/4) = 3).
//
// # Who claims what
//
// Every member ranks members per listener by rendezvous hashing
// (Weight(listener, member), highest first; the first is the listener's
// Home). Free listeners are handed out in name order, each to the
// highest-ranked member with room left below its share. Members with the
// same view compute the same assignment, so they do not race for a listener;
// views that differ (a lease just written) make at most a lost claim, which
// the lease settles. A listener free for GraceRounds plans in a row may be
// claimed by any member with room, so a member that is alive but does not
// claim (stuck, starting slowly) does not keep a listener unserved. Surplus
// is released preferring listeners whose home is another member with room,
// then those ranked lowest for this bridge, so a listener tends to return
// home.
//
// # Failed listeners
//
// A listener that failed permanently stays failed on the bridge that holds
// it (visible in /status, lease kept, so the fleet does not retry it
// forever). It runs no stream, so it does not count: shares are computed
// over the active listeners (not failed), a failed listener counts toward
// nobody's load, and the plan never claims or releases it. When its holder
// goes away the lease lapses, the listener is free again (not failed) and
// another bridge retries it.
package fleet

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sort"
)

// DefaultGraceRounds is GraceRounds when Input leaves it 0.
const DefaultGraceRounds = 3

// Input is one bridge's view of the fleet.
type Input struct {
	// Self is this bridge's instance id (BRIDGE_INSTANCE_ID).
	Self string
	// Listeners are the configured listener names (configuration order).
	Listeners []string
	// Members are the instance ids of the live bridges (membership leases
	// not lapsed); Self is added when missing.
	Members []string
	// Holders maps a listener to the instance id holding its lease; a
	// listener absent (or mapped to "") is free. A holder that is not a live
	// member still holds the lease until it lapses: such a listener is not
	// free and counts toward nobody's load. Names not in Listeners are
	// ignored.
	Holders map[string]string
	// Failed marks held listeners whose holder reports them failed (see the
	// package comment); the mark is ignored on a free listener.
	Failed map[string]bool
	// FreeRounds counts, per listener, the plans in a row this bridge has
	// seen it free (CountFree keeps it); nil: none overdue.
	FreeRounds map[string]int
	// GraceRounds is how many plans in a row a listener may stay free before
	// any member with room claims it (0: DefaultGraceRounds).
	GraceRounds int
}

// Plan is what one bridge does now.
type Plan struct {
	// Share is the most active listeners one bridge should hold.
	Share int
	// Held is how many active listeners Self holds now.
	Held int
	// Claim are free listeners to try to claim now, most preferred first;
	// never more than Share - Held.
	Claim []string
	// Release are held listeners to hand over (drain, commit, release);
	// exactly Held - Share of them when Held > Share, else none.
	Release []string
}

// Share is ceil(listeners / members), 0 without listeners or members.
func Share(listeners, members int) int {
	if listeners <= 0 || members <= 0 {
		return 0
	}
	return (listeners + members - 1) / members
}

// Weight is the rendezvous-hashing weight of member for listener: the
// first 8 bytes of SHA-256 over both, length-prefixed. The same on every
// bridge and every platform.
func Weight(listener, member string) uint64 {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(listener)))
	h.Write(n[:])
	h.Write([]byte(listener))
	h.Write([]byte(member))
	return binary.BigEndian.Uint64(h.Sum(nil)[:8])
}

// Home is the member that ranks first for listener ("" without members).
func Home(listener string, members []string) string {
	best, bw := "", uint64(0)
	for _, m := range members {
		if w := Weight(listener, m); best == "" || w > bw || (w == bw && m < best) {
			best, bw = m, w
		}
	}
	return best
}

// ranked are members ordered for listener: highest weight first, ties by id.
func ranked(listener string, members []string) []string {
	out := slices.Clone(members)
	w := make(map[string]uint64, len(out))
	for _, m := range out {
		w[m] = Weight(listener, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if w[out[i]] != w[out[j]] {
			return w[out[i]] > w[out[j]]
		}
		return out[i] < out[j]
	})
	return out
}

// CountFree returns the FreeRounds of the next plan: prev plus one for each
// listener free now, and none for a listener held now.
func CountFree(prev map[string]int, listeners []string, holders map[string]string) map[string]int {
	next := make(map[string]int, len(listeners))
	for _, l := range listeners {
		if holders[l] == "" {
			next[l] = prev[l] + 1
		}
	}
	return next
}
