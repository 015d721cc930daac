package metrics_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aviso-bridge/aviso-bridge/metrics"
)

// Every metric interface.md section 5 names is registered with its prefix,
// and the labelled ones expose their label.
func TestNewRegistersTheContractMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.Reconnects("eof").Inc()
	m.NotificationsRejected("skip").Inc()
	m.PublishLatency.Observe(0.01)
	m.EventAge.Observe(1)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range families {
		labels := ""
		if ms := f.GetMetric(); len(ms) > 0 {
			for _, l := range ms[0].GetLabel() {
				labels += l.GetName()
			}
		}
		got[f.GetName()] = labels
	}
	for _, want := range strings.Fields(`notifications_received_total notifications_published_total
		notifications_rejected_total:action duplicates_dropped_total malformed_frames_total sequence_gaps_total
		server_errors_total reconnects_total:reason connected in_flight checkpoint_sequence checkpoint_commits_total
		checkpoint_errors_total sink_errors_total publish_latency_seconds event_age_seconds last_ack_timestamp_seconds
		unrenderable_total behind_checkpoint_total`) {
		name, label, _ := strings.Cut(want, ":")
		labels, ok := got["aviso_bridge_"+name]
		if !ok {
			t.Errorf("aviso_bridge_%s is not registered", name)
			continue
		}
		if labels != label {
			t.Errorf("aviso_bridge_%s has labels %q, want %q", name, labels, label)
		}
	}
}
