package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// metricNames are the metrics of interface.md section 5 (prefix
// aviso_bridge_).
var metricNames = []string{
	"notifications_received_total", "notifications_published_total", "notifications_rejected_total",
	"duplicates_dropped_total", "malformed_frames_total", "sequence_gaps_total", "server_errors_total",
	"reconnects_total", "connected", "in_flight", "checkpoint_sequence", "checkpoint_commits_total",
	"checkpoint_errors_total", "sink_errors_total", "publish_latency_seconds", "event_age_seconds",
	"last_ack_timestamp_seconds",
}

// scrape GETs /metrics and returns the value of each sample by its full
// name with labels ("aviso_bridge_connected", "x_total{action=\"skip\"}"),
// and the declared type of each family.
func scrape(t testing.TB, addr string) (samples map[string]float64, types map[string]string) {
	t.Helper()
	code, body, err := httpGet(context.Background(), addr, "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	samples, types = map[string]float64{}, map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, typ, ok := strings.Cut(rest, " "); ok {
				types[name] = typ
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	// Per-listener series carry a listener label; also give each its name
	// without it (summed over listeners), so that single-listener tests read
	// "aviso_bridge_connected" as before.
	for key, v := range maps.Clone(samples) {
		if bare, ok := withoutListener(key); ok {
			samples[bare] += v
		}
	}
	return samples, types
}

// withoutListener drops the listener="..." label from a sample key.
func withoutListener(key string) (string, bool) {
	open := strings.IndexByte(key, '{')
	if open < 0 || !strings.HasSuffix(key, "}") {
		return key, false
	}
	var kept []string
	found := false
	for _, l := range strings.Split(key[open+1:len(key)-1], ",") {
		if strings.HasPrefix(l, "listener=") {
			found = true
			continue
		}
		kept = append(kept, l)
	}
	if !found {
		return key, false
	}
	if len(kept) == 0 {
		return key[:open], true
	}
	return key[:open] + "{" + strings.Join(kept, ",") + "}", true
}

// TestMetricsEndpoint: /metrics exposes every metric of interface.md section
// 5 with the prefix aviso_bridge_ on a bridge that is streaming normally
// (nothing rejected, no reconnect yet), with values that match what was
// delivered.
func TestMetricsEndpoint(t *testing.T) {
	aviso := avisotest.NewServer(t)
	ns := natstest.NewServer(t)
	seqs := publish(aviso, 300)
	dir := t.TempDir()
	b := startBridge(t, "bridge", dir, jetStreamEnv(avisoEnv(aviso, dir), ns).With("CHECKPOINT_INTERVAL", "50ms"))
	b.WaitReady(startupWait)
	last := seqs[len(seqs)-1]
	var samples map[string]float64
	var types map[string]string
	if !eventually(startupWait, func() bool {
		samples, types = scrape(t, b.HTTPAddr)
		return samples["aviso_bridge_checkpoint_sequence"] == float64(last)
	}) {
		t.Fatalf("checkpoint_sequence %v, want %d", samples["aviso_bridge_checkpoint_sequence"], last)
	}
	wantType := map[string]string{"publish_latency_seconds": "histogram", "event_age_seconds": "histogram",
		"connected": "gauge", "in_flight": "gauge", "checkpoint_sequence": "gauge", "last_ack_timestamp_seconds": "gauge"}
	for _, n := range metricNames {
		full := "aviso_bridge_" + n
		typ, ok := types[full]
		if !ok {
			t.Errorf("/metrics lacks %s", full)
			continue
		}
		want := wantType[n]
		if want == "" {
			want = "counter"
		}
		if typ != want {
			t.Errorf("%s is a %s, want %s", full, typ, want)
		}
	}
	for name, want := range map[string]float64{
		"aviso_bridge_notifications_received_total":  float64(len(seqs)),
		"aviso_bridge_notifications_published_total": float64(len(seqs)),
		"aviso_bridge_connected":                     1,
		"aviso_bridge_in_flight":                     0,
		"aviso_bridge_publish_latency_seconds_count": float64(len(seqs)),
		"aviso_bridge_event_age_seconds_count":       float64(len(seqs)),
		"aviso_bridge_duplicates_dropped_total":      0,
		"aviso_bridge_malformed_frames_total":        0,
	} {
		if got, ok := samples[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	for _, a := range []string{"fail", "dlq", "skip"} {
		name := fmt.Sprintf("aviso_bridge_notifications_rejected_total{action=%q}", a)
		if v, ok := samples[name]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", name, v, ok)
		}
	}
	if samples["aviso_bridge_checkpoint_commits_total"] < 1 || samples["aviso_bridge_last_ack_timestamp_seconds"] <= 0 {
		t.Errorf("checkpoint_commits_total %v, last_ack_timestamp_seconds %v: want positive",
			samples["aviso_bridge_checkpoint_commits_total"], samples["aviso_bridge_last_ack_timestamp_seconds"])
	}
}

// TestReplayModeFinishes: AVISO_MODE=replay delivers the history from the
// start position up to the end of the stream, commits and exits 0; a second
// run resumes from the checkpoint and delivers only what is new.
func TestReplayModeFinishes(t *testing.T) {
	aviso := avisotest.NewServer(t, avisotest.WithReplayBatch(100, 0))
	ns := natstest.NewServer(t)
	dir := t.TempDir()
	e := jetStreamEnv(avisoEnv(aviso, dir), ns).With("AVISO_MODE", "replay")
	cp := filepath.Join(dir, "checkpoint.json")

	seqs := publish(aviso, 2500)
	b := startBridge(t, "replay-1", dir, e)
	if code := b.Wait(startupWait); code != 0 {
		t.Fatalf("first replay: exit code %d, want 0", code)
	}
	requireComplete(t, "JetStream after the first replay", readJetStream(t, ns), seqs, 0)
	if got, ok := checkpointSeq(t, cp); !ok || got != seqs[len(seqs)-1] {
		t.Errorf("checkpoint %d (found %v), want %d", got, ok, seqs[len(seqs)-1])
	}

	seqs = append(seqs, publish(aviso, 700)...)
	b = startBridge(t, "replay-2", dir, e)
	if code := b.Wait(startupWait); code != 0 {
		t.Fatalf("second replay: exit code %d, want 0", code)
	}
	requireComplete(t, "JetStream after the second replay", readJetStream(t, ns), seqs, 0)
	if got, ok := checkpointSeq(t, cp); !ok || got != seqs[len(seqs)-1] {
		t.Errorf("checkpoint %d (found %v), want %d", got, ok, seqs[len(seqs)-1])
	}
	reqs := aviso.Requests()
	if r := reqs[len(reqs)-1]; r.Path != "/api/v1/replay" || r.FromID != "2501" {
		t.Errorf("second replay asked %s from_id %q, want /api/v1/replay from_id \"2501\"", r.Path, r.FromID)
	}
}

// TestSigtermDrainsAndCommits: SIGTERM (and SIGINT) in the middle of a long replay (the
// in-flight window full) stops reading, waits for the in-flight
// acknowledgements, commits and exits 0; the checkpoint file then holds
// exactly the last notification the sink stored, and nothing before it is
// missing.
func TestSigtermDrainsAndCommits(t *testing.T) {
	for name, sig := range map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT} {
		t.Run(name, func(t *testing.T) {
			aviso := avisotest.NewServer(t)
			ns := natstest.NewServer(t)
			js := ns.JetStream(t)
			dir := t.TempDir()
			// A long checkpoint interval: only the drain's final commit can
			// make the file current.
			e := jetStreamEnv(avisoEnv(aviso, dir), ns).With("CHECKPOINT_INTERVAL", "1h")
			seqs := publish(aviso, 30000)
			b := startBridge(t, "bridge", dir, e)
			if !eventually(startupWait, func() bool { return jetStreamCount(t, js) >= 2000 }) {
				t.Fatalf("JetStream holds %d messages, want 2000", jetStreamCount(t, js))
			}
			b.Signal(sig)
			if code := b.Wait(startupWait); code != 0 {
				t.Fatalf("exit code %d after %s, want 0", code, name)
			}
			got := readJetStream(t, ns)
			if len(got) == 0 {
				t.Fatal("JetStream is empty")
			}
			cp, ok := checkpointSeq(t, filepath.Join(dir, "checkpoint.json"))
			if !ok || cp != got[len(got)-1] {
				t.Fatalf("checkpoint %d (found %v), want the last stored sequence %d", cp, ok, got[len(got)-1])
			}
			if len(got) == len(seqs) {
				t.Errorf("all %d notifications stored before %v took effect: the stop was not mid-stream", len(seqs), name)
			}
			requireComplete(t, "JetStream after "+name, got, seqRange(1, cp), 0)
			drain := b.WaitEvent(time.Second, "bridge.drain.started")
			t.Logf("drain: in_flight=%v; stored %d of %d published", drain["in_flight"], len(got), len(seqs))
		})
	}
}
