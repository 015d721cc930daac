package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aviso-bridge/aviso-bridge/internal/benchplot"
	"github.com/aviso-bridge/aviso-bridge/internal/e2ebench"
)

// The figures -svg writes (the README shows both).
const (
	throughputSVG = "throughput-ratio.svg"
	timelineSVG   = "failover-timeline.svg"
)

// figures holds what the measurements give the charts.
type figures struct {
	n        int // notifications per throughput measurement
	bars     []benchplot.Bar
	timeline *e2ebench.FleetTimelineResult
}

// write draws every figure there is data for into dir and returns the
// files written; none is an error (-svg without jetstream, kafka or
// timeline).
func (f figures) write(dir string, now time.Time) ([]string, error) {
	if len(f.bars) == 0 && f.timeline == nil {
		return nil, fmt.Errorf("nothing to draw: %s needs jetstream or kafka, %s needs timeline in -only", throughputSVG, timelineSVG)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var written []string
	day := now.UTC().Format("2006-01-02")
	if len(f.bars) > 0 {
		var b bytes.Buffer
		title := fmt.Sprintf("Bridge end to end vs a bare client of the same broker (%d notifications, %s)", f.n, day)
		if err := benchplot.RatioChart(&b, title, f.bars); err != nil {
			return written, err
		}
		path := filepath.Join(dir, throughputSVG)
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	if f.timeline != nil {
		var b bytes.Buffer
		if err := drawTimeline(&b, *f.timeline, day); err != nil {
			return written, err
		}
		path := filepath.Join(dir, timelineSVG)
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	return written, nil
}

// drawTimeline draws r: per listener, the notifications stored per second
// in each bucket, and the run's marks.
func drawTimeline(b *bytes.Buffer, r e2ebench.FleetTimelineResult, day string) error {
	series := make([]benchplot.Series, 0, len(r.Listeners))
	perSec := 1 / r.Bucket.Seconds()
	for _, l := range r.Listeners {
		s := benchplot.Series{Name: l.Label()}
		// Each point is a whole bucket, drawn at its middle; the buckets
		// after publishing ended are left out (a partial one would read as
		// a drop).
		for i, n := range l.Counts {
			if time.Duration(i+1)*r.Bucket > r.End {
				break
			}
			s.Points = append(s.Points, benchplot.Point{T: time.Duration(i)*r.Bucket + r.Bucket/2, N: float64(n) * perSec})
		}
		series = append(series, s)
	}
	marks := make([]benchplot.Mark, 0, len(r.Marks))
	for _, m := range r.Marks {
		marks = append(marks, benchplot.Mark{At: m.At, Label: m.Label})
	}
	title := fmt.Sprintf("Fail-over of two bridges, NATS KV lease TTL %s (%s)", r.TTL, day)
	return benchplot.Timeline(b, title, "stored in JetStream, per second", series, marks)
}

// timelineRows runs the fail-over timeline on the built binary; its rows
// are the longest silence of a listener the killed bridge ran (the target,
// TTL + 1 s, as baseline) and the notifications stored against those
// published.
func timelineRows(ctx context.Context, bin string, step func(string) func()) ([]row, e2ebench.FleetTimelineResult, error) {
	done := step("fleet timeline (kill -9 and rejoin, JetStream)")
	r, err := e2ebench.FleetTimeline(ctx, e2ebench.FleetTimelineConfig{Binary: bin})
	if err != nil {
		return nil, r, fmt.Errorf("fleet timeline: %w", err)
	}
	done()
	var gap time.Duration
	published, stored := 0, 0
	for _, l := range r.Listeners {
		if l.FirstOn == "bridge-a" {
			gap = max(gap, l.LongestGap)
		}
		published += l.Published
		stored += l.Stored
	}
	target := r.TTL + time.Second
	rates := make([]string, 0, len(r.Listeners))
	for _, l := range r.Listeners {
		rates = append(rates, fmt.Sprint(l.Rate))
	}
	what := fmt.Sprintf("Fleet timeline (two bridges, SINK=jetstream, NATS KV store, TTL %s, %d listeners at %s/s): longest time without a stored notification of a listener bridge-a ran, across its kill -9; baseline: the target TTL + 1 s",
		r.TTL, len(r.Listeners), strings.Join(rates, ", "))
	return []row{
		{what, fixed(gap.Seconds(), 2), fixed(target.Seconds(), 2), ratio(gap.Seconds() / target.Seconds()), "s"},
		{"Same run: notifications stored in the stream (Nats-Msg-Id deduplicated) vs published, across the kill -9 and the rejoin",
			fmt.Sprint(stored), fmt.Sprint(published), ratio(float64(stored) / float64(max(published, 1))), "notifications"},
	}, r, nil
}
