package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeListeners writes a listener file and returns its path.
func writeListeners(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "listeners.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const twoListeners = `listeners:
  - name: mars-od
    event: mars
    identifiers: {class: od}
    triggers:
      - type: echo
  - event: dissemination
    identifiers: {destination: FOO}
    from_id: 7
`

// AVISO_LISTENERS_FILE gives several listeners, each with its own key;
// the single form keeps the key it always had (the name does not change
// it), and moving that watch into a file keeps the key too.
func TestListenersFromFileAndSingleForm(t *testing.T) {
	file := writeListeners(t, twoListeners)
	c, err := load(t, map[string]string{"AVISO_URL": "http://127.0.0.1:8000/", "AVISO_LISTENERS_FILE": file, "AVISO_FROM_ID": "3"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.listenerNames(); strings.Join(got, ",") != "mars-od,dissemination-2" {
		t.Fatalf("names %v", got)
	}
	if c.listeners[0].Key == c.listeners[1].Key || !c.listeners[0].FromFile {
		t.Errorf("keys %q %q", c.listeners[0].Key, c.listeners[1].Key)
	}
	if f := c.listeners[0].FromID; f == nil || *f != 3 {
		t.Errorf("default start of mars-od: %v, want AVISO_FROM_ID 3", f)
	}
	if f := c.listeners[1].FromID; f == nil || *f != 7 {
		t.Errorf("start of dissemination-2: %v, want from_id 7", f)
	}
	if c.listenerWarnings.Triggers != 1 {
		t.Errorf("warnings %+v", c.listenerWarnings)
	}
	single, err := load(t, minimal(map[string]string{"AVISO_URL": "http://127.0.0.1:8000/", "AVISO_IDENTIFIER": `{"class":"od"}`, "AVISO_LISTENER_NAME": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	old, _ := checkpointKey(single)
	if single.listeners[0].Key != old || single.listeners[0].Name != "x" {
		t.Errorf("single form: key %q name %q, want the derived key %q", single.listeners[0].Key, single.listeners[0].Name, old)
	}
	if single.listeners[0].Key != c.listeners[0].Key {
		t.Errorf("mars {class: od} moved into a file changed its key: %q -> %q", single.listeners[0].Key, c.listeners[0].Key)
	}
	if !strings.Contains(c.listenerLines(), "# listener mars-od: event_type=mars") {
		t.Errorf("config lines: %s", c.listenerLines())
	}
}

// Every listener-file and fleet configuration error is exit 2 naming what
// to fix.
func TestListenerAndFleetConfigErrors(t *testing.T) {
	file := writeListeners(t, twoListeners)
	bad := writeListeners(t, "listeners:\n  - name: a\n    event: mars\n    colour: red\n")
	base := map[string]string{"AVISO_URL": "http://127.0.0.1:8000/"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"file and event type", with("AVISO_LISTENERS_FILE", file, "AVISO_EVENT_TYPE", "mars"), []string{"AVISO_LISTENERS_FILE and AVISO_EVENT_TYPE"}},
		{"file and name", with("AVISO_LISTENERS_FILE", file, "AVISO_LISTENER_NAME", "x"), []string{"AVISO_LISTENER_NAME"}},
		{"file and identifier", with("AVISO_LISTENERS_FILE", file, "AVISO_IDENTIFIER", `{"a":"b"}`), []string{"AVISO_IDENTIFIER"}},
		{"file and key", with("AVISO_LISTENERS_FILE", file, "CHECKPOINT_KEY", strings.Repeat("a", 64)), []string{"CHECKPOINT_KEY"}},
		{"unknown key", with("AVISO_LISTENERS_FILE", bad), []string{"AVISO_LISTENERS_FILE", bad, `listener "a"`, `key "colour"`}},
		{"missing file", with("AVISO_LISTENERS_FILE", filepath.Join(t.TempDir(), "none.yaml")), []string{"AVISO_LISTENERS_FILE", "none.yaml"}},
		{"neither", with(), []string{"AVISO_EVENT_TYPE is required"}},
		{"standby without store", with("AVISO_EVENT_TYPE", "mars", "BRIDGE_STANDBY", "true", "CHECKPOINT_STORE", "none"), []string{"BRIDGE_STANDBY", "CHECKPOINT_STORE=none"}},
		{"standby not bool", with("AVISO_EVENT_TYPE", "mars", "BRIDGE_STANDBY", "perhaps"), []string{"BRIDGE_STANDBY"}},
		{"instance id", with("AVISO_EVENT_TYPE", "mars", "BRIDGE_INSTANCE_ID", "a b"), []string{"BRIDGE_INSTANCE_ID"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.env)
			if err == nil {
				t.Fatal("loaded")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("not a ConfigError: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// BRIDGE_INSTANCE_ID defaults to the host name and a random suffix.
func TestDefaultInstanceID(t *testing.T) {
	a, err := load(t, minimal(nil))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := load(t, minimal(nil))
	host, _ := os.Hostname()
	if a.Bridge.InstanceID == b.Bridge.InstanceID || !strings.HasPrefix(a.Bridge.InstanceID, strings.Split(host, ".")[0]) {
		t.Errorf("instance ids %q %q (host %q)", a.Bridge.InstanceID, b.Bridge.InstanceID, host)
	}
	c, _ := load(t, minimal(map[string]string{"BRIDGE_INSTANCE_ID": "bridge-1"}))
	if c.Bridge.InstanceID != "bridge-1" {
		t.Errorf("explicit id %q", c.Bridge.InstanceID)
	}
}
