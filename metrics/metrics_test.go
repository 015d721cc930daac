package metrics_test

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/metrics"
)

// series is one exported time series.
type series struct {
	names  string   // label names, comma-separated, in name order
	values []string // label values, in name order
	value  float64  // counter or gauge value (0 for a histogram)
}

// gather returns the registry's series by metric name.
func gather(t *testing.T, reg *prometheus.Registry) map[string][]series {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]series{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var s series
			var names []string
			for _, l := range m.GetLabel() { // sorted by name
				names = append(names, l.GetName())
				s.values = append(s.values, l.GetValue())
			}
			s.names = strings.Join(names, ",")
			s.value = m.GetCounter().GetValue() + m.GetGauge().GetValue()
			got[f.GetName()] = append(got[f.GetName()], s)
		}
	}
	return got
}

// find returns the value of the series whose label values (in label name
// order) are values.
func find(ss []series, values ...string) (float64, bool) {
	for _, s := range ss {
		if slices.Equal(s.values, values) {
			return s.value, true
		}
	}
	return 0, false
}

// listenerOf returns the value of the label listener of s.
func listenerOf(s series) (string, bool) {
	i := slices.Index(strings.Split(s.names, ","), "listener")
	if i < 0 {
		return "", false
	}
	return s.values[i], true
}

// Every metric interface.md section 5 names is registered with its prefix;
// every per-listener one carries the label "listener" (beside its own), and
// listener_state has listener and state.
func TestNewSetRegistersTheContractMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := metrics.NewSet(reg)
	m := s.Listener("mars-od")
	m.Reconnects("eof").Inc()
	s.SetState("mars-od", bridge.ListenerRunning)
	got := gather(t, reg)
	for _, want := range strings.Fields(`notifications_received_total notifications_published_total
		notifications_rejected_total:action,listener duplicates_dropped_total malformed_frames_total sequence_gaps_total
		server_errors_total reconnects_total:listener,reason connected in_flight checkpoint_sequence checkpoint_commits_total
		checkpoint_errors_total sink_errors_total publish_latency_seconds event_age_seconds last_ack_timestamp_seconds
		unrenderable_total behind_checkpoint_total dead_lettered_total sink_retries_total replay_limit_reached_total
		listener_state:listener,state`) {
		name, label, ok := strings.Cut(want, ":")
		if !ok {
			label = "listener"
		}
		ss, ok := got["aviso_bridge_"+name]
		if !ok {
			t.Errorf("aviso_bridge_%s is not registered (or has no series for a listener)", name)
			continue
		}
		for _, s := range ss {
			if s.names != label {
				t.Errorf("aviso_bridge_%s has labels %q, want %q", name, s.names, label)
			}
			if v, _ := listenerOf(s); v != "mars-od" {
				t.Errorf("aviso_bridge_%s has listener=%q, want mars-od", name, v)
			}
		}
	}
}

// Two listeners record into their own series; Listener returns the same
// metrics for one name, also from concurrent callers.
func TestListenerSeriesAreSeparate(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := metrics.NewSet(reg)
	var wg sync.WaitGroup
	got := make([]*bridge.Metrics, 8)
	for i := range got {
		wg.Go(func() { got[i] = s.Listener("a") })
	}
	wg.Wait()
	for i, m := range got {
		if m != got[0] {
			t.Fatalf("Listener(a) call %d returned other metrics than call 0", i)
		}
	}
	a, b := got[0], s.Listener("b")
	a.NotificationsPublished.Add(3)
	b.NotificationsPublished.Inc()
	a.NotificationsRejected("dlq").Inc()
	b.InFlight.Set(7)
	b.PublishLatency.Observe(0.2)
	tests := []struct {
		metric string
		labels []string
		want   float64
	}{
		{"notifications_published_total", []string{"a"}, 3},
		{"notifications_published_total", []string{"b"}, 1},
		{"notifications_rejected_total", []string{"dlq", "a"}, 1},
		{"notifications_rejected_total", []string{"dlq", "b"}, 0},
		{"notifications_rejected_total", []string{"fail", "b"}, 0},
		{"in_flight", []string{"a"}, 0},
		{"in_flight", []string{"b"}, 7},
	}
	f := gather(t, reg)
	for _, tt := range tests {
		v, ok := find(f["aviso_bridge_"+tt.metric], tt.labels...)
		if !ok {
			t.Errorf("%s%v: no series", tt.metric, tt.labels)
			continue
		}
		if v != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, v, tt.want)
		}
	}
	if n := len(f["aviso_bridge_publish_latency_seconds"]); n != 2 {
		t.Errorf("publish_latency_seconds has %d series, want 2 (one per listener)", n)
	}
}

// SetState leaves exactly one state at 1 per listener.
func TestSetState(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := metrics.NewSet(reg)
	steps := []struct {
		listener string
		state    bridge.ListenerState
	}{
		{"a", bridge.ListenerStarting},
		{"b", bridge.ListenerStandby},
		{"a", bridge.ListenerRunning},
		{"a", bridge.ListenerFailed},
		{"b", bridge.ListenerRunning},
		{"b", bridge.ListenerFinished},
	}
	current := map[string]bridge.ListenerState{}
	for _, st := range steps {
		s.SetState(st.listener, st.state)
		current[st.listener] = st.state
		f := gather(t, reg)["aviso_bridge_listener_state"]
		for l, want := range current {
			for _, state := range bridge.ListenerStates() {
				wantV := 0.0
				if state == want {
					wantV = 1
				}
				v, ok := find(f, l, string(state))
				if !ok || v != wantV {
					t.Errorf("after SetState(%s, %s): listener_state{listener=%q,state=%q} = %v (present %v), want %v",
						st.listener, st.state, l, state, v, ok, wantV)
				}
			}
		}
	}
}

// Forget drops every per-listener series of one listener, keeps the others
// and the listener's state; Listener afterwards starts new series.
func TestForget(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := metrics.NewSet(reg)
	a, b := s.Listener("a"), s.Listener("b")
	a.CheckpointSequence.Set(42)
	a.Reconnects("eof").Inc()
	b.CheckpointSequence.Set(7)
	s.SetState("a", bridge.ListenerStandby)
	s.Forget("a")
	for name, ss := range gather(t, reg) {
		for _, s := range ss {
			if l, _ := listenerOf(s); l == "a" && name != "aviso_bridge_listener_state" {
				t.Errorf("%s%v still exported after Forget(a)", name, s.values)
			}
		}
	}
	f := gather(t, reg)
	if v, ok := find(f["aviso_bridge_checkpoint_sequence"], "b"); !ok || v != 7 {
		t.Errorf("checkpoint_sequence{b} = %v (present %v) after Forget(a), want 7", v, ok)
	}
	if v, ok := find(f["aviso_bridge_listener_state"], "a", "standby"); !ok || v != 1 {
		t.Errorf("listener_state{a,standby} = %v (present %v) after Forget(a), want 1", v, ok)
	}
	again := s.Listener("a")
	if again == a {
		t.Error("Listener(a) after Forget(a) returned the forgotten metrics")
	}
	if v, ok := find(gather(t, reg)["aviso_bridge_checkpoint_sequence"], "a"); !ok || v != 0 {
		t.Errorf("checkpoint_sequence{a} = %v (present %v) after Forget and Listener, want a new series at 0", v, ok)
	}
}

// New, the form cmd/aviso-bridge uses until it names its listeners, keeps
// the exposition without the label listener (and without listener_state),
// so that the binary's scrapes stay as they are.
func TestNewKeepsTheUnlabelledForm(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.NotificationsReceived.Inc()
	m.Reconnects("eof").Inc()
	got := gather(t, reg)
	if v, ok := find(got["aviso_bridge_notifications_received_total"]); !ok || v != 1 {
		t.Errorf("notifications_received_total (no labels) = %v (present %v), want 1", v, ok)
	}
	if v, ok := find(got["aviso_bridge_reconnects_total"], "eof"); !ok || v != 1 {
		t.Errorf("reconnects_total{reason=eof} = %v (present %v), want 1", v, ok)
	}
	if v, ok := find(got["aviso_bridge_notifications_rejected_total"], "skip"); !ok || v != 0 {
		t.Errorf("notifications_rejected_total{action=skip} = %v (present %v), want 0", v, ok)
	}
	if _, ok := got["aviso_bridge_listener_state"]; ok {
		t.Error("New registers listener_state")
	}
	for name, ss := range got {
		for _, s := range ss {
			if _, ok := listenerOf(s); ok {
				t.Errorf("%s has the label listener under New", name)
			}
		}
	}
}
