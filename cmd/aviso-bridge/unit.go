package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/metrics"
	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// unit is one configured listener in this process: its own supervisor,
// pipeline (ordered window), sink instance and checkpoint store (its key's
// lease), with what /status and /readyz show of it. A unit runs at most
// once at a time (runListener); in a fleet it may run again after a
// handover.
type unit struct {
	spec    listenerSpec
	log     *slog.Logger
	metrics *bridge.Metrics
	set     *metrics.Set
	// ready is what /readyz looks at while the unit runs here.
	ready *readyState
	// last is the CloudEvent time of the last notification forwarded
	// (unix nanoseconds; 0: none).
	last atomic.Int64
	// committed is set once the pipeline stopped with its final commit.
	committed atomic.Bool

	mu     sync.Mutex
	state  bridge.ListenerState
	holder string // the bridge holding the lease when not this one
	err    error  // why the listener failed
	// active: the unit holds its lease here (from the store's open to its
	// close); pipe and sup are set while it runs.
	active bool
	pipe   *bridge.Pipeline
	sup    *supervisor.Supervisor
	// parked is the store of a failed listener kept open so that its lease
	// stays held (BRIDGE_STANDBY: the fleet does not retry it forever).
	parked io.Closer
}

// newUnit makes the unit of spec; with several listeners (named), its log
// lines carry the listener's name.
func newUnit(spec listenerSpec, log *slog.Logger, set *metrics.Set, named bool) *unit {
	if named {
		log = log.With("listener", spec.Name)
	}
	u := &unit{spec: spec, log: log, set: set, ready: &readyState{}}
	u.metrics = set.Listener(spec.Name)
	u.setState(bridge.ListenerStarting, "")
	return u
}

// setState records the listener's state (and, for standby, the holder).
func (u *unit) setState(s bridge.ListenerState, holder string) {
	u.mu.Lock()
	u.state, u.holder = s, holder
	if s != bridge.ListenerFailed {
		u.err = nil
	}
	u.mu.Unlock()
	u.set.SetState(u.spec.Name, s)
}

// standby records that the listener waits here while holder (another
// bridge, or "" for none) holds it, unless it has meanwhile taken its key
// (the fleet loop and the run race).
func (u *unit) standby(holder string) {
	u.mu.Lock()
	if u.active || (u.state == bridge.ListenerStandby && u.holder == holder) {
		u.mu.Unlock()
		return
	}
	u.mu.Unlock()
	u.setState(bridge.ListenerStandby, holder)
}

// moved records that the listener no longer runs here (handed over, or
// its key taken): standby, and its per-listener series are dropped until
// it runs here again (listener_state stays).
func (u *unit) moved(holder string) {
	u.set.Forget(u.spec.Name)
	u.setState(bridge.ListenerStandby, holder)
}

// fail records a permanent failure.
func (u *unit) fail(err error) {
	u.setState(bridge.ListenerFailed, "")
	u.mu.Lock()
	u.err = err
	u.mu.Unlock()
	u.log.Error("bridge.listener.failed", "error", err.Error(),
		"hint", "this listener stopped; the others go on (GET /status shows it)")
}

// running records the components of a run.
func (u *unit) running(pipe *bridge.Pipeline, sup *supervisor.Supervisor) {
	u.mu.Lock()
	u.pipe, u.sup = pipe, sup
	u.mu.Unlock()
	u.setState(bridge.ListenerRunning, "")
}

// setActive records whether the unit holds its key here (the pipeline
// and supervisor of the last run stay for /status).
func (u *unit) setActive(on bool) {
	u.mu.Lock()
	u.active = on
	u.mu.Unlock()
	if !on {
		u.ready.running(nil, nil, nil, nil)
	}
}

// park keeps the failed listener's store open until closeParked.
func (u *unit) park(c io.Closer) {
	u.mu.Lock()
	u.parked = c
	u.mu.Unlock()
}

func (u *unit) closeParked() {
	u.mu.Lock()
	c := u.parked
	u.parked = nil
	u.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// unitView is a consistent snapshot of a unit.
type unitView struct {
	state  bridge.ListenerState
	holder string
	err    error
	active bool
	parked bool
	pipe   *bridge.Pipeline
	sup    *supervisor.Supervisor
}

func (u *unit) view() unitView {
	u.mu.Lock()
	defer u.mu.Unlock()
	return unitView{state: u.state, holder: u.holder, err: u.err, active: u.active, parked: u.parked != nil, pipe: u.pipe, sup: u.sup}
}

// uncommitted reports whether something acknowledged may not be committed
// yet (for the exit code of a stop cut short).
func (u *unit) uncommitted() bool {
	v := u.view()
	return v.pipe != nil && !u.committed.Load() && v.pipe.Status().Uncommitted()
}

// drained reports whether the last run stopped with its final commit made
// and nothing in flight.
func (u *unit) drained() bool {
	v := u.view()
	return v.pipe != nil && u.committed.Load() && v.pipe.Status().InFlight == 0
}

// timedPipeline is the pipeline as the supervisor feeds it, recording the
// CloudEvent time of the last notification forwarded (/status).
type timedPipeline struct {
	*bridge.Pipeline
	last *atomic.Int64
}

func (p timedPipeline) Submit(ctx context.Context, n *bridge.Notification) error {
	if !n.Time.IsZero() {
		p.last.Store(n.Time.UnixNano())
	}
	return p.Pipeline.Submit(ctx, n)
}

// lastNotification is the CloudEvent time of the last notification
// forwarded (zero: none).
func (u *unit) lastNotification() time.Time {
	if ns := u.last.Load(); ns != 0 {
		return time.Unix(0, ns).UTC()
	}
	return time.Time{}
}

// isHeld reports whether err says another bridge holds the key.
func isHeld(err error) bool { return errors.Is(err, bridge.ErrKeyHeld) }

// configError turns a supervisor configuration error (an aviso 4xx that
// only a configuration change fixes) into main's, naming this listener's
// settings: the variables of the single form, the keys of its entry in the
// listener file for a file listener.
func (u *unit) configError(err error) error {
	var sce *supervisor.ConfigError
	if !errors.As(err, &sce) {
		return err
	}
	if !u.spec.FromFile {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return err
		}
		return asConfigError(err)
	}
	fields := maps.Clone(libraryFields()[libSupervisor])
	at := fmt.Sprintf(" of listener %q (line %d) in AVISO_LISTENERS_FILE", u.spec.Name, u.spec.Line)
	for field, key := range map[string]string{"EventType": "event", "Identifier": "identifiers", "Start.FromID": "from_id", "Start.FromDate": "from_date"} {
		fields[field] = key + at
	}
	return &ConfigError{Err: nameFields(sce, fields)}
}
