package supervisor

import "time"

// retry is how a session's end asks to wait before the next connection.
type retry int

const (
	retryImmediate   retry = iota // routine rotation: at once (short sessions back off)
	retryShutdown                 // server_shutdown: fixed delay
	retryBackoff                  // full-jitter exponential
	retryAfterHeader              // 429/503: the server's Retry-After
	retryAuth                     // 401: refresh credentials; the first of a cycle at once
	retryPage                     // replay cap page: at once while paging makes progress
)

// warns reports whether a reconnect of this kind is a failure worth a WARN
// (routine rotations and page boundaries are INFO).
func (r retry) warns() bool {
	return r == retryBackoff || r == retryAuth || r == retryAfterHeader
}

// decision is what the policy makes of one outcome.
type decision struct {
	// stop: Run returns err (nil: a replay finished).
	stop bool
	err  error
	// delay is the wait before the next connection; attempt the backoff
	// attempt it was drawn for (logged).
	delay   time.Duration
	attempt int
	// refresh: re-read the credentials right before the next request, so
	// that a secret rotated during the wait is used at once (after a 401).
	refresh bool
}

// policy is the reconnect decision: it turns the sequence of session
// outcomes into delays. It reads no clock and does no I/O (the backoff's
// jitter aside, which Backoff.Rand fixes), so a table of outcomes and
// expected delays tests it. The rules:
//
//   - A session that confirmed the server healthy or forwarded something
//     resets the backoff (attempt) and re-arms the immediate retry of a 401.
//   - Routine closes (max_duration_reached, end_of_stream) reconnect at
//     once, unless the session was short (under shortSession) and forwarded
//     nothing: consecutive short sessions then back off, growing, so that a
//     server that closes at once is not hammered.
//   - server_shutdown waits shutdownDelay.
//   - Failures back off with full jitter, one window larger per failure.
//   - 429/503 with Retry-After wait exactly that, and count as a failure.
//   - The first 401 of a failure cycle retries at once, later ones back
//     off; every 401 re-reads the credentials.
//   - A replay cap page reconnects at once while the cursor moves; pages
//     that end at the same position back off, growing.
type policy struct {
	backoff       Backoff
	shutdownDelay time.Duration
	shortSession  time.Duration

	attempt       int  // consecutive failures since the last confirmed opening
	shortSessions int  // consecutive sessions shorter than shortSession
	authRetried   bool // the immediate retry after a 401 was used in this failure cycle
	lastPage      uint64
	pageStreak    int // consecutive cap pages ending at lastPage
}

func newPolicy(cfg *Config) policy {
	return policy{backoff: cfg.Backoff, shutdownDelay: cfg.ShutdownDelay, shortSession: cfg.ShortSession}
}

// next decides what follows a session that ended with o.
func (p *policy) next(o *outcome) decision {
	switch {
	case o.fatal != nil:
		return decision{stop: true, err: o.fatal}
	case o.done:
		return decision{stop: true}
	}
	if o.confirmed || o.progressed {
		p.attempt, p.authRetried = 0, false
	}
	// A short session that forwarded something is not a hot loop: a
	// server rotating connections every few hundred notifications is
	// followed at once, not slowed to 30 s pauses.
	short := !o.progressed && o.lasted < p.shortSession
	if short {
		p.shortSessions++
	} else {
		p.shortSessions = 0
	}
	d := decision{attempt: p.attempt}
	switch o.retry {
	case retryImmediate:
		if short {
			d.attempt = p.shortSessions - 1
			d.delay = p.backoff.delay(d.attempt)
		}
	case retryPage:
		p.page(o, &d)
	case retryShutdown:
		d.delay = p.shutdownDelay
	case retryAfterHeader:
		d.delay = o.retryAfter
		p.attempt++
	case retryAuth:
		d.refresh = true
		if !p.authRetried {
			p.authRetried = true
		} else {
			p.fail(&d)
		}
	case retryBackoff:
		p.fail(&d)
	}
	return d
}

// fail draws the delay for one more failure.
func (p *policy) fail(d *decision) {
	d.delay = p.backoff.delay(p.attempt)
	p.attempt++
}

// page decides after a replay cap page: at once while the cursor moves.
func (p *policy) page(o *outcome, d *decision) {
	if o.hasPosition && o.position == p.lastPage {
		p.pageStreak++
		d.attempt = p.pageStreak - 1
		d.delay = p.backoff.delay(d.attempt)
	} else {
		p.pageStreak = 0
	}
	p.lastPage = o.position
}
