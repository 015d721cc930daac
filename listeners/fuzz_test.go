package listeners_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/listeners"
)

// FuzzParse decodes outside input: it must never panic, every error must be
// an *Error, and every listener it accepts must be usable: an event, a unique
// name, JSON object identifiers with a canonical form, a unique watch, at most one start field.
func FuzzParse(f *testing.F) {
	examples, _ := filepath.Glob(filepath.Join("..", "examples", "listeners", "*.yaml"))
	for _, e := range examples {
		if data, err := os.ReadFile(e); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ls, _, err := listeners.Parse("f.yaml", data, listeners.Start{})
		if err != nil {
			var e *listeners.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not a *listeners.Error: %v", err, err)
			}
			if ls != nil {
				t.Fatalf("listeners with an error")
			}
			return
		}
		if len(ls) == 0 {
			t.Fatalf("no listeners and no error")
		}
		names := map[string]bool{}
		watches := map[string]bool{}
		for _, l := range ls {
			if l.EventType == "" || l.Name == "" || names[l.Name] {
				t.Fatalf("listener %+v: empty event or name, or name taken", l)
			}
			names[l.Name] = true
			canon, err := bridge.CanonicalJSON(l.Identifier)
			if err != nil || !json.Valid(l.Identifier) || l.Identifier[0] != '{' || !bytes.Equal(bytes.TrimSpace(l.Identifier), l.Identifier) {
				t.Fatalf("listener %s: identifier %q is not a compact JSON object (%v)", l.Name, l.Identifier, err)
			}
			w := l.EventType + "\x00" + string(canon)
			if watches[w] {
				t.Fatalf("listener %s: watch taken twice", l.Name)
			}
			watches[w] = true
			if l.FromID != nil && l.FromDate != "" {
				t.Fatalf("listener %s: both start fields", l.Name)
			}
			if _, err := l.CheckpointKey("https://aviso.example.int/"); err != nil {
				t.Fatalf("listener %s: key: %v", l.Name, err)
			}
		}
	})
}
