package main

import (
	"context"
	"fmt"
	"time"

	"github.com/aviso-bridge/aviso-bridge/internal/e2ebench"
)

// fleetRows measures the fleet targets of issue 14 on the built binary; the
// baseline column holds the target and the ratio is measured / target
// (at most 1.00 meets it).
func fleetRows(ctx context.Context, bin string, quick bool, step func(string) func()) ([]row, error) {
	idle := e2ebench.FleetIdleConfig{Binary: bin}
	fo := e2ebench.FleetFailoverConfig{Binary: bin}
	if quick {
		idle.Measure, fo.Rounds = 5*time.Second, 1
	}
	idle = idle.WithDefaults()
	done := step(fmt.Sprintf("aviso-bridge binary, %d listeners at rest for %s", idle.Listeners, idle.Measure))
	r, err := e2ebench.FleetIdle(ctx, idle)
	if err != nil {
		return nil, fmt.Errorf("fleet idle: %w", err)
	}
	done()
	what := fmt.Sprintf("aviso-bridge binary, %d listeners in one process (SINK=stdout, file store, aviso heartbeat %s, no notification; ready after %.1f s)",
		r.Listeners, idle.Heartbeat, r.Ready.Seconds())
	rss, rssRatio := "unknown", ""
	if r.PeakRSS > 0 {
		mib := float64(r.PeakRSS) / (1 << 20)
		rss, rssRatio = fixed(mib, 1), ratio(mib/120)
	}
	cpu, cpuRatio := "unknown", ""
	if pct := r.CPUPercent(); pct >= 0 {
		cpu, cpuRatio = fixed(pct, 2), ratio(pct/3)
	}
	rows := []row{
		{what + ", peak RSS (VmHWM); baseline: the target", rss, "120", rssRatio, "MiB"},
		{fmt.Sprintf("Same run: CPU at rest over %.0f s after ready; baseline: the target", r.Measured.Seconds()), cpu, "3.00", cpuRatio, "% of one core"},
	}

	done = step("fleet failover (kill -9 and SIGTERM)")
	f, err := e2ebench.FleetFailover(ctx, fo)
	if err != nil {
		return nil, fmt.Errorf("fleet failover: %w", err)
	}
	done()
	kill, term := e2ebench.Worst(f.Kill), e2ebench.Worst(f.Term)
	killTarget := f.TTL + time.Second
	what = fmt.Sprintf("Fleet of two bridges (BRIDGE_STANDBY=true, NATS KV store, CHECKPOINT_LEASE_TTL=%s, %d listeners): stop of one to the other running all, per its /status, worst of %d",
		f.TTL, f.Listeners, len(f.Kill))
	rows = append(rows,
		row{what + ", after kill -9; baseline: the target TTL + 1 s", fixed(kill.Seconds(), 2), fixed(killTarget.Seconds(), 2), ratio(kill.Seconds() / killTarget.Seconds()), "s"},
		row{"Same fleet, after SIGTERM (graceful hand-over); baseline: the target 1 s", fixed(term.Seconds(), 2), "1.00", ratio(term.Seconds()), "s"})
	return rows, nil
}
