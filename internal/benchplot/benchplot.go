// Package benchplot draws the bench command's figures as SVG charts with
// gonum/plot: the throughput ratio of the bridge to its baseline by sink, and
// a fail-over timeline (notifications per listener over time across events
// such as a kill -9 and a rejoin). It only draws: measuring is e2ebench's.
package benchplot

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Size of the figures: a timeline is wider, its legend stands to the
// right of the plot.
const (
	width         = 7 * vg.Inch
	timelineWidth = 9 * vg.Inch
	height        = 4 * vg.Inch
)

// Bar is one bar of a ratio chart.
type Bar struct {
	// Label names the bar on the X axis (a sink: "JetStream", "Kafka").
	Label string
	// Ratio is the bridge's throughput divided by its baseline's.
	Ratio float64
}

// RatioChart writes an SVG bar chart of bars to w, with a dashed line at 1
// (as fast as the baseline).
func RatioChart(w io.Writer, title string, bars []Bar) error {
	if len(bars) == 0 {
		return errors.New("benchplot: ratio chart without bars")
	}
	values := make(plotter.Values, len(bars))
	labels := make([]string, len(bars))
	maxY := 1.0
	for i, b := range bars {
		if math.IsNaN(b.Ratio) || math.IsInf(b.Ratio, 0) || b.Ratio < 0 {
			return fmt.Errorf("benchplot: bar %q: ratio %v is not a non-negative number", b.Label, b.Ratio)
		}
		values[i], labels[i] = b.Ratio, b.Label
		maxY = math.Max(maxY, b.Ratio)
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "bridge / baseline throughput"
	p.Y.Min, p.Y.Max = 0, maxY*1.15
	chart, err := plotter.NewBarChart(values, vg.Points(40))
	if err != nil {
		return fmt.Errorf("benchplot: %w", err)
	}
	chart.Color = plotutil.Color(0)
	chart.LineStyle.Width = 0
	p.Add(chart)
	left, right := -0.6, float64(len(bars))-0.4
	ref, err := plotter.NewLine(plotter.XYs{{X: left, Y: 1}, {X: right, Y: 1}})
	if err != nil {
		return fmt.Errorf("benchplot: %w", err)
	}
	values2 := make(plotter.XYs, len(bars))
	texts := make([]string, len(bars))
	for i, b := range bars {
		values2[i] = plotter.XY{X: float64(i), Y: b.Ratio}
		texts[i] = fmt.Sprintf("%.2f", b.Ratio)
	}
	numbers, err := plotter.NewLabels(plotter.XYLabels{XYs: values2, Labels: texts})
	if err != nil {
		return fmt.Errorf("benchplot: %w", err)
	}
	for i := range numbers.TextStyle {
		numbers.TextStyle[i].XAlign = draw.XCenter
		numbers.TextStyle[i].YAlign = draw.YBottom
	}
	p.Add(numbers)
	ref.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	ref.Color = color.Gray{Y: 96}
	p.Add(ref)
	p.Legend.Add("baseline = 1", ref)
	p.Legend.Top = true
	p.NominalX(labels...)
	p.X.Min, p.X.Max = left, right
	return write(w, p)
}

// Point is one sample of a series: N at T from the start.
type Point struct {
	T time.Duration
	N float64
}

// Series is one line of a timeline, its points in time order.
type Series struct {
	Name   string
	Points []Point
}

// Mark is an event drawn as a vertical line (a kill -9, a rejoin).
type Mark struct {
	At    time.Duration
	Label string
}

// Timeline writes an SVG line chart to w: one line per series (seconds on
// the X axis, yLabel on the Y axis) and a labelled vertical line per mark.
func Timeline(w io.Writer, title, yLabel string, series []Series, marks []Mark) error {
	if len(series) == 0 {
		return errors.New("benchplot: timeline without series")
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = yLabel
	maxY, maxT := 0.0, 0.0
	for i, s := range series {
		xys := make(plotter.XYs, len(s.Points))
		for j, pt := range s.Points {
			if j > 0 && pt.T < s.Points[j-1].T {
				return fmt.Errorf("benchplot: series %q: point %d at %v is before the one at %v", s.Name, j, pt.T, s.Points[j-1].T)
			}
			xys[j] = plotter.XY{X: pt.T.Seconds(), Y: pt.N}
			maxY, maxT = math.Max(maxY, pt.N), math.Max(maxT, pt.T.Seconds())
		}
		if len(xys) == 0 {
			return fmt.Errorf("benchplot: series %q has no points", s.Name)
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("benchplot: series %q: %w", s.Name, err)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		line.Dashes = plotutil.Dashes(i / len(plotutil.DefaultColors))
		p.Add(line)
		p.Legend.Add(s.Name, line)
	}
	if maxY == 0 {
		maxY = 1
	}
	p.Y.Min, p.Y.Max = 0, maxY*1.1
	for _, m := range marks {
		maxT = math.Max(maxT, m.At.Seconds())
	}
	p.X.Min, p.X.Max = 0, maxT
	if err := addMarks(p, marks, maxT, maxY*1.1); err != nil {
		return err
	}
	return writeLegendRight(w, p)
}

// writeLegendRight writes p with its legend to the right of the plot area,
// where it covers neither the lines nor the marks' labels.
func writeLegendRight(w io.Writer, p *plot.Plot) error {
	legend := p.Legend
	p.Legend = plot.NewLegend() // the plot draws no legend of its own
	legend.TextStyle.Font.Size = vg.Points(10)
	c := newCanvas(timelineWidth)
	dc := draw.New(c)
	r := legend.Rectangle(dc)
	lw := r.Max.X - r.Min.X + vg.Points(12)
	p.Draw(draw.Crop(dc, 0, -lw, 0, 0))
	legend.Top, legend.Left = true, true
	legend.Draw(draw.Crop(dc, timelineWidth-lw+vg.Points(6), 0, 0, -vg.Points(30)))
	return writeSVG(w, c)
}

func addMarks(p *plot.Plot, marks []Mark, right, top float64) error {
	for i, m := range marks {
		x := m.At.Seconds()
		line, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: top}})
		if err != nil {
			return fmt.Errorf("benchplot: mark %q: %w", m.Label, err)
		}
		line.Color = color.RGBA{R: 200, A: 255}
		line.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		labels, err := plotter.NewLabels(plotter.XYLabels{
			// Alternate heights, so that close marks' labels do not overlap.
			XYs:    []plotter.XY{{X: x, Y: top * (0.97 - 0.07*float64(i%2))}},
			Labels: []string{" " + m.Label},
		})
		if err != nil {
			return fmt.Errorf("benchplot: mark %q: %w", m.Label, err)
		}
		for j := range labels.TextStyle {
			labels.TextStyle[j].Color = line.Color
			labels.TextStyle[j].XAlign = draw.XLeft
			if x > 0.75*right { // near the right edge: the label to the left of its line
				labels.Labels[j] = m.Label + " "
				labels.TextStyle[j].XAlign = draw.XRight
			}
		}
		p.Add(line, labels)
	}
	return nil
}

func write(w io.Writer, p *plot.Plot) error {
	c := newCanvas(width)
	p.Draw(draw.New(c))
	return writeSVG(w, c)
}

// newCanvas is an SVG canvas of the figures' height.
func newCanvas(w vg.Length) *vgsvg.Canvas { return vgsvg.New(w, height) }

// writeSVG writes c's SVG to w. The text is laid out with the metrics of
// gonum/plot's Liberation Serif, which is metric-compatible with Times New
// Roman: naming that as the fallback keeps the legend and the labels in
// place where Liberation is not installed (embedding the fonts instead
// would make each figure ten times larger).
func writeSVG(w io.Writer, c *vgsvg.Canvas) error {
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return fmt.Errorf("benchplot: writing the SVG: %w", err)
	}
	out := bytes.ReplaceAll(b.Bytes(), []byte("font-family:Liberation Serif;"),
		[]byte("font-family:'Liberation Serif','Times New Roman',Times,serif;"))
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("benchplot: writing the SVG: %w", err)
	}
	return nil
}
