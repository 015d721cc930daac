package deploytest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/internal/e2ebench"
)

var (
	dashboardFile = filepath.Join(repo, "deploy", "grafana", "aviso-bridge.json")
	rulesFile     = filepath.Join(repo, "deploy", "prometheus", "aviso-bridge-rules.yaml")
	rulesTestFile = filepath.Join(repo, "deploy", "prometheus", "aviso-bridge-rules.test.yaml")
)

// externalMetrics are the names the kit may use that the bridge does not
// export itself.
var externalMetrics = map[string]bool{"up": true}

type dashboard struct {
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashboardPanel `json:"panels"`
}

type dashboardPanel struct {
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// dashboardExprs are the dashboard's PromQL expressions: every target and the
// series selector of every label_values() variable query.
func dashboardExprs(t *testing.T, d dashboard) []string {
	t.Helper()
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, v.Definition)
			continue
		}
		out = append(out, m[1])
	}
	return out
}

type alertRules struct {
	Groups []struct {
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) alertRules {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var r alertRules
	if err := yaml.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`(?:^|[^a-zA-Z0-9_:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	promKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
		"group_right": true, "and": true, "or": true, "unless": true, "offset": true, "bool": true, "inf": true, "nan": true}
)

// metricNames returns the metric names an expression selects: what is left
// once strings, label matchers, ranges, grouping clauses, function and
// aggregation names (an identifier followed by "(") and keywords are taken
// out.
func metricNames(expr string) []string {
	e := promString.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRange.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var out []string
	for _, m := range promIdent.FindAllStringSubmatchIndex(e, -1) {
		name := e[m[2]:m[3]]
		rest := strings.TrimLeft(e[m[3]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promKeywords[strings.ToLower(name)] {
			continue
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`up{job=~".*aviso-bridge.*"} == 0`, []string{"up"}},
		{`sum by (listener, le) (rate(aviso_bridge_event_age_seconds_bucket{job=~"$job", listener=~"$listener"}[$__rate_interval]))`, []string{"aviso_bridge_event_age_seconds_bucket"}},
		{"aviso_bridge_in_flight > 0\n  and\nincrease(aviso_bridge_notifications_published_total[5m]) == 0", []string{"aviso_bridge_in_flight", "aviso_bridge_notifications_published_total"}},
		{`time() - max by (listener) (aviso_bridge_last_ack_timestamp_seconds offset 5m > 0)`, []string{"aviso_bridge_last_ack_timestamp_seconds"}},
		{`max by (listener) (x) unless max by (listener) (y{state=~"a|b"} == 1)`, []string{"x", "y"}},
		{`histogram_quantile(0.99, sum(rate(h_bucket[10m])) by (le)) > 9e2`, []string{"h_bucket"}},
	}
	for _, tc := range tests {
		if got := metricNames(tc.expr); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("metricNames(%q) = %v, want %v", tc.expr, got, tc.want)
		}
	}
}

// The dashboard has a datasource variable that every panel uses, a listener
// variable that every per-listener query filters on, and the panels of issue
// 15.
func TestDashboard(t *testing.T) {
	d := readDashboard(t)
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["listener"] != "query" {
		t.Fatalf("variables %v, want datasource (type datasource) and listener (type query)", vars)
	}
	used := map[string]bool{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range metricNames(tg.Expr) {
				used[n] = true
			}
			if strings.Contains(tg.Expr, "aviso_bridge_") && !strings.Contains(tg.Expr, `listener=~"$listener"`) {
				t.Errorf("panel %q: %s does not filter on $listener", p.Title, tg.Expr)
			}
		}
	}
	for _, n := range []string{
		"aviso_bridge_notifications_published_total",  // delivery rate
		"aviso_bridge_in_flight",                      // in flight
		"aviso_bridge_checkpoint_sequence",            // checkpoint lag (sequence)
		"aviso_bridge_last_ack_timestamp_seconds",     // checkpoint lag (seconds)
		"aviso_bridge_publish_latency_seconds_bucket", // publish latency p50/p99
		"aviso_bridge_event_age_seconds_bucket",       // event age
		"aviso_bridge_reconnects_total",               // reconnects by reason
		"aviso_bridge_malformed_frames_total",         // malformed
		"aviso_bridge_unrenderable_total",             // unrenderable
		"aviso_bridge_notifications_rejected_total",   // rejected
		"aviso_bridge_listener_state",                 // listener states
		"aviso_bridge_connected", "up",                // readiness
	} {
		if !used[n] {
			t.Errorf("no dashboard panel shows %s", n)
		}
	}
}

// Every alert of issue 15 exists and has a promtool unit test that expects it
// to fire.
func TestAlertRulesAndTheirTests(t *testing.T) {
	r := readRules(t)
	alerts := map[string]bool{}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			alerts[rule.Alert] = true
		}
	}
	for _, a := range []string{
		"AvisoBridgeDown", "AvisoBridgeNotConnected", "AvisoBridgeAcknowledgementsStalled", "AvisoBridgeCheckpointErrors",
		"AvisoBridgeEventAgeHigh", "AvisoBridgeUnrenderableNotifications", "AvisoBridgeRejectedNotifications",
		"AvisoBridgeListenerFailed", "AvisoBridgeListenerUnheld",
	} {
		if !alerts[a] {
			t.Errorf("alert %s is missing", a)
		}
	}
	raw, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(raw, &tests); err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for a := range alerts {
		if !fires[a] || !silent[a] {
			t.Errorf("alert %s: unit tests that fire it %v, that keep it silent %v; want both", a, fires[a], silent[a])
		}
	}
}

// Every dashboard expression is valid PromQL: promtool (Debian's prometheus
// package, installed by .ci/run) checks them as recording rules, with the
// Grafana variables replaced.
func TestDashboardExpressionsParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed (.ci/run installs Debian's prometheus package)")
		}
		t.Skip("promtool is not installed (apt-get install prometheus)")
	}
	grafana := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$job", ".*", "$listener", ".*")
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, e := range dashboardExprs(t, readDashboard(t)) {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:expr_%d", i), Expr: grafana.Replace(e)})
	}
	doc, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(f, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules on the dashboard's expressions: %v\n%s\n%s", err, out, doc)
	}
}

// The dashboard and the alert rules name only metrics a running bridge
// exports: the aviso-bridge binary is built and run against the aviso test
// server with the stdout sink, and its /metrics is scraped.
func TestObservabilityNamesExportedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	exported := scrapeBridge(t)
	names := map[string][]string{} // metric -> where
	for _, e := range dashboardExprs(t, readDashboard(t)) {
		for _, n := range metricNames(e) {
			names[n] = append(names[n], "dashboard")
		}
	}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			for _, n := range metricNames(r.Expr) {
				names[n] = append(names[n], "alert "+r.Alert)
			}
		}
	}
	if len(names) < 10 {
		t.Fatalf("found only %d metric names in the dashboard and rules: the extraction is broken", len(names))
	}
	for n, where := range names {
		if !exported[n] && !externalMetrics[n] {
			t.Errorf("%s (%s) is not exported by the bridge", n, strings.Join(where, ", "))
		}
	}
}

// scrapeBridge runs the bridge and returns the names its /metrics exposes (a
// histogram as NAME_bucket, NAME_sum and NAME_count), once it has forwarded
// a notification.
func scrapeBridge(t *testing.T) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	bin, err := e2ebench.BuildBinary(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src := avisotest.NewServer(t)
	src.Publish("mars", map[string]string{"class": "od"}, map[string]string{"note": "ready"})
	addr := freeAddr(t)
	cmd := exec.CommandContext(ctx, bin, "run")
	cmd.Env = []string{
		"AVISO_URL=" + src.URL, "AVISO_EVENT_TYPE=mars", "AVISO_FROM_ID=1", "SINK=stdout",
		"CHECKPOINT_STORE=none", "BRIDGE_HTTP_ADDR=" + addr, "LOG_LEVEL=warn",
	}
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			t.Logf("bridge stopped: %v", err)
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Logf("bridge killed after 30s: %v", <-done)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		names, published, err := scrape(ctx, "http://"+addr+"/metrics")
		if err == nil && published >= 1 {
			return names
		}
		select {
		case err := <-done:
			log, _ := os.ReadFile(stderr.Name())
			t.Fatalf("the bridge exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(stderr.Name())
			t.Fatalf("no notification published within a minute (last scrape: %v)\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond) // polling the endpoint, not synchronising
	}
}

// scrape reads the exposition's TYPE lines and the published counter.
func scrape(ctx context.Context, url string) (map[string]bool, float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	names := map[string]bool{}
	var published float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
			if f[3] == "histogram" || f[3] == "summary" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[f[2]+s] = true
				}
			}
			continue
		}
		if strings.HasPrefix(line, "aviso_bridge_notifications_published_total") {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				published += v
			}
		}
	}
	return names, published, sc.Err()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
