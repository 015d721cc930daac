package avisotest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"sort"
	"time"
)

// stream serves one accepted watch or replay request.
type stream struct {
	s     *Server
	cfg   *config
	w     http.ResponseWriter
	rc    *http.ResponseController
	bw    *bufio.Writer
	ctx   context.Context
	ctl   chan string // CloseStreams / DropStreams
	timer *time.Timer

	mode, rid string
	req       *streamRequest
	liveStart int
	faults    *connFaults
	pending   []Fault // counted faults not yet fired, by After

	count      int // notification frames written
	cutNext    *CutMidFrame
	failNext   bool
	inReplay   bool
	stopReplay bool
	replayed   []*entry // the last faults.seam replayed entries
	// replayPhase is true from the opening of a stream with a cursor until
	// its replay ends (V013: a failed batch then ends the stream).
	replayPhase bool
	// endIndex and endSeq bound a V013 replay: it covers at most the first
	// endIndex entries of the log (those stored when the request was
	// accepted) and sequences up to endSeq.
	endIndex int
	endSeq   uint64

	deadline time.Time // max duration (zero: none)
	nextHB   time.Time // next heartbeat (zero: none)
}

// Ways a stream ends (besides a clean end of the replay endpoint).
var (
	errEnd   = errors.New("stream ended by the server") // body ends normally
	errAbort = errors.New("connection dropped")         // TCP cut, no final chunk
	errGone  = errors.New("client went away")
)

func newStream(s *Server, w http.ResponseWriter, r *http.Request, rid, mode string, req *streamRequest, liveStart int, cf *connFaults) *stream {
	st := &stream{
		s: s, cfg: &s.cfg, w: w, rc: http.NewResponseController(w), ctx: r.Context(),
		ctl: make(chan string, 1), timer: time.NewTimer(time.Hour),
		mode: mode, rid: rid, req: req, liveStart: liveStart, faults: cf,
		pending: slices.Clone(cf.counted),
	}
	st.timer.Stop()
	if s.cfg.version == V013 {
		st.fixEnd()
	}
	sort.SliceStable(st.pending, func(i, j int) bool { return after(st.pending[i]) < after(st.pending[j]) })
	var out io.Writer = w
	if cf.tiny > 0 {
		out = &tinyWriter{w: w, rc: st.rc, size: cf.tiny}
	}
	st.bw = bufio.NewWriterSize(out, 64<<10)
	return st
}

// fixEnd fixes the end of a V013 replay from the log as it was when the
// request was accepted: the last sequence stored then, lowered to to_id, or
// the last sequence stored at or before to_date. When nothing qualifies the
// end is the first stored sequence - 1 (an empty replay), as JetStream
// reports it.
func (st *stream) fixEnd() {
	entries, _ := st.s.snapshot(st.req.eventType)
	entries = entries[:st.liveStart]
	st.endIndex = len(entries)
	before := uint64(0)
	if len(entries) > 0 {
		before = entries[0].seq - 1
		st.endSeq = entries[len(entries)-1].seq
	}
	switch {
	case st.req.toID != nil:
		st.endSeq = min(st.endSeq, *st.req.toID)
	case st.req.toDate != nil:
		st.endSeq = before
		for _, e := range entries {
			if !e.time.After(*st.req.toDate) {
				st.endSeq = max(st.endSeq, e.seq)
			}
		}
	}
}

func (st *stream) replayStarted(ts string) []byte {
	if st.cfg.version == V013 {
		return replayStarted013(st.rid, ts, st.req.topic, st.cfg.batchSize, st.req.fromDateText, st.req.fromID, st.endSeq, st.req.toDateText)
	}
	return replayStarted(st.rid, ts, st.req.topic, st.cfg.batchSize, st.req.fromDateText, st.req.fromID)
}

func (st *stream) run() {
	defer st.timer.Stop()
	err := st.serve()
	if errors.Is(err, errGone) {
		return
	}
	if st.flush() != nil {
		return
	}
	if errors.Is(err, errAbort) {
		panic(http.ErrAbortHandler)
	}
}

func (st *stream) serve() error {
	h := st.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("X-Accel-Buffering", "no")
	st.w.WriteHeader(http.StatusOK)
	if err := st.flush(); err != nil {
		return errGone
	}
	if f := st.faults.stallOpening; f != nil {
		if err := st.stall(f.For); err != nil {
			return err
		}
	}
	start := time.Now()
	ts := controlTime(st.cfg.now())
	topic := st.req.topic
	if st.mode == "replay" {
		st.replayPhase = true
		st.write(st.replayStarted(ts))
		if err := st.afterCount(); err != nil {
			return err
		}
		if err := st.replay(); err != nil {
			return err
		}
		st.write(replayCompleted(controlTime(st.cfg.now()), topic))
		return st.closeWith("end_of_stream", "")
	}

	if st.cfg.maxDuration > 0 {
		st.deadline = start.Add(st.cfg.maxDuration)
	}
	st.nextHB = start.Add(st.cfg.heartbeat)
	if !st.req.hasCursor() {
		st.write(connectionEstablished(st.rid, ts, topic, uint64(max(st.cfg.maxDuration, 0)/time.Second)))
		st.write(heartbeat(ts, topic))
		if err := st.afterCount(); err != nil {
			return err
		}
		return st.live()
	}
	st.replayPhase = true
	st.write(st.replayStarted(ts))
	st.write(heartbeat(ts, topic))
	if err := st.afterCount(); err != nil {
		return err
	}
	if err := st.replay(); err != nil {
		return err
	}
	st.write(replayCompleted(controlTime(st.cfg.now()), topic))
	for _, e := range st.replayed { // SeamDuplicates
		if err := st.notify(e, false); err != nil {
			return err
		}
	}
	return st.live()
}

// write buffers b; write errors surface at the next flush.
func (st *stream) write(b []byte) { _, _ = st.bw.Write(b) }

func (st *stream) flush() error {
	if err := st.bw.Flush(); err != nil {
		return errGone
	}
	if err := st.rc.Flush(); err != nil {
		return errGone
	}
	return nil
}

func (st *stream) closeWith(reason, message string) error {
	st.write(connectionClosing(reason, message, st.rid, controlTime(st.cfg.now()), st.req.topic))
	return errEnd
}

func (st *stream) control(v string) error {
	if v == dropSignal {
		return errAbort
	}
	return st.closeWith(v, "")
}

func (st *stream) matches(e *entry) bool {
	if st.req.fromDate != nil && e.time.Before(*st.req.fromDate) {
		return false
	}
	return matchAll(st.req.filter, e.identifier)
}

// notify writes one notification frame, applying the faults that concern it.
// A poison entry becomes its error frame (not counted as a notification).
func (st *stream) notify(e *entry, replay bool) error {
	if e.poison != "" {
		seq := e.seq
		st.write(errorFrame("CloudEvent creation failed", e.poison, st.rid, st.req.topic, &seq))
		return nil
	}
	if st.failNext {
		st.failNext = false
		seq := e.seq
		st.write(errorFrame("CloudEvent creation failed", creationFailedMessage(seq), st.rid, st.req.topic, &seq))
		return nil
	}
	fr := e.live
	if replay {
		fr = e.replay
	}
	if c := st.cutNext; c != nil {
		st.write(fr[:len(fr)/2])
		if c.Graceful {
			return errEnd
		}
		return errAbort
	}
	st.write(fr)
	st.count++
	if replay && st.faults.seam > 0 {
		st.replayed = append(st.replayed, e)
		if len(st.replayed) > st.faults.seam {
			st.replayed = st.replayed[1:]
		}
	}
	return st.afterCount()
}

// afterCount fires the counted faults that are due.
func (st *stream) afterCount() error {
	for len(st.pending) > 0 && after(st.pending[0]) <= st.count {
		f := st.pending[0]
		st.pending = st.pending[1:]
		switch f := f.(type) {
		case CloseWith:
			return st.closeWith(f.Reason, f.Message)
		case ErrorFrame:
			if f.CreationFailed {
				st.failNext = true
				continue
			}
			st.write(errorFrame("stream_processing_failed", orDefault(f.Message, "Failed to fetch replay batch"), st.rid, st.req.topic, nil))
			if st.cfg.version == V013 && st.replayPhase {
				return st.closeWith("end_of_stream", "")
			}
			if st.inReplay {
				st.stopReplay = true
			}
		case Malformed:
			st.write(frame(orDefault(f.Event, "live-notification"), []byte(f.Data)))
		case Stall:
			if err := st.stall(f.For); err != nil {
				return err
			}
		case CutMidFrame:
			st.cutNext = &f
		}
	}
	return nil
}

// stall writes nothing for d (0: until the client or server ends it).
func (st *stream) stall(d time.Duration) error {
	if err := st.flush(); err != nil {
		return err
	}
	var tc <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-tc:
		if !st.nextHB.IsZero() {
			st.nextHB = time.Now().Add(st.cfg.heartbeat)
		}
		return nil
	case <-st.ctx.Done():
		return errGone
	case <-st.s.done:
		return errAbort
	case v := <-st.ctl:
		return st.control(v)
	}
}

// checks handles, without blocking, whatever is due: client gone, server
// shutdown, CloseStreams, max duration, heartbeat.
func (st *stream) checks() error {
	select {
	case <-st.ctx.Done():
		return errGone
	case <-st.s.done:
		return st.closeWith("server_shutdown", "")
	case v := <-st.ctl:
		return st.control(v)
	default:
	}
	now := time.Now()
	if !st.deadline.IsZero() && !now.Before(st.deadline) {
		return st.closeWith("max_duration_reached", "")
	}
	if !st.nextHB.IsZero() && !now.Before(st.nextHB) {
		st.write(heartbeat(controlTime(st.cfg.now()), st.req.topic))
		st.nextHB = now.Add(st.cfg.heartbeat)
	}
	return nil
}

// sleep waits until wake is closed or d passes (d < 0: no timeout),
// serving heartbeats, max duration and signals meanwhile.
func (st *stream) sleep(wake <-chan struct{}, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if err := st.flush(); err != nil {
			return err
		}
		next := st.nextHB
		if !st.deadline.IsZero() && (next.IsZero() || st.deadline.Before(next)) {
			next = st.deadline
		}
		if d >= 0 && (next.IsZero() || deadline.Before(next)) {
			next = deadline
		}
		var tc <-chan time.Time
		if !next.IsZero() {
			st.timer.Reset(time.Until(next))
			tc = st.timer.C
		}
		select {
		case <-wake:
			st.timer.Stop()
			return nil
		case <-tc:
		case <-st.ctx.Done():
			return errGone
		case <-st.s.done:
			return st.closeWith("server_shutdown", "")
		case v := <-st.ctl:
			return st.control(v)
		}
		if err := st.checks(); err != nil {
			return err
		}
		if d >= 0 && !time.Now().Before(deadline) {
			return nil
		}
	}
}

// replay sends the stored notifications from the request's start position in
// batches, until it catches up with the log (V071: the log as it grows; V013:
// the end fixed at acceptance), hits the replay limit, or an ErrorFrame fault
// ends it. Under V013 the limit ends the stream (errEnd).
func (st *stream) replay() error {
	st.inReplay = true
	defer func() { st.inReplay, st.replayPhase = false, false }()
	v013 := st.cfg.version == V013
	entries, _ := st.s.snapshot(st.req.eventType)
	pos := 0
	if id := st.req.fromID; id != nil {
		pos = sort.Search(len(entries), func(i int) bool { return entries[i].seq >= *id })
	}
	limit, size := st.cfg.replayLimit, st.cfg.batchSize
	replayed := 0
	for {
		entries, _ = st.s.snapshot(st.req.eventType)
		if v013 {
			entries = entries[:st.endIndex]
		}
		n := 0
		for ; pos < len(entries) && n < size; pos++ {
			e := entries[pos]
			if v013 && e.seq > st.endSeq {
				pos = len(entries)
				break
			}
			if !st.matches(e) {
				continue
			}
			n++
			if e.poison == "" {
				if limit > 0 && replayed >= limit {
					st.write(replayLimitReached(controlTime(st.cfg.now()), st.req.topic, uint64(limit)))
					if v013 {
						return st.closeWith("end_of_stream", "")
					}
					return nil
				}
				replayed++
			}
			if err := st.notify(e, true); err != nil {
				return err
			}
			if st.stopReplay {
				return nil
			}
		}
		if n < size {
			return nil
		}
		if err := st.checks(); err != nil {
			return err
		}
		if st.cfg.batchDelay > 0 {
			if err := st.sleep(nil, st.cfg.batchDelay); err != nil {
				return err
			}
		} else if err := st.flush(); err != nil {
			return err
		}
	}
}

// live follows the log from the position fixed when the request arrived.
func (st *stream) live() error {
	idx := st.liveStart
	for {
		entries, wake := st.s.snapshot(st.req.eventType)
		for idx < len(entries) {
			e := entries[idx]
			idx++
			if matchAll(st.req.filter, e.identifier) {
				if err := st.notify(e, false); err != nil {
					return err
				}
			}
			if idx%256 == 0 {
				if err := st.checks(); err != nil {
					return err
				}
			}
		}
		if err := st.checks(); err != nil {
			return err
		}
		if err := st.sleep(wake, -1); err != nil {
			return err
		}
	}
}

// tinyWriter writes in pieces of size bytes, flushing each.
type tinyWriter struct {
	w    io.Writer
	rc   *http.ResponseController
	size int
}

func (t *tinyWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(t.size, len(p))
		m, err := t.w.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		if err := t.rc.Flush(); err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}
