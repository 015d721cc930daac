package benchplot

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

// svgTexts checks that b is well-formed XML with an <svg> root and returns
// the text of its <text> elements.
func svgTexts(t *testing.T, b []byte) string {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	var texts []string
	root, inText := "", false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed SVG: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
			inText = el.Name.Local == "text"
		case xml.CharData:
			if inText {
				texts = append(texts, string(el))
			}
		case xml.EndElement:
			inText = false
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return strings.Join(texts, "|")
}

func TestRatioChart(t *testing.T) {
	var b bytes.Buffer
	bars := []Bar{{"JetStream", 0.93}, {"Kafka", 0.88}, {"discard", 1.02}}
	if err := RatioChart(&b, "Throughput, bridge vs baseline", bars); err != nil {
		t.Fatal(err)
	}
	texts := svgTexts(t, b.Bytes())
	for _, want := range []string{"Throughput, bridge vs baseline", "JetStream", "Kafka", "discard", "baseline = 1", "bridge / baseline throughput", "0.93", "0.88", "1.02"} {
		if !strings.Contains(texts, want) {
			t.Errorf("the chart does not show %q (texts: %s)", want, texts)
		}
	}
}

func TestTimeline(t *testing.T) {
	var series []Series
	for _, name := range []string{"mars-oper", "mars-rd"} {
		s := Series{Name: name}
		for i := 0; i <= 20; i++ {
			s.Points = append(s.Points, Point{T: time.Duration(i) * 500 * time.Millisecond, N: float64(i * 10)})
		}
		series = append(series, s)
	}
	var b bytes.Buffer
	marks := []Mark{{At: 3 * time.Second, Label: "kill -9 bridge-a"}, {At: 8 * time.Second, Label: "bridge-a rejoins"}}
	if err := Timeline(&b, "Fail-over", "notifications delivered", series, marks); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b.Bytes(), []byte("'Times New Roman'")) {
		t.Error("the timeline names no fallback for Liberation Serif")
	}
	texts := svgTexts(t, b.Bytes())
	for _, want := range []string{"Fail-over", "mars-oper", "mars-rd", "kill -9 bridge-a", "bridge-a rejoins", "seconds", "notifications delivered"} {
		if !strings.Contains(texts, want) {
			t.Errorf("the timeline does not show %q (texts: %s)", want, texts)
		}
	}
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name string
		draw func(io.Writer) error
		want string
	}{
		{"no bars", func(w io.Writer) error { return RatioChart(w, "t", nil) }, "without bars"},
		{"NaN ratio", func(w io.Writer) error { return RatioChart(w, "t", []Bar{{"Kafka", math.NaN()}}) }, `bar "Kafka"`},
		{"negative ratio", func(w io.Writer) error { return RatioChart(w, "t", []Bar{{"x", -1}}) }, `bar "x"`},
		{"no series", func(w io.Writer) error { return Timeline(w, "t", "n", nil, nil) }, "without series"},
		{"empty series", func(w io.Writer) error { return Timeline(w, "t", "n", []Series{{Name: "a"}}, nil) }, `series "a" has no points`},
		{"time going back", func(w io.Writer) error {
			return Timeline(w, "t", "n", []Series{{Name: "a", Points: []Point{{T: time.Second}, {T: 0}}}}, nil)
		}, `series "a": point 1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.draw(io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
