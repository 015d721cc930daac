package listeners_test

import (
	"path/filepath"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/listeners"
)

// TestExamples parses every example listener file in the repository.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "examples", "listeners", "*.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("example files: %v, %v", files, err)
	}
	want := map[string]struct {
		names    []string
		triggers listeners.Warnings
	}{
		"mars.yaml":          {[]string{"mars-oper", "mars-enfo-short", "mars-rd", "observations-4"}, listeners.Warnings{Triggers: 2, TriggerListeners: 1}},
		"dissemination.yaml": {[]string{"diss-enfo", "diss-oper"}, listeners.Warnings{Triggers: 1, TriggerListeners: 1}},
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			ls, warn, err := listeners.ParseFile(f, listeners.Start{})
			if err != nil {
				t.Fatalf("ParseFile: %v", err)
			}
			w, ok := want[filepath.Base(f)]
			if !ok {
				t.Fatalf("no expectation for %s: add one", f)
			}
			if len(ls) != len(w.names) || warn != w.triggers {
				t.Fatalf("got %d listeners, %+v; want %v, %+v", len(ls), warn, w.names, w.triggers)
			}
			for i, l := range ls {
				if l.Name != w.names[i] {
					t.Errorf("listener %d: name %q, want %q", i+1, l.Name, w.names[i])
				}
				if _, err := l.CheckpointKey("https://aviso.example.int/"); err != nil {
					t.Errorf("listener %s: key: %v", l.Name, err)
				}
			}
		})
	}
}

func TestExampleMarsValues(t *testing.T) {
	ls, _, err := listeners.ParseFile(filepath.Join("..", "examples", "listeners", "mars.yaml"), listeners.Start{})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		i     int
		ident string
	}{
		{0, `{"class":"od","domain":"g","expver":"0001","stream":"oper","time":{"in":["0000","1200"]}}`},
		{1, `{"class":"od","expver":"0001","step":{"lte":240},"stream":"enfo"}`},
		{3, `{"polygon":[[46,6],[46,10.5],[47.8,10.5],[47.8,6],[46,6]]}`},
	}
	for _, c := range checks {
		if got := string(ls[c.i].Identifier); got != c.ident {
			t.Errorf("%s identifier = %s, want %s", ls[c.i].Name, got, c.ident)
		}
	}
	if ls[1].FromID == nil || *ls[1].FromID != 1 || ls[2].FromDate != "2025-06-01T00:00:00Z" || !ls[0].DefaultStart {
		t.Errorf("start fields: %+v %+v %+v", ls[0].Start, ls[1].Start, ls[2].Start)
	}
}
