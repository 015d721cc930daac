package main

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/internal/benchplot"
	"github.com/aviso-bridge/aviso-bridge/internal/e2ebench"
)

// svgText parses path as XML with an <svg> root and returns its texts.
func svgText(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	var b strings.Builder
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: not well-formed: %v", path, err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
		case xml.CharData:
			b.Write(el)
			b.WriteByte('|')
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root %q, want svg", path, root)
	}
	return b.String()
}

// TestFiguresWrite: -svg writes each figure it has data for, named as the
// README shows them, with the sinks, listeners and marks of the run.
func TestFiguresWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "img")
	tl := &e2ebench.FleetTimelineResult{TTL: 2 * time.Second, Bucket: 250 * time.Millisecond, End: 1500 * time.Millisecond,
		Listeners: []e2ebench.TimelineListener{
			{Name: "tl-000", FirstOn: "bridge-a", Rate: 25, Counts: []int{6, 7, 0, 0, 30, 6, 1}},
			{Name: "tl-001", FirstOn: "bridge-b", Rate: 25, Counts: []int{6, 6, 6, 6, 6, 6, 2}},
		},
		Marks: []e2ebench.TimelineMark{{At: 500 * time.Millisecond, Label: "kill -9 bridge-a"}, {At: time.Second, Label: "bridge-b runs all"}},
	}
	f := figures{n: 1000, bars: []benchplot.Bar{{Label: "JetStream vs bare PublishAsync", Ratio: 0.9}, {Label: "Kafka vs bare Writer (window)", Ratio: 0.8}}, timeline: tl}
	written, err := f.write(dir, time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 || filepath.Base(written[0]) != throughputSVG || filepath.Base(written[1]) != timelineSVG {
		t.Fatalf("written %v, want %s and %s", written, throughputSVG, timelineSVG)
	}
	for path, wants := range map[string][]string{
		written[0]: {"JetStream vs bare PublishAsync", "Kafka vs bare Writer (window)", "1000 notifications, 2026-12-06"},
		written[1]: {"tl-000, 25/s (first on bridge-a)", "tl-001, 25/s (first on bridge-b)", "kill -9 bridge-a", "bridge-b runs all", "TTL 2s"},
	} {
		text := svgText(t, path)
		for _, w := range wants {
			if !strings.Contains(text, w) {
				t.Errorf("%s does not show %q", filepath.Base(path), w)
			}
		}
	}
	if _, err := (figures{n: 1}).write(dir, time.Now()); err == nil || !strings.Contains(err.Error(), "nothing to draw") {
		t.Errorf("-svg with nothing measured: %v, want a 'nothing to draw' error", err)
	}
}

// TestSVGWithoutFigures: -svg with measurements that draw nothing is
// refused before anything runs (exit 2, the figures and what they need).
func TestSVGWithoutFigures(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run([]string{"-only", "decode,latency", "-svg", t.TempDir()}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), throughputSVG) || !strings.Contains(stderr.String(), "timeline") || stdout.Len() != 0 {
		t.Errorf("stderr %q, stdout %q: want the refusal naming the figures and no table", stderr.String(), stdout.String())
	}
}
