package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
	"github.com/aviso-bridge/aviso-bridge/fleet"
)

// runListeners runs every configured listener: all of them at once
// (runStatic), or, with BRIDGE_STANDBY, those this bridge wins in the fleet
// sharing the store (runFleet). The connections are closed after every
// listener has stopped.
func (w *wiring) runListeners(ctx context.Context) error {
	defer w.cl.close()
	if w.cfg.Bridge.Standby {
		return w.runFleet(ctx)
	}
	return w.runStatic(ctx)
}

// runStatic runs every listener at once, each on its own (a listener that
// fails stops alone), until all have returned. With one listener the
// result is that listener's, exactly as a single bridge's; with several it
// is nil when each finished its replay or stopped on ctx with its final
// commit, else an error (exit 1) naming the listeners that failed.
func (w *wiring) runStatic(ctx context.Context) error {
	errs := make([]error, len(w.units))
	var wg sync.WaitGroup
	for i, u := range w.units {
		wg.Go(func() {
			errs[i] = w.runListener(ctx, u, lease.Probe)
			w.settleStatic(ctx, u, errs[i])
		})
	}
	wg.Wait()
	if len(w.units) == 1 {
		return errs[0]
	}
	var failed, drain []string
	for i, u := range w.units {
		switch {
		case errs[i] == nil:
		case u.view().state == bridge.ListenerFailed:
			failed = append(failed, fmt.Sprintf("%s: %v", u.spec.Name, errs[i]))
		default:
			drain = append(drain, fmt.Sprintf("%s: %v", u.spec.Name, errs[i]))
		}
	}
	switch {
	case stopRequested(ctx) && len(drain) > 0:
		return fmt.Errorf("stopping: %s", strings.Join(drain, "; "))
	case stopRequested(ctx):
		return nil
	case len(failed) > 0:
		return fmt.Errorf("no listener left running: %d of %d failed (%s)", len(failed), len(w.units), strings.Join(failed, "; "))
	}
	return nil
}

// settleStatic records how a listener's run ended: finished (a completed
// replay), failed (before any stop was requested), or stopped.
func (w *wiring) settleStatic(ctx context.Context, u *unit, err error) {
	switch {
	case ctx.Err() != nil:
	case err == nil:
		u.setState(bridge.ListenerFinished, "")
	default:
		u.fail(err)
	}
}

// fleetMinPeriod bounds how often a fleet reads the store.
const fleetMinPeriod = 50 * time.Millisecond

// runFleet announces this bridge in the store (BRIDGE_INSTANCE_ID) and
// runs the fleet loop until ctx is done or no listener is left running or
// waiting here; the membership is removed after every listener stopped.
func (w *wiring) runFleet(ctx context.Context) error {
	for _, u := range w.units {
		u.moved("") // no series until it runs here
	}
	admin, err := openAdmin(ctx, w.cfg, w.cl.leaseConfig(lease.Probe), w.log, w.cl)
	if err != nil {
		return w.processStartFailed(ctx, err)
	}
	id := w.cfg.Bridge.InstanceID
	release, err := retryStart(ctx, w.log, "fleet membership", func() (func(context.Context) error, error) {
		return admin.Announce(ctx, id)
	})
	if err != nil {
		return w.processStartFailed(ctx, fmt.Errorf("BRIDGE_INSTANCE_ID %s: announcing this bridge in the %s checkpoint store: %w", id, w.cfg.Checkpoint.Store, err))
	}
	w.log.Info("bridge.fleet.joined", "instance", id, "listeners", len(w.units), "ttl", w.cfg.Checkpoint.LeaseTTL.String())
	defer func() {
		closeWithin(w.clock, w.log, "fleet membership", release)
		w.log.Info("bridge.fleet.left", "instance", id)
	}()
	f := newFleetRun(w, admin)
	err = f.run(ctx)
	f.releaseStale(admin)
	return err
}

// processStartFailed is the result of a start-up step of the whole process
// that failed: nil when a stop was requested meanwhile.
func (w *wiring) processStartFailed(ctx context.Context, err error) error {
	if startInterrupted(ctx, err, w.log) {
		return nil
	}
	return err
}

// fleetRun is the fleet loop of one bridge: every third of the lease TTL
// (and whenever a listener's run ends) it reads the members and the
// holders from the store, computes the fair-share plan (package fleet) and
// applies it. Only the loop's goroutine touches its fields, except the
// units' own state.
type fleetRun struct {
	w      *wiring
	coord  checkpoint.Coordinator
	self   string
	ttl    time.Duration
	period time.Duration
	names  []string
	keys   []string
	runs   map[*unit]*unitRun
	// changed wakes the loop when a run ends.
	changed chan struct{}
	// freeRounds counts the plans in a row each listener was free.
	freeRounds map[string]int
	// members is the membership of the last view and demandSince since
	// when the plan has asked for releases under it (zero: it does not).
	members     string
	demandSince time.Time
	lastPlan    string
	wg          sync.WaitGroup
	mu          sync.Mutex
	drainErrs   []string
}

// unitRun is a listener's run in the fleet: waiting for its lease, then
// running, until it ends or is cancelled (a handover, a waiter no longer
// wanted, the stop).
type unitRun struct {
	cancel    context.CancelFunc
	done      chan struct{}
	releasing bool
}

func newFleetRun(w *wiring, coord checkpoint.Coordinator) *fleetRun {
	f := &fleetRun{w: w, coord: coord, self: w.cfg.Bridge.InstanceID, ttl: w.cfg.Checkpoint.LeaseTTL,
		runs: map[*unit]*unitRun{}, changed: make(chan struct{}, 1)}
	f.period = max(f.ttl/3, fleetMinPeriod)
	for _, u := range w.units {
		f.names = append(f.names, u.spec.Name)
		f.keys = append(f.keys, u.spec.Key)
	}
	return f
}

// run is the loop: it returns on ctx (every listener drained, committed,
// released) or when every listener has failed or finished here.
func (f *fleetRun) run(ctx context.Context) error {
	t := time.NewTicker(f.period)
	defer t.Stop()
	for {
		f.reap()
		if done, err := f.over(); done {
			f.stopAll()
			return err
		}
		f.round(ctx)
		select {
		case <-ctx.Done():
			f.stopAll()
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.drainErrs) > 0 {
				return fmt.Errorf("stopping: %s", strings.Join(f.drainErrs, "; "))
			}
			return nil
		case <-t.C:
		case <-f.changed:
		}
	}
}

// over reports whether no listener is left running or waiting here:
// every one failed or finished (an error when one failed).
func (f *fleetRun) over() (bool, error) {
	var failed []string
	for _, u := range f.w.units {
		switch v := u.view(); v.state {
		case bridge.ListenerFailed:
			failed = append(failed, fmt.Sprintf("%s: %v", u.spec.Name, v.err))
		case bridge.ListenerFinished:
		default:
			return false, nil
		}
	}
	if len(failed) > 0 {
		return true, fmt.Errorf("no listener left running or waiting: %d of %d failed (%s)", len(failed), len(f.w.units), strings.Join(failed, "; "))
	}
	return true, nil
}

// reap forgets the runs that ended.
func (f *fleetRun) reap() {
	for u, r := range f.runs {
		select {
		case <-r.done:
			delete(f.runs, u)
		default:
		}
	}
}

// stopAll stops every run (drain, commit, release) and waits for them,
// then releases the leases of failed listeners.
func (f *fleetRun) stopAll() {
	for _, r := range f.runs {
		r.cancel()
	}
	f.wg.Wait()
	for _, u := range f.w.units {
		u.closeParked()
	}
}

// releaseStale releases, as the bridge stops, the keys that still name it
// although no run holds them here: a waiter cancelled by the stop just as
// its claim was written leaves one, which the next bridge would otherwise
// wait a TTL for. The key is opened in lease.Try (it names this owner, so
// it is taken at once) and closed, which releases it.
func (f *fleetRun) releaseStale(admin checkpoint.Admin) {
	if f.w.cfg.Checkpoint.Store == storeFile {
		return // the process's locks go with it
	}
	ctx, cancel := f.w.clock.context(time.Second)
	defer cancel()
	for _, u := range f.w.units {
		e, _, err := admin.Get(ctx, u.spec.Key)
		if err != nil || e.Holder != f.self {
			continue
		}
		s, err := openStore(ctx, f.w.cfg, u.spec.Key, lease.Try, u.log, f.w.cl)
		if err == nil {
			_ = s.Close()
		}
	}
}

// fleetView is one read of the store.
type fleetView struct {
	members []string
	holders map[string]string // listener name -> instance id ("" free)
	load    map[string]int    // instance id -> active listeners held
	failed  map[string]bool
}

// read reads the members and holders.
func (f *fleetRun) read(ctx context.Context) (fleetView, error) {
	rctx, cancel := context.WithTimeout(ctx, max(f.ttl, time.Second))
	defer cancel()
	ms, err := f.coord.Members(rctx)
	if err != nil {
		return fleetView{}, fmt.Errorf("members: %w", err)
	}
	hs, err := f.coord.Holders(rctx, f.keys)
	if err != nil {
		return fleetView{}, fmt.Errorf("holders: %w", err)
	}
	v := fleetView{holders: map[string]string{}, load: map[string]int{}, failed: map[string]bool{}}
	for _, m := range ms {
		v.members = append(v.members, m.ID)
	}
	for _, u := range f.w.units {
		h := hs[u.spec.Key].Holder
		switch uv := u.view(); {
		case uv.state == bridge.ListenerFailed:
			h = f.self
			v.failed[u.spec.Name] = true
		case uv.active:
			h = f.self
		}
		v.holders[u.spec.Name] = h
		if h != "" && !v.failed[u.spec.Name] {
			v.load[h]++
		}
	}
	return v, nil
}

// round reads the store, plans and applies the plan.
func (f *fleetRun) round(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	v, err := f.read(ctx)
	if err != nil {
		f.w.log.Warn("bridge.fleet.read_failed", "error", err.Error(), "hint", "the fleet loop retries; listeners running here go on")
		return
	}
	plan := fleet.Compute(fleet.Input{Self: f.self, Listeners: f.names, Members: v.members, Holders: v.holders,
		Failed: v.failed, FreeRounds: f.freeRounds})
	f.freeRounds = fleet.CountFree(f.freeRounds, f.names, v.holders)
	f.logPlan(v, plan)
	f.apply(ctx, v, plan)
}

// logPlan logs the plan when it or the membership changed.
func (f *fleetRun) logPlan(v fleetView, plan fleet.Plan) {
	line := fmt.Sprint(v.members, plan.Share, plan.Held, plan.Claim, plan.Release)
	if line == f.lastPlan {
		return
	}
	f.lastPlan = line
	f.w.log.Info("bridge.fleet.plan", "members", v.members, "share", plan.Share, "held", plan.Held, "claim", plan.Claim, "release", plan.Release)
}

// releasable reports whether the plan's releases are to be applied now:
// only once it has asked for them for one TTL under one membership, so that
// the surplus a bridge has just after taking over a crashed member's
// listeners (while that member still counts) is not handed around.
func (f *fleetRun) releasable(v fleetView, plan fleet.Plan) bool {
	sig := strings.Join(v.members, ",")
	now := time.Now()
	switch {
	case sig != f.members || len(plan.Release) == 0:
		f.members, f.demandSince = sig, time.Time{}
		if len(plan.Release) > 0 {
			f.demandSince = now
		}
		return false
	case f.demandSince.IsZero():
		f.demandSince = now
	}
	return now.Sub(f.demandSince) >= f.ttl
}

// apply starts the runs the plan and the successions want, cancels the
// waiters no longer wanted, and hands over the surplus.
func (f *fleetRun) apply(ctx context.Context, v fleetView, plan fleet.Plan) {
	claims := map[string]bool{}
	for _, n := range plan.Claim {
		claims[n] = true
	}
	releases := map[string]bool{}
	if f.releasable(v, plan) {
		for _, n := range plan.Release {
			releases[n] = true
		}
	}
	for _, u := range f.w.units {
		name := u.spec.Name
		uv, r := u.view(), f.runs[u]
		holder := v.holders[name]
		switch {
		case uv.state == bridge.ListenerFailed || uv.state == bridge.ListenerFinished:
		case r != nil && uv.active:
			if releases[name] && !r.releasing {
				r.releasing = true
				u.log.Info("bridge.fleet.handover", "share", plan.Share, "held", plan.Held,
					"reason", "this bridge runs more than its fair share; draining, committing and releasing the listener")
				r.cancel()
			}
		case r != nil:
			// A waiter whose key just went free (holder "": its holder's
			// lease lapsed in this view) is kept even when the plan gives
			// the listener to another bridge: it is the dead holder's
			// successor, about to take the key over; cancelling it would
			// make the new claimant outwait the dead holder's record for a
			// second TTL. A surplus is handed over later as usual.
			if holder != "" && !claims[name] && !f.succeeds(name, holder, v) {
				r.cancel()
				continue
			}
			u.standby(holder)
		default:
			u.standby(holder)
			// A key naming this bridge without a run here is a claim left
			// by a waiter cancelled as it won: taken back at once.
			if claims[name] || holder == f.self || f.succeeds(name, holder, v) {
				f.start(ctx, u, holder)
			}
		}
	}
}

// succeeds reports whether this bridge is the one to wait for listener
// name, held by another bridge: so that a crashed holder's listener is
// taken over within the TTL (a waiting lease sees the holder stop) and a
// graceful handover at once (it sees the release). It is the first of the
// live members other than the holder in the listener's rendezvous ranking
// (package fleet), which the holder's death does not change, so the wait
// is not restarted while the dead member still counts; a surplus handed
// over goes preferably to its home (fleet.Plan), which is this member.
func (f *fleetRun) succeeds(name, holder string, v fleetView) bool {
	if holder == "" || holder == f.self {
		return false
	}
	cands := slices.DeleteFunc(slices.Clone(v.members), func(m string) bool { return m == holder })
	if !slices.Contains(cands, f.self) {
		cands = append(cands, f.self)
	}
	return fleet.Home(name, cands) == f.self
}

// start runs listener u in the fleet: waiting for its lease (lease.Standby)
// until it is released or lapses, then running it until a handover, the
// stop, or a failure.
func (f *fleetRun) start(ctx context.Context, u *unit, holder string) {
	uctx, cancel := context.WithCancel(ctx)
	r := &unitRun{cancel: cancel, done: make(chan struct{})}
	f.runs[u] = r
	u.standby(holder)
	f.wg.Go(func() {
		defer close(r.done)
		defer cancel()
		err := f.w.runListener(uctx, u, lease.Standby)
		f.settle(ctx, uctx, u, err)
		select {
		case f.changed <- struct{}{}:
		default:
		}
	})
}

// settle records how a run ended: back to standby (cancelled, handed over,
// or its key held by another bridge), finished (a completed replay),
// failed, or a failure of the final drain (ctx done).
func (f *fleetRun) settle(ctx, uctx context.Context, u *unit, err error) {
	var held *lease.HeldError
	switch {
	case ctx.Err() != nil:
		if err != nil {
			f.mu.Lock()
			f.drainErrs = append(f.drainErrs, fmt.Sprintf("%s: %v", u.spec.Name, err))
			f.mu.Unlock()
		}
	case errors.As(err, &held):
		u.log.Info("bridge.fleet.standby", "holder", held.Holder, "reason", err.Error())
		u.moved(held.Holder)
	case uctx.Err() != nil || isHeld(err):
		u.moved("")
	case err == nil:
		u.setState(bridge.ListenerFinished, "")
	default:
		u.fail(err)
	}
}
