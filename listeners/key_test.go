package listeners_test

import (
	"encoding/json"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/listeners"
)

const avisoURL = "https://aviso.example.int/"

// TestFileKeepsTheSingleListenerKey: moving a watch from AVISO_EVENT_TYPE and
// AVISO_IDENTIFIER into a listener file keeps its checkpoint key when the
// identifiers are the same JSON value, however YAML spells them; a different
// JSON type is a different watch.
func TestFileKeepsTheSingleListenerKey(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string // the identifiers: mapping in the file ("" for none)
		event string // the file's event; the env form watches "mars"
		env   string // AVISO_IDENTIFIER
		same  bool
	}{
		{name: "plain string", yaml: "{class: od}", env: `{"class":"od"}`, same: true},
		{name: "quoted string", yaml: `{class: "od"}`, env: `{"class":"od"}`, same: true},
		{name: "block style, other key order", yaml: "\n      stream: enfo\n      class: od", env: `{ "class" : "od", "stream" : "enfo" }`, same: true},
		{name: "no identifiers", yaml: "", env: `{}`, same: true},
		{name: "no identifiers, env unset", yaml: "", env: ``, same: true},
		{name: "number spellings", yaml: "{step: 6.0, a: 0x10, b: +3, c: 1e2}", env: `{"step":6,"a":16,"b":3,"c":100}`, same: true},
		{name: "leading zero is a string", yaml: "{expver: 0001}", env: `{"expver":"0001"}`, same: true},
		{name: "date is a string", yaml: "{date: 2024-01-15}", env: `{"date":"2024-01-15"}`, same: true},
		{name: "yes is a string", yaml: "{flag: yes}", env: `{"flag":"yes"}`, same: true},
		{name: "constraint", yaml: "{severity: {gte: 5}, region: {in: [north, south]}}", env: `{"region":{"in":["north","south"]},"severity":{"gte":5}}`, same: true},
		{name: "polygon", yaml: "{polygon: [[46, 8], [46, 9], [47, 9], [46, 8]]}", env: `{"polygon":[[46,8],[46,9],[47,9],[46,8]]}`, same: true},
		{name: "large integer", yaml: "{id: 12345678901234567890}", env: `{"id":12345678901234567890}`, same: true},
		{name: "unicode", yaml: `{site: "Zürich"}`, env: `{"site":"Z\u00fcrich"}`, same: true},
		{name: "number is not a string", yaml: "{expver: 1}", env: `{"expver":"1"}`, same: false},
		{name: "string is not a number", yaml: `{step: "6"}`, env: `{"step":6}`, same: false},
		{name: "null is not absent", yaml: "{class: ~}", env: `{}`, same: false},
		{name: "other value", yaml: "{class: rd}", env: `{"class":"od"}`, same: false},
		{name: "other event", yaml: "{class: od}", event: "Mars", env: `{"class":"od"}`, same: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			event := tt.event
			if event == "" {
				event = "mars"
			}
			src := "listeners:\n  - name: moved\n    event: " + event + "\n"
			if tt.yaml != "" {
				src += "    identifiers: " + tt.yaml + "\n"
			}
			ls, _, err := listeners.Parse("l.yaml", []byte(src), listeners.Start{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			fileKey, err := ls[0].CheckpointKey(avisoURL)
			if err != nil {
				t.Fatal(err)
			}
			single := listeners.Single("", "mars", json.RawMessage(tt.env), listeners.Start{})
			envKey, err := single.CheckpointKey(avisoURL)
			if err != nil {
				t.Fatal(err)
			}
			if (fileKey == envKey) != tt.same {
				t.Errorf("file key %s, env key %s: same = %v, want %v (file identifier %s)", fileKey, envKey, fileKey == envKey, tt.same, ls[0].Identifier)
			}
		})
	}
}

// TestSingleKeyUnchanged: the single-listener form derives exactly the key a
// deployment has today, from the identifier as given.
func TestSingleKeyUnchanged(t *testing.T) {
	ident := json.RawMessage(`{"stream": "enfo", "class":"od"}`)
	want, err := bridge.CheckpointKey(avisoURL, "mars", ident)
	if err != nil {
		t.Fatal(err)
	}
	l := listeners.Single("", "mars", ident, listeners.Start{FromID: u64(3)})
	got, err := l.CheckpointKey(avisoURL)
	if err != nil || got != want {
		t.Fatalf("Single key = %s, %v; want %s", got, err, want)
	}
	if l.Name != "mars" || !l.DefaultStart || l.FromID == nil || *l.FromID != 3 || l.Position != 0 {
		t.Errorf("Single = %+v", l)
	}
	if named := listeners.Single("od", "mars", nil, listeners.Start{}); named.Name != "od" || string(named.Identifier) != "{}" {
		t.Errorf("Single named = %+v", named)
	}
}
