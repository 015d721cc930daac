package supervisor

import (
	"errors"
	"testing"
	"time"
)

// The reconnect policy from a table: a sequence of session outcomes and,
// for each, the delay (Backoff.Rand fixed at half of each window), the
// backoff attempt logged and whether the credentials are re-read. No clock:
// a session's length is a field of its outcome.
func TestPolicyNext(t *testing.T) {
	t.Parallel()
	// w(n) is the delay of backoff attempt n with the default schedule
	// (250 ms doubling to 30 s) and Rand at 0.5: half the window.
	w := func(n int) time.Duration { return Backoff{}.ceiling(n) / 2 }
	const long, short = time.Minute, time.Millisecond // ShortSession is 1 s
	routine := func(lasted time.Duration) outcome {
		return outcome{reason: reasonMaxDuration, retry: retryImmediate, confirmed: true, lasted: lasted}
	}
	forwarded := func(o outcome) outcome { o.progressed = true; return o }
	shutdown := outcome{reason: reasonShutdown, retry: retryShutdown, confirmed: true, lasted: long}
	http5xx := outcome{reason: reasonHTTP5xx, retry: retryBackoff}
	eof := outcome{reason: reasonEOF, retry: retryBackoff, confirmed: true, lasted: long}
	unknownClose := outcome{reason: reasonUnknownClose, retry: retryBackoff, lasted: long}
	throttled := func(after time.Duration) outcome {
		return outcome{reason: reasonThrottled, retry: retryAfterHeader, retryAfter: after}
	}
	throttledBare := outcome{reason: reasonThrottled, retry: retryBackoff}
	unauthorized := outcome{reason: reasonUnauthorized, retry: retryAuth}
	page := func(position uint64, progressed bool) outcome {
		return outcome{reason: reasonReplayLimit, retry: retryPage, confirmed: true, progressed: progressed,
			position: position, hasPosition: true}
	}
	type step struct {
		out     outcome
		delay   time.Duration
		attempt int
		refresh bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"routine closes reconnect at once", []step{
			{out: routine(long)}, {out: routine(long)}, {out: routine(long)},
		}},
		{"short sessions that forward reconnect at once", []step{
			{out: forwarded(routine(0))}, {out: forwarded(routine(0))}, {out: forwarded(routine(short))},
		}},
		{"short sessions without progress escalate to backoff", []step{
			{out: routine(0), delay: w(0), attempt: 0},
			{out: routine(short), delay: w(1), attempt: 1},
			{out: routine(0), delay: w(2), attempt: 2},
			{out: routine(0), delay: w(3), attempt: 3},
			{out: routine(0), delay: w(4), attempt: 4},
		}},
		{"a long session ends the short streak", []step{
			{out: routine(0), delay: w(0)},
			{out: routine(0), delay: w(1), attempt: 1},
			{out: routine(long)},
			{out: routine(0), delay: w(0)},
		}},
		{"a failed short session counts toward the short streak", []step{
			{out: http5xx, delay: w(0)},
			{out: routine(0), delay: w(1), attempt: 1},
		}},
		{"server_shutdown waits the fixed delay", []step{
			{out: shutdown, delay: 5 * time.Second},
			{out: shutdown, delay: 5 * time.Second},
		}},
		{"failures grow the backoff; a confirmed session resets it", []step{
			{out: http5xx, delay: w(0), attempt: 0},
			{out: http5xx, delay: w(1), attempt: 1},
			{out: http5xx, delay: w(2), attempt: 2},
			{out: eof, delay: w(0), attempt: 0},
			{out: http5xx, delay: w(1), attempt: 1},
			{out: http5xx, delay: w(2), attempt: 2},
		}},
		{"unknown closes do not confirm", []step{
			{out: unknownClose, delay: w(0)},
			{out: unknownClose, delay: w(1), attempt: 1},
		}},
		{"a failure that forwarded resets the backoff", []step{
			{out: http5xx, delay: w(0)},
			{out: http5xx, delay: w(1), attempt: 1},
			{out: forwarded(unknownClose), delay: w(0)},
		}},
		{"the backoff stops growing at its ceiling", []step{
			{out: http5xx, delay: w(0)}, {out: http5xx, delay: w(1), attempt: 1},
			{out: http5xx, delay: w(2), attempt: 2}, {out: http5xx, delay: w(3), attempt: 3},
			{out: http5xx, delay: w(4), attempt: 4}, {out: http5xx, delay: w(5), attempt: 5},
			{out: http5xx, delay: w(6), attempt: 6}, {out: http5xx, delay: 15 * time.Second, attempt: 7},
			{out: http5xx, delay: 15 * time.Second, attempt: 8},
		}},
		{"Retry-After is waited exactly and counts as a failure", []step{
			{out: throttled(time.Second), delay: time.Second, attempt: 0},
			{out: throttled(0), delay: 0, attempt: 1},
			{out: throttledBare, delay: w(2), attempt: 2},
			{out: throttled(300 * time.Second), delay: 300 * time.Second, attempt: 3},
		}},
		{"the first 401 of a cycle retries at once, later ones back off", []step{
			{out: unauthorized, refresh: true},
			{out: unauthorized, delay: w(0), refresh: true},
			{out: unauthorized, delay: w(1), attempt: 1, refresh: true},
			{out: forwarded(routine(long))},
			{out: unauthorized, refresh: true},
			{out: unauthorized, delay: w(0), refresh: true},
		}},
		{"a 401 after other failures backs off from where they left it", []step{
			{out: http5xx, delay: w(0)},
			{out: unauthorized, attempt: 1, refresh: true},
			{out: unauthorized, delay: w(1), attempt: 1, refresh: true},
		}},
		{"cap pages that move the cursor reconnect at once", []step{
			{out: page(10, true)}, {out: page(20, true)}, {out: page(30, true)},
		}},
		{"cap pages that end where the last did back off", []step{
			{out: page(10, true)},
			{out: page(10, false), delay: w(0), attempt: 0},
			{out: page(10, false), delay: w(1), attempt: 1},
			{out: page(11, true)},
			{out: page(11, false), delay: w(0), attempt: 0},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Backoff: Backoff{Rand: func() float64 { return 0.5 }}}
			cfg.setDefaults()
			p := newPolicy(&cfg)
			for i, st := range tc.steps {
				out := st.out
				got := p.next(&out)
				want := decision{delay: st.delay, attempt: st.attempt, refresh: st.refresh}
				if got != want {
					t.Fatalf("step %d (%s): next = %+v, want %+v", i, st.out.reason, got, want)
				}
			}
		})
	}
}

// A fatal outcome or a finished replay stops Run, whatever came before.
func TestPolicyStops(t *testing.T) {
	t.Parallel()
	fatal := errors.New("check AVISO_URL")
	tests := []struct {
		name string
		out  outcome
		want decision
	}{
		{"fatal", outcome{fatal: fatal, reason: reasonHTTP5xx, retry: retryBackoff}, decision{stop: true, err: fatal}},
		{"replay finished", outcome{done: true}, decision{stop: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{}
			cfg.setDefaults()
			p := newPolicy(&cfg)
			p.next(&outcome{reason: reasonHTTP5xx, retry: retryBackoff})
			if got := p.next(&tc.out); got != tc.want {
				t.Fatalf("next = %+v, want %+v", got, tc.want)
			}
		})
	}
}
