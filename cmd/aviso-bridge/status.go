package main

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// bridgeStatus is the body of GET /status (interface.md section 5).
type bridgeStatus struct {
	Instance  string           `json:"instance"`
	Version   string           `json:"version"`
	Listeners []listenerStatus `json:"listeners"`
}

// listenerStatus is one configured listener in GET /status. Positions are
// null when unknown here (a listener another bridge runs).
type listenerStatus struct {
	Name       string          `json:"name"`
	EventType  string          `json:"event_type"`
	Identifier json.RawMessage `json:"identifier"`
	State      string          `json:"state"`
	// Holder is the instance id of the bridge holding the listener's
	// lease: this one while it runs here, another for a standby listener,
	// "" when none does.
	Holder               string     `json:"holder"`
	Checkpoint           *uint64    `json:"checkpoint"`
	LastForwarded        *uint64    `json:"last_forwarded"`
	LastNotificationTime *time.Time `json:"last_notification_time"`
	InFlight             int        `json:"in_flight"`
	Error                string     `json:"error"`
}

// status is GET /status: every configured listener, in configuration
// order.
func (w *wiring) status() bridgeStatus {
	st := bridgeStatus{Instance: w.cfg.Bridge.InstanceID, Version: versionString(), Listeners: make([]listenerStatus, 0, len(w.units))}
	for _, u := range w.units {
		st.Listeners = append(st.Listeners, u.status(w.cfg.Bridge.InstanceID))
	}
	return st
}

// status is the unit's entry of GET /status.
func (u *unit) status(self string) listenerStatus {
	v := u.view()
	ls := listenerStatus{Name: u.spec.Name, EventType: u.spec.EventType, Identifier: u.spec.Identifier, State: string(v.state), Holder: v.holder}
	if v.active || v.parked {
		ls.Holder = self
	}
	if v.err != nil {
		ls.Error = v.err.Error()
	}
	if v.state == bridge.ListenerStandby {
		return ls
	}
	if v.pipe != nil {
		ps := v.pipe.Status()
		if ps.CheckpointFound {
			ls.Checkpoint = &ps.Checkpoint.Sequence
		}
		ls.InFlight = ps.InFlight
	}
	if v.sup != nil {
		if ss := v.sup.Status(); ss.HaveForwarded {
			ls.LastForwarded = &ss.LastForwarded
		}
	}
	if t := u.lastNotification(); !t.IsZero() {
		ls.LastNotificationTime = &t
	}
	return ls
}

// readiness is GET /readyz over the listeners this bridge runs (starting
// or running here; a standby bridge holding none is ready). With one
// listener the report is the single bridge's; with several, each failing
// condition names the listeners it fails for.
func (w *wiring) readiness() readyReport {
	rep := readyReport{Ready: true}
	single := len(w.units) == 1
	for _, u := range w.units {
		if s := u.view().state; s != bridge.ListenerStarting && s != bridge.ListenerRunning {
			continue
		}
		r := evaluate(u.ready.conditions(w.cfg.Bridge.ReadyStall))
		if r.Ready {
			continue
		}
		rep.Ready = false
		if rep.Failing == nil {
			rep.Failing, rep.Listeners = map[string]string{}, map[string]map[string]string{}
		}
		rep.Listeners[u.spec.Name] = r.Failing
		for _, cond := range slices.Sorted(maps.Keys(r.Failing)) {
			msg := r.Failing[cond]
			if !single {
				msg = u.spec.Name + ": " + msg
			}
			if prev := rep.Failing[cond]; prev != "" {
				msg = strings.Join([]string{prev, msg}, "; ")
			}
			rep.Failing[cond] = msg
		}
	}
	return rep
}
