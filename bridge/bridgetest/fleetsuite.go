package bridgetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

// FleetStore is a store as a whole: the checkpoint admin and the fleet
// coordinator.
type FleetStore interface {
	checkpoint.Admin
	checkpoint.Coordinator
}

// FleetSuiteConfig is what FleetSuite needs of a store.
type FleetSuiteConfig struct {
	StoreSuiteConfig
	// OpenFleet opens a new view of the whole store (as another process
	// would), judging liveness with ttl.
	OpenFleet func(ctx context.Context, ttl time.Duration) (FleetStore, error)
	// AnnounceDead writes a member record for id that nobody refreshes (a
	// member killed with kill -9).
	AnnounceDead func(ctx context.Context, id string) error
}

// FleetSuite checks a store's checkpoint.Coordinator and checkpoint.Admin:
// members announced by one view are listed by another, a release removes
// a member at once, an unrefreshed member is dropped within the TTL plus
// a second while live ones stay; Holders names the live holder of each
// key and drops a dead one; the admin lists, gets, sets (backwards too)
// and deletes, refusing with a *lease.HeldError naming a live holder
// unless forced, and outwaiting a dead one.
func FleetSuite(t *testing.T, cfg FleetSuiteConfig) {
	t.Helper()
	s := &fleetSuite{storeSuite: storeSuite{cfg: cfg.StoreSuiteConfig}, fcfg: cfg}
	t.Run("Members", s.members)
	t.Run("Holders", s.holders)
	t.Run("Admin", s.admin)
	t.Run("AdminDeadHolder", s.adminDeadHolder)
	t.Run("AdminForce", s.adminForce)
}

type fleetSuite struct {
	storeSuite
	fcfg FleetSuiteConfig
}

func (s *fleetSuite) fleet(ctx context.Context, t *testing.T) FleetStore {
	t.Helper()
	f, err := s.fcfg.OpenFleet(ctx, s.ttl())
	if err != nil {
		t.Fatalf("OpenFleet: %v", err)
	}
	return f
}

func memberIDs(ctx context.Context, t *testing.T, f FleetStore) []string {
	t.Helper()
	ms, err := f.Members(ctx)
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

func (s *fleetSuite) members(t *testing.T) {
	ctx := storeContext(t, 30*time.Second)
	a, b, observer := s.fleet(ctx, t), s.fleet(ctx, t), s.fleet(ctx, t)
	id := s.key()[:12]
	relA, err := a.Announce(ctx, id+"-a")
	if err != nil {
		t.Fatalf("Announce a: %v", err)
	}
	relB, err := b.Announce(ctx, id+"-b")
	if err != nil {
		t.Fatalf("Announce b: %v", err)
	}
	t.Cleanup(func() { _ = relB(context.Background()) })
	if _, err := observer.Announce(ctx, id+"-b"); !errors.Is(err, bridge.ErrKeyHeld) {
		t.Fatalf("second Announce of a live id = %v, want bridge.ErrKeyHeld", err)
	}
	if err := s.fcfg.AnnounceDead(ctx, id+"-z"); err != nil {
		t.Fatalf("AnnounceDead: %v", err)
	}
	has := func(ids []string, want string) bool { return slices.Contains(ids, want) }
	if ids := memberIDs(ctx, t, observer); !has(ids, id+"-a") || !has(ids, id+"-b") {
		t.Fatalf("Members = %v, want %s-a and %s-b", ids, id, id)
	}
	if err := relA(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
	if ids := memberIDs(ctx, t, observer); has(ids, id+"-a") || !has(ids, id+"-b") {
		t.Fatalf("after a's release Members = %v, want %s-b without %s-a (at once)", ids, id, id)
	}
	start := time.Now()
	Eventually(t, s.ttl()+time.Second, "the unrefreshed member to be dropped", func() bool {
		ids := memberIDs(ctx, t, observer)
		if !has(ids, id+"-b") {
			t.Fatalf("live member b dropped after %v: %v", time.Since(start), ids)
		}
		return !has(ids, id+"-z")
	})
	// b stays a member for several TTLs (its record is refreshed).
	pace := time.NewTicker(s.ttl() / 10) // paces the reads; not a synchronisation
	defer pace.Stop()
	for deadline := time.Now().Add(2 * s.ttl()); time.Now().Before(deadline); <-pace.C {
		if ids := memberIDs(ctx, t, observer); !has(ids, id+"-b") {
			t.Fatalf("live member b dropped: %v", ids)
		}
	}
}

func (s *fleetSuite) holders(t *testing.T) {
	ctx := storeContext(t, 30*time.Second)
	f := s.fleet(ctx, t)
	live, absent, released := s.key(), s.key(), s.key()
	holder, err := s.openMode(ctx, t, live, lease.Config{TTL: s.ttl(), Owner: "bridge-h1"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	rel, err := s.openMode(ctx, t, released, lease.Config{TTL: s.ttl(), Owner: "bridge-h2"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := rel.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	hs, err := f.Holders(ctx, []string{live, absent, released})
	if err != nil {
		t.Fatalf("Holders: %v", err)
	}
	if len(hs) != 3 || hs[live].Holder != "bridge-h1" || hs[absent].Holder != "" || hs[released].Holder != "" {
		t.Fatalf("Holders = %+v, want %s held by bridge-h1 and the others free", hs, live)
	}
	if s.cfg.Abandon == nil {
		return
	}
	s.cfg.Abandon(holder)
	Eventually(t, s.ttl()+time.Second, "the abandoned key to count as free", func() bool {
		hs, err := f.Holders(ctx, []string{live})
		if err != nil {
			t.Fatalf("Holders: %v", err)
		}
		return hs[live].Holder == ""
	})
}

// mustGet returns key's entry.
func mustGet(ctx context.Context, t *testing.T, f FleetStore, key string) (checkpoint.Entry, bool) {
	t.Helper()
	e, found, err := f.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	return e, found
}

func checkAdminHeld(t *testing.T, op string, err error, holder string) {
	t.Helper()
	var held *lease.HeldError
	if !errors.As(err, &held) || !errors.Is(err, bridge.ErrKeyHeld) || held.Holder != holder {
		t.Fatalf("%s of a live key = %v, want a *lease.HeldError naming %s", op, err, holder)
	}
}

func (s *fleetSuite) admin(t *testing.T) {
	ctx := storeContext(t, 30*time.Second)
	f := s.fleet(ctx, t)
	key := s.key()
	holder, err := s.openMode(ctx, t, key, lease.Config{TTL: s.ttl(), Owner: "bridge-adm"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := holder.Commit(ctx, bridge.Checkpoint{Sequence: 5, EventID: "mars@5"}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	s.checkList(ctx, t, f, key)
	checkAdminHeld(t, "Set", f.Set(ctx, key, bridge.Checkpoint{Sequence: 9}, false), "bridge-adm")
	checkAdminHeld(t, "Delete", f.Delete(ctx, key, false), "bridge-adm")
	if err := holder.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := f.Set(ctx, key, bridge.Checkpoint{Sequence: 3, EventID: "mars@3"}, false); err != nil {
		t.Fatalf("Set of a released key (backwards): %v", err)
	}
	if e, found := mustGet(ctx, t, f, key); !found || e.Checkpoint.Sequence != 3 || e.Holder != "" {
		t.Fatalf("Get after Set = %+v, %v; want 3, released", e, found)
	}
	next := s.open(storeContext(t, 5*time.Second), t, key, time.Hour) // released: taken at once
	if seq, found := mustLoad(ctx, t, next); !found || seq != 3 {
		t.Fatalf("Load after Set = %d, %v; want 3", seq, found)
	}
	if err := next.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := f.Delete(ctx, key, false); err != nil {
		t.Fatalf("Delete of a released key: %v", err)
	}
	if e, found := mustGet(ctx, t, f, key); found {
		t.Fatalf("Get after Delete = %+v, want nothing", e)
	}
	again := s.open(storeContext(t, 5*time.Second), t, key, time.Hour)
	if seq, found := mustLoad(ctx, t, again); found {
		t.Fatalf("Load after Delete found %d", seq)
	}
	if err := f.Delete(ctx, s.key(), false); err != nil {
		t.Fatalf("Delete of an absent key: %v", err)
	}
}

// checkList: List shows key at 5 held by bridge-adm, sorted, without
// member records.
func (s *fleetSuite) checkList(ctx context.Context, t *testing.T, f FleetStore, key string) {
	t.Helper()
	list, err := f.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	i := slices.IndexFunc(list, func(e checkpoint.Entry) bool { return e.Key == key })
	if i < 0 || !list[i].Found || list[i].Checkpoint.Sequence != 5 || list[i].Holder != "bridge-adm" {
		t.Fatalf("List = %+v, want %s at 5 held by bridge-adm with a lease expiry", list, key)
	}
	if s.cfg.TTL > 0 && list[i].LeaseExpires.IsZero() {
		t.Errorf("List entry %+v: no lease expiry", list[i])
	}
	if !slices.IsSortedFunc(list, func(a, b checkpoint.Entry) int { return strings.Compare(a.Key, b.Key) }) {
		t.Errorf("List not sorted by key")
	}
	for _, e := range list {
		if strings.HasPrefix(e.Key, checkpoint.MemberPrefix) {
			t.Errorf("List shows member record %s", e.Key)
		}
	}
}

// adminDeadHolder: a key whose holder died is changed once its lease
// lapses (within the TTL plus a second).
func (s *fleetSuite) adminDeadHolder(t *testing.T) {
	if s.cfg.Abandon == nil {
		t.Skip("the store has no lease to abandon")
	}
	ctx := storeContext(t, 30*time.Second)
	f := s.fleet(ctx, t)
	key := s.key()
	holder := s.open(ctx, t, key, s.ttl())
	s.cfg.Abandon(holder)
	start := time.Now()
	if err := f.Set(ctx, key, bridge.Checkpoint{Sequence: 11}, false); err != nil {
		t.Fatalf("Set of a key whose holder died: %v", err)
	}
	if took := time.Since(start); took > s.ttl()+time.Second {
		t.Errorf("Set took %v, want at most the TTL plus a second", took)
	}
	if e, _ := mustGet(ctx, t, f, key); e.Checkpoint.Sequence != 11 {
		t.Fatalf("Get = %+v, want 11", e)
	}
}

// adminForce: force changes a key a live holder holds.
func (s *fleetSuite) adminForce(t *testing.T) {
	ctx := storeContext(t, 30*time.Second)
	f := s.fleet(ctx, t)
	key := s.key()
	holder := s.open(ctx, t, key, time.Hour) // no refresh during the check
	if err := holder.Commit(ctx, bridge.Checkpoint{Sequence: 30}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := f.Set(ctx, key, bridge.Checkpoint{Sequence: 2}, true); err != nil {
		t.Fatalf("forced Set: %v", err)
	}
	if e, _ := mustGet(ctx, t, f, key); e.Checkpoint.Sequence != 2 {
		t.Fatalf("Get after a forced Set = %+v, want 2", e)
	}
	if err := f.Delete(ctx, key, true); err != nil {
		t.Fatalf("forced Delete: %v", err)
	}
	if e, found := mustGet(ctx, t, f, key); found {
		t.Fatalf("Get after a forced Delete = %+v, want nothing", e)
	}
}
