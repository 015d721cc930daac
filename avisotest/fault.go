package avisotest

import (
	"net/http"
	"time"
)

// A Fault changes how the server answers one watch or replay connection.
// Queue faults with Server.Fault (one per connection, in order) or
// Server.FaultEvery (every connection while the queue is empty). A queued
// fault is taken when a request arrives at /api/v1/watch or /api/v1/replay,
// before authentication and validation; a stream fault taken by a request
// that is then refused is used up.
//
// "After: n" means: once n notification frames have been written on the
// connection (replay and live together); n = 0 is right after the opening
// frame (and, on /watch, the first heartbeat).
type Fault interface{ isFault() }

// Status answers the request with Code instead of handling it, like a proxy
// in front of aviso. RetryAfter is sent verbatim as Retry-After when
// non-empty (seconds, an HTTP-date, or garbage). Body defaults to aviso's
// JSON error body for 400, 401 (plus WWW-Authenticate: Bearer), 403, 500
// and 503, and is empty for other codes; ContentType defaults to
// application/json when the body is JSON. Header adds headers. A Code of
// 200 with ContentType "text/html" imitates a captive portal.
type Status struct {
	Code        int
	RetryAfter  string
	Body        string
	ContentType string
	Header      http.Header
}

// CutMidFrame writes the first half of the notification frame that follows
// the first After notifications, then drops the TCP connection without
// ending the chunked body (the client sees an unexpected EOF). With Graceful
// the body is ended properly instead (the client sees EOF with a partial
// event, which it must discard).
type CutMidFrame struct {
	After    int
	Graceful bool
}

// CloseWith sends connection-closing with Reason (any text; Message defaults
// to aviso's message for the three known reasons) after After notifications,
// then ends the body.
type CloseWith struct {
	Reason  string
	Message string
	After   int
}

// Stall stops writing (no frames, no heartbeats) after After notifications
// for For (0: until the client goes away or the server closes), then goes on
// as if nothing happened. BeforeHeaders stalls before the response headers
// instead, BeforeOpening after the headers but before the opening frame; in
// both cases After is ignored.
type Stall struct {
	After         int
	For           time.Duration
	BeforeHeaders bool
	BeforeOpening bool
}

// ErrorFrame sends an aviso error frame after After notifications.
//
// By default it is {"error":"stream_processing_failed",...} (no sequence):
// during a replay it ends the replay there, as a failed replay batch does:
// under V071 then replay_completed, then live on /watch or end_of_stream on
// /replay; under V013 connection-closing end_of_stream at once (from the
// opening of a stream with a cursor until its replay ends). During the live
// part the stream simply continues. Message defaults to "Failed to fetch
// replay batch".
//
// With CreationFailed the next notification of this connection only is
// replaced by
// {"error":"CloudEvent creation failed",...,"sequence":N} for its sequence
// and the stream continues (replay included), as when aviso cannot build a
// CloudEvent. For a notification that fails on every delivery, as stored
// bad data does, use Server.PublishPoison.
type ErrorFrame struct {
	After          int
	Message        string
	CreationFailed bool
}

// Malformed writes "event: <Event>\ndata: <Data>\n\n" after After
// notifications (Event defaults to live-notification). Data is written
// verbatim, so it can also break the framing on purpose.
type Malformed struct {
	After int
	Event string
	Data  string
}

// SeamDuplicates re-sends the last N notifications of the replay as
// live-notification frames right after replay_completed (legal seam
// duplicates, which the real server produces when notifications are
// published during the replay).
type SeamDuplicates struct{ N int }

// TinyChunks writes the whole response body in chunks of Size bytes (at
// least 1), flushing each.
type TinyChunks struct{ Size int }

// Combine applies several faults to the same connection.
func Combine(faults ...Fault) Fault { return combined(faults) }

// Repeat returns n copies of f, for Server.Fault (f applies to the next n
// connections).
func Repeat(n int, f Fault) []Fault {
	out := make([]Fault, n)
	for i := range out {
		out[i] = f
	}
	return out
}

type combined []Fault

func (Status) isFault()         {}
func (CutMidFrame) isFault()    {}
func (CloseWith) isFault()      {}
func (Stall) isFault()          {}
func (ErrorFrame) isFault()     {}
func (Malformed) isFault()      {}
func (SeamDuplicates) isFault() {}
func (TinyChunks) isFault()     {}
func (combined) isFault()       {}

// connFaults is the set of faults of one connection.
type connFaults struct {
	status       *Status
	stallHeaders *Stall
	stallOpening *Stall
	seam         int
	tiny         int
	counted      []Fault // faults with After, in order
}

func newConnFaults(f Fault) *connFaults {
	c := &connFaults{}
	c.add(f)
	return c
}

func (c *connFaults) add(f Fault) {
	switch f := f.(type) {
	case nil:
	case combined:
		for _, g := range f {
			c.add(g)
		}
	case Status:
		c.status = &f
	case SeamDuplicates:
		c.seam = f.N
	case TinyChunks:
		c.tiny = max(f.Size, 1)
	case Stall:
		switch {
		case f.BeforeHeaders:
			c.stallHeaders = &f
		case f.BeforeOpening:
			c.stallOpening = &f
		default:
			c.counted = append(c.counted, f)
		}
	default:
		c.counted = append(c.counted, f)
	}
}

func after(f Fault) int {
	switch f := f.(type) {
	case CutMidFrame:
		return f.After
	case CloseWith:
		return f.After
	case Stall:
		return f.After
	case ErrorFrame:
		return f.After
	case Malformed:
		return f.After
	}
	return 0
}
