package deploytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chartcommon "helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/aviso-bridge/aviso-bridge/listeners"
)

var (
	chartDir    = filepath.Join(repo, "deploy", "helm", "aviso-bridge")
	examplesDir = filepath.Join(repo, "deploy", "helm", "examples")
)

// serviceMonitor and prometheusRule are the parts of the prometheus-operator
// resources the chart renders (there is no k8s.io/api type for them); decoded
// strictly like the others, so an unknown or misplaced field fails.
type serviceMonitor struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Metadata   metav1ObjectMeta   `json:"metadata"`
	Spec       serviceMonitorSpec `json:"spec"`
}

type metav1ObjectMeta struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

type serviceMonitorSpec struct {
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	Endpoints []struct {
		Port     string `json:"port"`
		Path     string `json:"path"`
		Interval string `json:"interval"`
	} `json:"endpoints"`
}

type prometheusRule struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Metadata   metav1ObjectMeta `json:"metadata"`
	Spec       ruleFile         `json:"spec"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// rendered is one release's manifests, decoded into their types.
type rendered struct {
	deployments []appsv1.Deployment
	services    []corev1.Service
	secrets     []corev1.Secret
	configMaps  []corev1.ConfigMap
	claims      []corev1.PersistentVolumeClaim
	budgets     []policyv1.PodDisruptionBudget
	accounts    []corev1.ServiceAccount
	monitors    []serviceMonitor
	rules       []prometheusRule
	notes       string
}

// decodeStrict decodes one YAML document into v, refusing unknown fields.
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// decodeManifest sorts every document of manifest into r by kind, decoding it
// strictly into its k8s.io/api type after checking its apiVersion.
func decodeManifest(manifest string) (rendered, error) {
	var r rendered
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(manifest, -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return r, err
		}
		var err error
		want := map[string]string{
			"Deployment": "apps/v1", "Service": "v1", "Secret": "v1", "ConfigMap": "v1",
			"PersistentVolumeClaim": "v1", "PodDisruptionBudget": "policy/v1", "ServiceAccount": "v1",
			"ServiceMonitor": "monitoring.coreos.com/v1", "PrometheusRule": "monitoring.coreos.com/v1",
		}[head.Kind]
		if want == "" {
			return r, fmt.Errorf("unexpected kind %q", head.Kind)
		}
		if head.APIVersion != want {
			return r, fmt.Errorf("%s has apiVersion %q, want %q", head.Kind, head.APIVersion, want)
		}
		switch head.Kind {
		case "Deployment":
			r.deployments = append(r.deployments, appsv1.Deployment{})
			err = decodeStrict([]byte(doc), &r.deployments[len(r.deployments)-1])
		case "Service":
			r.services = append(r.services, corev1.Service{})
			err = decodeStrict([]byte(doc), &r.services[len(r.services)-1])
		case "Secret":
			r.secrets = append(r.secrets, corev1.Secret{})
			err = decodeStrict([]byte(doc), &r.secrets[len(r.secrets)-1])
		case "ConfigMap":
			r.configMaps = append(r.configMaps, corev1.ConfigMap{})
			err = decodeStrict([]byte(doc), &r.configMaps[len(r.configMaps)-1])
		case "PersistentVolumeClaim":
			r.claims = append(r.claims, corev1.PersistentVolumeClaim{})
			err = decodeStrict([]byte(doc), &r.claims[len(r.claims)-1])
		case "PodDisruptionBudget":
			r.budgets = append(r.budgets, policyv1.PodDisruptionBudget{})
			err = decodeStrict([]byte(doc), &r.budgets[len(r.budgets)-1])
		case "ServiceAccount":
			r.accounts = append(r.accounts, corev1.ServiceAccount{})
			err = decodeStrict([]byte(doc), &r.accounts[len(r.accounts)-1])
		case "ServiceMonitor":
			r.monitors = append(r.monitors, serviceMonitor{})
			err = decodeStrict([]byte(doc), &r.monitors[len(r.monitors)-1])
		case "PrometheusRule":
			r.rules = append(r.rules, prometheusRule{})
			err = decodeStrict([]byte(doc), &r.rules[len(r.rules)-1])
		}
		if err != nil {
			return r, fmt.Errorf("%s: %w", head.Kind, err)
		}
	}
	return r, nil
}

// render runs `helm template` (an install in client-only dry-run mode, as
// the helm command does) with vals.
func render(t *testing.T, vals map[string]any) (rendered, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	inst := action.NewInstall(action.NewConfiguration())
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = "test"
	inst.Namespace = "bridges"
	inst.Replace = true
	rel, err := inst.RunWithContext(context.Background(), ch, vals)
	if err != nil {
		return rendered{}, err
	}
	r, ok := rel.(*releasev1.Release)
	if !ok {
		t.Fatalf("release is %T", rel)
	}
	out, err := decodeManifest(r.Manifest)
	if err != nil {
		t.Fatalf("%v\n%s", err, r.Manifest)
	}
	out.notes = r.Info.Notes
	return out, nil
}

// valueFiles are the chart's default values (nil) and every example file.
func valueFiles(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("examples %v: %v (want at least 3)", files, err)
	}
	out := map[string]map[string]any{"default": nil}
	for _, f := range files {
		vals, err := chartcommon.ReadValuesFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = vals.AsMap()
	}
	return out
}

// effectiveValues merges vals over the chart's values.yaml (as helm does, for
// what these tests read).
func effectiveValues(t *testing.T, vals map[string]any) map[string]any {
	t.Helper()
	def, err := chartcommon.ReadValuesFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return chartutil.MergeTables(copyValues(vals), def.AsMap())
}

func copyValues(v map[string]any) map[string]any {
	b, _ := json.Marshal(v)
	out := map[string]any{}
	_ = json.Unmarshal(b, &out)
	return out
}

// `helm lint` passes, strict (warnings fail), for the defaults and every
// example.
func TestHelmLint(t *testing.T) {
	for name, vals := range valueFiles(t) {
		t.Run(name, func(t *testing.T) {
			l := action.NewLint()
			l.Strict = true
			l.Namespace = "bridges"
			res := l.Run([]string{chartDir}, vals)
			for _, err := range res.Errors {
				t.Errorf("lint: %v", err)
			}
			for _, m := range res.Messages {
				t.Logf("lint: %s", m.Error())
			}
		})
	}
}

// `helm template` renders, for the defaults and every example, manifests that
// decode strictly into their types and have the properties of issue 15.
func TestHelmTemplate(t *testing.T) {
	for name, vals := range valueFiles(t) {
		t.Run(name, func(t *testing.T) {
			r, err := render(t, vals)
			if err != nil {
				t.Fatal(err)
			}
			checkRelease(t, r, effectiveValues(t, vals))
		})
	}
}

func checkRelease(t *testing.T, r rendered, vals map[string]any) {
	t.Helper()
	if len(r.deployments) != 1 || len(r.services) != 1 {
		t.Fatalf("%d deployments, %d services; want 1 and 1", len(r.deployments), len(r.services))
	}
	d := r.deployments[0]
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("env %s is set twice", e.Name)
		}
		env[e.Name] = e
	}
	checkProbesAndSecurity(t, pod, c)
	checkShutdown(t, pod, env)
	checkStore(t, r, d, env, vals)
	checkCredentials(t, r, pod, c, env, vals)
	checkListenerFile(t, r, pod, c, env)
	checkService(t, r, d)
	checkMonitoring(t, r, vals)
	if !strings.Contains(r.notes, "/readyz") {
		t.Errorf("NOTES.txt does not say how to reach /readyz:\n%s", r.notes)
	}
}

func checkProbesAndSecurity(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	for _, p := range []struct {
		probe *corev1.Probe
		path  string
	}{{c.LivenessProbe, "/healthz"}, {c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "http" {
			t.Errorf("probe on %s missing or wrong: %+v", p.path, p.probe)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("ports %+v, want http 8080", c.Ports)
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.FSGroup == nil || *psc.FSGroup != 65532 {
		t.Errorf("pod security context %+v, want non-root 65532 with fsGroup 65532 (/data writable)", psc)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("container security context %+v, want read-only root, no escalation, drop ALL", sc)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v, want cpu and memory requests and a memory limit", c.Resources)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the service account token is mounted; the bridge never calls the API")
	}
}

func checkShutdown(t *testing.T, pod corev1.PodSpec, env map[string]corev1.EnvVar) {
	t.Helper()
	drain, err := time.ParseDuration(env["BRIDGE_SHUTDOWN_TIMEOUT"].Value)
	if err != nil {
		t.Fatalf("BRIDGE_SHUTDOWN_TIMEOUT: %v", err)
	}
	if pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= drain+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v, want above BRIDGE_SHUTDOWN_TIMEOUT %v plus 5s", pod.TerminationGracePeriodSeconds, drain)
	}
	if e := env["BRIDGE_INSTANCE_ID"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("BRIDGE_INSTANCE_ID %+v, want the pod name", e)
	}
}

func checkStore(t *testing.T, r rendered, d appsv1.Deployment, env map[string]corev1.EnvVar, vals map[string]any) {
	t.Helper()
	store := env["CHECKPOINT_STORE"].Value
	want := vals["checkpoint"].(map[string]any)["store"]
	if store != want {
		t.Errorf("CHECKPOINT_STORE %q, want %v", store, want)
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	standby := env["BRIDGE_STANDBY"].Value == "true"
	data := volume(d.Spec.Template.Spec, "data")
	switch store {
	case "file":
		if replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("file store: %d replicas, strategy %s; want 1 and Recreate", replicas, d.Spec.Strategy.Type)
		}
		if data == nil || data.PersistentVolumeClaim == nil {
			t.Fatalf("file store: /data is %+v, want a PersistentVolumeClaim", data)
		}
		if env["CHECKPOINT_FILE"].Value != "/data/checkpoint.json" || !mounted(d.Spec.Template.Spec.Containers[0], "data", "/data") {
			t.Errorf("file store: CHECKPOINT_FILE %q or its mount on /data is wrong", env["CHECKPOINT_FILE"].Value)
		}
		if len(r.claims) != 1 || r.claims[0].Name != data.PersistentVolumeClaim.ClaimName {
			t.Errorf("file store: claims %d, want the one the pod mounts (%s)", len(r.claims), data.PersistentVolumeClaim.ClaimName)
		}
	case "nats-kv", "kafka":
		if len(r.claims) != 0 {
			t.Errorf("%s store: %d PersistentVolumeClaims, want none (the pod is stateless)", store, len(r.claims))
		}
	}
	if replicas > 1 {
		if !standby || (store != "nats-kv" && store != "kafka") {
			t.Errorf("%d replicas with store %s and BRIDGE_STANDBY %v", replicas, store, standby)
		}
		if len(r.budgets) != 1 {
			t.Fatalf("%d replicas and %d PodDisruptionBudgets, want 1", replicas, len(r.budgets))
		}
		if !reflect.DeepEqual(r.budgets[0].Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
			t.Errorf("PodDisruptionBudget selects %v, pods are %v", r.budgets[0].Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels)
		}
	} else if len(r.budgets) != 0 {
		t.Errorf("one replica and a PodDisruptionBudget (it would block every drain)")
	}
	if !standby && d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("without standby the strategy is %s, want Recreate (two holders of one key cannot overlap)", d.Spec.Strategy.Type)
	}
}

func volume(pod corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

func mounted(c corev1.Container, name, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == name && m.MountPath == path {
			return true
		}
	}
	return false
}

// Secrets reach the bridge only as files: no plain value names a secret, and
// every *_FILE under the credentials mount has its key in the mounted Secret.
func checkCredentials(t *testing.T, r rendered, pod corev1.PodSpec, c corev1.Container, env map[string]corev1.EnvVar, vals map[string]any) {
	t.Helper()
	for name, e := range env {
		if regexp.MustCompile(`(TOKEN|PASSWORD|NKEY_SEED)$`).MatchString(name) && e.Value != "" {
			t.Errorf("secret %s is a plain environment value; use credentials.files", name)
		}
	}
	creds := vals["credentials"].(map[string]any)
	files, _ := creds["files"].(map[string]any)
	if len(files) == 0 {
		return
	}
	v := volume(pod, "credentials")
	if v == nil || v.Secret == nil || !mounted(c, "credentials", "/etc/aviso-bridge/secrets") {
		t.Fatalf("credentials.files set, but no Secret volume mounted on /etc/aviso-bridge/secrets: %+v", v)
	}
	var secret *corev1.Secret
	for i := range r.secrets {
		if r.secrets[i].Name == v.Secret.SecretName {
			secret = &r.secrets[i]
		}
	}
	if existing, _ := creds["existingSecret"].(string); existing != "" {
		if v.Secret.SecretName != existing || secret != nil {
			t.Errorf("existingSecret %s: the pod mounts %s, the chart renders %v", existing, v.Secret.SecretName, secret != nil)
		}
	} else if secret == nil {
		t.Fatalf("the pod mounts Secret %s, which the chart does not render", v.Secret.SecretName)
	}
	for variable, key := range files {
		if got := env[variable].Value; got != "/etc/aviso-bridge/secrets/"+key.(string) {
			t.Errorf("%s = %q, want the mounted file of key %v", variable, got, key)
		}
		if secret != nil {
			if _, ok := secret.Data[key.(string)]; !ok {
				t.Errorf("Secret %s has no key %v for %s", secret.Name, key, variable)
			}
		}
	}
}

// A listener file reaches the bridge through a ConfigMap that the bridge's
// own parser accepts.
func checkListenerFile(t *testing.T, r rendered, pod corev1.PodSpec, c corev1.Container, env map[string]corev1.EnvVar) {
	t.Helper()
	path := env["AVISO_LISTENERS_FILE"].Value
	if path == "" {
		if len(r.configMaps) != 0 {
			t.Errorf("a listener ConfigMap without AVISO_LISTENERS_FILE")
		}
		return
	}
	if _, ok := env["AVISO_EVENT_TYPE"]; ok {
		t.Error("AVISO_LISTENERS_FILE with AVISO_EVENT_TYPE (a configuration error)")
	}
	v := volume(pod, "listeners")
	if v == nil || v.ConfigMap == nil || !mounted(c, "listeners", filepath.Dir(path)) {
		t.Fatalf("AVISO_LISTENERS_FILE %s is not on a mounted ConfigMap", path)
	}
	for _, cm := range r.configMaps {
		if cm.Name != v.ConfigMap.Name {
			continue
		}
		data, ok := cm.Data[filepath.Base(path)]
		if !ok {
			t.Fatalf("ConfigMap %s has no %s", cm.Name, filepath.Base(path))
		}
		ls, _, err := listeners.Parse(path, []byte(data), listeners.Start{})
		if err != nil || len(ls) == 0 {
			t.Errorf("the listener file does not parse: %d listeners, %v", len(ls), err)
		}
		return
	}
	t.Errorf("ConfigMap %s is not rendered", v.ConfigMap.Name)
}

func checkService(t *testing.T, r rendered, d appsv1.Deployment) {
	t.Helper()
	s := r.services[0]
	for k, v := range s.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("Service selects %s=%s, pods have %q", k, v, d.Spec.Template.Labels[k])
		}
	}
	if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Name != "http" || s.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("Service ports %+v, want http -> http", s.Spec.Ports)
	}
}

func checkMonitoring(t *testing.T, r rendered, vals map[string]any) {
	t.Helper()
	enabled := func(k string) bool { b, _ := vals[k].(map[string]any)["enabled"].(bool); return b }
	if want := enabled("serviceMonitor"); want != (len(r.monitors) == 1) {
		t.Errorf("serviceMonitor.enabled %v, %d ServiceMonitors", want, len(r.monitors))
	}
	for _, m := range r.monitors {
		if !reflect.DeepEqual(m.Spec.Selector.MatchLabels, r.services[0].Spec.Selector) {
			t.Errorf("ServiceMonitor selects %v, the Service is labelled %v", m.Spec.Selector.MatchLabels, r.services[0].Labels)
		}
		if len(m.Spec.Endpoints) != 1 || m.Spec.Endpoints[0].Port != "http" || m.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoints %+v", m.Spec.Endpoints)
		}
	}
	if want := enabled("prometheusRule"); want != (len(r.rules) == 1) {
		t.Errorf("prometheusRule.enabled %v, %d PrometheusRules", want, len(r.rules))
	}
	for _, pr := range r.rules {
		var file ruleFile
		raw, err := os.ReadFile(filepath.Join(repo, "deploy", "prometheus", "aviso-bridge-rules.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeStrict(raw, &file); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(pr.Spec, file) {
			t.Errorf("the PrometheusRule's groups differ from deploy/prometheus/aviso-bridge-rules.yaml")
		}
	}
}

// Values that cannot work are refused at render time, naming the value.
func TestHelmRefusesBadValues(t *testing.T) {
	tests := []struct {
		name string
		vals string
		want string
	}{
		{"two replicas on the file store", `replicaCount: 2`, "replicaCount 2 needs checkpoint.store nats-kv or kafka"},
		{"two replicas without standby", "replicaCount: 2\ncheckpoint: {store: nats-kv}", "needs standby: true"},
		{"standby without a store", "standby: true\ncheckpoint: {store: none}", "standby: true needs a checkpoint store"},
		{"a variable the chart sets", "env: {CHECKPOINT_STORE: kafka}", "env.CHECKPOINT_STORE is set by the chart"},
		{"event type in env", "env: {AVISO_EVENT_TYPE: mars}", "env.AVISO_EVENT_TYPE is set by the chart"},
		{"nothing to watch", "watch: {eventType: ''}", "nothing to watch"},
		{"a credential that is no file variable", "credentials: {files: {AVISO_TOKEN: t}, data: {t: x}}", "credentials.files.AVISO_TOKEN"},
		{"a credential key without data", "credentials: {files: {AVISO_TOKEN_FILE: t}}", `names key "t"`},
		{"an unknown store", "checkpoint: {store: redis}", `checkpoint.store "redis"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vals := map[string]any{}
			if err := yaml.Unmarshal([]byte(tc.vals), &vals); err != nil {
				t.Fatal(err)
			}
			_, err := render(t, vals)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("render: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// The chart's copy of the alert rules is the repository's rule file.
func TestHelmRulesCopy(t *testing.T) {
	a, err := os.ReadFile(filepath.Join(repo, "deploy", "prometheus", "aviso-bridge-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(chartDir, "files", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("deploy/helm/aviso-bridge/files/rules.yaml differs from deploy/prometheus/aviso-bridge-rules.yaml: cp the latter over the former")
	}
}
