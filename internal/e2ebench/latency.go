package e2ebench

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// LatencyConfig configures Latency.
type LatencyConfig struct {
	// N is the number of notifications published (default 10000: 10 s at
	// the default rate).
	N int
	// Rate is the steady publish rate, per second (default 1000).
	Rate int
	// FrameSize is the SSE event size of a notification (default
	// DefaultFrameSize).
	FrameSize int
	// Window is BRIDGE_MAX_IN_FLIGHT and NATS_MAX_PENDING (default
	// DefaultWindow).
	Window int
	// Dir holds the JetStream store and the checkpoint file (default: a
	// temporary directory removed at the end).
	Dir string
	// Logger receives the bridge's logs (nil: discarded).
	Logger *slog.Logger
}

// LatencyResult is the distribution of the time from avisotest's Publish
// to the pipeline counting the sink's acknowledgement.
type LatencyResult struct {
	Count int
	// Rate is the publish rate achieved, per second.
	Rate          float64
	P50, P99, Max time.Duration
	Mean          time.Duration
}

// Latency publishes N notifications live into avisotest at a steady Rate
// while the bridge watches (AVISO_MODE=watch, following live) into
// JetStream, and measures for each notification the time from just before
// avisotest's Publish (aviso's send) to the pipeline counting its
// acknowledgement by the JetStream sink. The k-th acknowledgement is the
// k-th notification: the pipeline acknowledges in receipt order, and the
// run is checked to end with the checkpoint at sequence N.
func Latency(ctx context.Context, cfg LatencyConfig) (LatencyResult, error) {
	if cfg.N <= 0 {
		cfg.N = 10_000
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 1000
	}
	if cfg.FrameSize <= 0 {
		cfg.FrameSize = DefaultFrameSize
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	var res LatencyResult
	dir, cleanup, err := scratch(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer cleanup()
	ns, err := startNATS(filepath.Join(dir, "jetstream"))
	if err != nil {
		return res, err
	}
	defer stopNATS(ns)
	url := ns.ClientURL()
	if err := createStreams(ctx, url, map[string]string{bridgeStream: "aviso.>"}); err != nil {
		return res, err
	}
	const et = "mars"
	pad, err := payloadPad(ctx, et, aviso.EventLiveNotification, digits(cfg.N), cfg.FrameSize)
	if err != nil {
		return res, err
	}
	src, err := avisotest.New()
	if err != nil {
		return res, fmt.Errorf("aviso test server: %w", err)
	}
	defer src.Close()

	b, err := newInproc(ctx, inprocConfig{
		avisoURL: src.URL, eventType: et, mode: aviso.Watch,
		window: cfg.Window, dir: dir, openSink: jetStreamOpener(url, cfg.Window, cfg.Logger), logger: cfg.Logger,
		expect: cfg.N, ackTimes: true,
	})
	if err != nil {
		return res, err
	}
	defer b.close()

	sent := make([]int64, cfg.N)
	var first, last time.Time
	ready := func(ctx context.Context) error {
		// The watch request is recorded once its live position is fixed.
		_, err := src.WaitRequests(ctx, 1)
		return err
	}
	feed := func(ctx context.Context) error {
		payload := map[string]string{"note": pad}
		interval := time.Second / time.Duration(cfg.Rate)
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
		first = time.Now()
		for i := range cfg.N {
			// Pace by schedule: a late publish does not delay the later
			// ones, so the average rate holds.
			if wait := time.Until(first.Add(time.Duration(i) * interval)); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			}
			sent[i] = time.Now().UnixNano()
			if seq := src.Publish(et, benchIdentifier, payload); seq != uint64(i+1) {
				return fmt.Errorf("avisotest gave sequence %d to the %d-th notification", seq, i+1)
			}
		}
		last = time.Now()
		return nil
	}
	if err := b.live(ctx, ready, feed); err != nil {
		return res, err
	}
	lat := make([]time.Duration, cfg.N)
	var sum time.Duration
	for i := range lat {
		lat[i] = time.Duration(b.acks.times[i] - sent[i])
		sum += lat[i]
	}
	slices.Sort(lat)
	res.Count = cfg.N
	if span := last.Sub(first); span > 0 && cfg.N > 1 {
		res.Rate = float64(cfg.N-1) / span.Seconds()
	}
	res.P50 = percentile(lat, 0.50)
	res.P99 = percentile(lat, 0.99)
	res.Max = lat[len(lat)-1]
	res.Mean = sum / time.Duration(len(lat))
	return res, nil
}

// percentile returns the nearest-rank q-quantile of sorted.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
