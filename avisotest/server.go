// Package avisotest is an in-process aviso-server for tests and for
// `aviso-bridge demo`, in the manner of net/http/httptest. It speaks
// aviso-server 0.7.1's wire format byte for byte (alphabetical JSON keys, LF
// framing, error bodies, X-Request-ID), or 0.13's with WithVersion(V013),
// keeps every published notification, serves live, replay-then-live and
// replay-only streams with identifier filters, and injects faults on demand
// (see Fault). It does not import package testing, so that a production
// binary (the demo) may link it.
//
// What WithVersion(V013) changes (README, aviso-server versions): the replay limit
// is a total that ends the stream (notification_replay_limit_reached, then
// end_of_stream); /replay takes to_id or to_date and fixes its end when the
// request is accepted; replay_started carries end_sequence and to_date; the
// replay-to-live seam of /watch is exact; identifier keys outside a declared
// schema (WithSchema) are refused; GET /ready exists; a failed replay batch
// (ErrorFrame fault) ends the stream.
//
// Data flow: it stands where aviso-server does, in front of package aviso
// (SSE bytes -> aviso -> supervisor -> bridge -> sink -> checkpoint).
//
// Deliberate simplifications: the schema is only a list of keys (every
// identifier key is optional, no polygon/point semantics: scalar keys
// compare as strings, array values match only constraint-free presence), the
// topic in control frames is the event type followed by the request's
// identifier values in key order ("*" for constraint objects), the whole
// history is kept, and error message texts approximate aviso's (codes,
// labels, keys and statuses are exact).
package avisotest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Version is the aviso-server release whose behaviour the server imitates.
type Version int

const (
	// V071 is aviso-server 0.7.1 (the default).
	V071 Version = iota
	// V013 is aviso-server 0.13.x.
	V013
)

// String returns "0.7.1" or "0.13".
func (v Version) String() string {
	switch v {
	case V071:
		return "0.7.1"
	case V013:
		return "0.13"
	}
	return fmt.Sprintf("Version(%d)", int(v))
}

// TB is the part of testing.TB that NewServer uses; *testing.T, *testing.B
// and *testing.F satisfy it. It is declared here so that this package does
// not import testing.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// Option configures a Server.
type Option func(*config)

type config struct {
	eventTypes  []string // nil: any event type
	heartbeat   time.Duration
	maxDuration time.Duration
	batchSize   int
	batchDelay  time.Duration
	replayLimit int
	basePath    string
	baseURL     string
	tokenFile   string
	now         func() time.Time
	globalSeq   bool
	tls         bool
	version     Version
	schemas     map[string][]string // event type -> identifier keys (sorted)
}

// WithVersion selects the aviso-server release to imitate (default V071).
func WithVersion(v Version) Option { return func(c *config) { c.version = v } }

// WithSchema declares the identifier keys of eventType's schema (call it once
// per event type). Under V013 a watch or replay request with any other key
// gets 400 INVALID_WATCH_REQUEST / INVALID_REPLAY_REQUEST ("Unknown field
// 'k' provided for watch operation"); under V071 such keys are ignored (they
// filter nothing). Event types without a declared schema accept every key.
func WithSchema(eventType string, keys ...string) Option {
	return func(c *config) {
		if c.schemas == nil {
			c.schemas = map[string][]string{}
		}
		c.schemas[eventType] = slices.Sorted(slices.Values(keys))
	}
}

// WithEventTypes turns on aviso's strict mode: requests for any other event
// type get 400 UNKNOWN_EVENT_TYPE. Without it every event type is accepted.
func WithEventTypes(types ...string) Option {
	return func(c *config) { c.eventTypes = slices.Sorted(slices.Values(types)) }
}

// WithHeartbeat sets the heartbeat interval of /watch streams (default 30 s,
// as aviso). The first heartbeat follows the opening frame at once.
func WithHeartbeat(d time.Duration) Option { return func(c *config) { c.heartbeat = d } }

// WithMaxDuration sets the longest life of a /watch stream, after which it
// closes with max_duration_reached (default 3600 s, as aviso; it includes
// the replay time). It is also connection_will_close_in_seconds. d <= 0
// removes the limit (and announces 0).
func WithMaxDuration(d time.Duration) Option { return func(c *config) { c.maxDuration = d } }

// WithReplayBatch sets the replay batch size (default 100, as aviso) and the
// pause between batches (default 0; aviso's is 100 ms).
func WithReplayBatch(size int, delay time.Duration) Option {
	return func(c *config) { c.batchSize, c.batchDelay = max(size, 1), delay }
}

// WithReplayLimit caps every replay at n notifications in total
// (max_historical_notifications; 0: no cap). It fires only when one more
// matching notification follows the n-th: then the server sends a
// notification_replay_limit_reached frame (max_allowed n). Under V071 the
// stream goes on with replay_completed and, on /watch, live; under V013 it
// ends with connection-closing end_of_stream (no replay_completed, no live
// part). Poison notifications (PublishPoison) do not count.
func WithReplayLimit(n int) Option { return func(c *config) { c.replayLimit = n } }

// WithBasePath serves the API under a path prefix ("/aviso": the URL becomes
// http://127.0.0.1:port/aviso and the watch endpoint /aviso/api/v1/watch).
func WithBasePath(p string) Option {
	return func(c *config) { c.basePath = "/" + strings.Trim(p, "/") }
}

// WithBaseURL sets aviso's application.base_url: the CloudEvent source, and
// the prefix of dataschema (default "http://localhost").
func WithBaseURL(source string) Option { return func(c *config) { c.baseURL = source } }

// WithTokenFile requires "Authorization: Bearer <token>" on every /api/v1
// request, the token being the contents of the file at path (trimmed), read
// again for each request so that tests can rotate it. Otherwise the answer is
// 401 with WWW-Authenticate: Bearer and aviso's JSON body.
func WithTokenFile(path string) Option { return func(c *config) { c.tokenFile = path } }

// WithClock sets the clock of notification and control-frame timestamps
// (and of from_date replays). Intervals still use real time.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithGlobalSequence uses one sequence counter for all event types, like
// aviso's in-memory backend (default: one counter per event type, like
// JetStream's stream sequence).
func WithGlobalSequence() Option { return func(c *config) { c.globalSeq = true } }

// WithTLS serves HTTPS with a self-signed certificate; Server.Client trusts it.
func WithTLS() Option { return func(c *config) { c.tls = true } }

// Server is a running aviso-compatible server.
type Server struct {
	// URL is the base URL to give the client (http://127.0.0.1:port plus the
	// base path), without a trailing slash.
	URL string

	cfg       config
	hs        *httptest.Server
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	handlers  sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	logs      map[string][]*entry // per event type, ascending sequence
	seqs      map[string]uint64
	globalSeq uint64
	wake      chan struct{} // closed and replaced on every publish
	requests  []Request
	reqWake   chan struct{} // closed and replaced on every recorded request
	faults    []Fault
	every     Fault
	streams   map[*stream]struct{}
	notReady  bool // SetBackendConnected(false)
}

// entry is one stored notification with its frames pre-rendered, so that
// serving a stream costs one write per frame.
type entry struct {
	seq uint64
	// identifier holds the scalar identifier values in aviso's string form
	// (what filters compare); array and object values are absent from it.
	identifier map[string]string
	time       time.Time
	live       []byte // event: live-notification
	replay     []byte // event: replay
	// poison, when set, is the message of the "CloudEvent creation failed"
	// error frame every delivery of this entry becomes (live and replay are
	// then nil).
	poison string
}

// NewServer starts a Server and registers t.Cleanup(s.Close). t is usually
// a *testing.T.
func NewServer(t TB, opts ...Option) *Server {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatalf("avisotest: %v", err)
		return nil // for a TB whose Fatalf returns
	}
	t.Cleanup(s.Close)
	return s
}

// New starts a Server on a loopback port; the caller must Close it.
func New(opts ...Option) (*Server, error) {
	s := &Server{
		cfg: config{
			heartbeat:   30 * time.Second,
			maxDuration: time.Hour,
			batchSize:   100,
			baseURL:     "http://localhost",
			now:         time.Now,
		},
		done:    make(chan struct{}),
		logs:    map[string][]*entry{},
		seqs:    map[string]uint64{},
		wake:    make(chan struct{}),
		reqWake: make(chan struct{}),
		streams: map[*stream]struct{}{},
	}
	for _, o := range opts {
		o(&s.cfg)
	}
	if s.cfg.heartbeat <= 0 {
		return nil, fmt.Errorf("heartbeat interval must be positive, got %s", s.cfg.heartbeat)
	}
	if s.cfg.basePath == "/" {
		s.cfg.basePath = ""
	}
	s.hs = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	if s.cfg.tls {
		s.hs.StartTLS()
	} else {
		s.hs.Start()
	}
	s.URL = s.hs.URL + s.cfg.basePath
	return s, nil
}

// Client returns an HTTP client for the server (it trusts the WithTLS
// certificate). It has no overall timeout.
func (s *Server) Client() *http.Client { return s.hs.Client() }

// Close ends every open stream (with connection-closing server_shutdown
// where the stream can still write), then shuts the server down. Streams
// blocked on a client that does not read are cut after a short grace.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.done)
		s.mu.Unlock()
		finished := make(chan struct{})
		go func() { s.handlers.Wait(); close(finished) }()
		deadline := time.NewTimer(time.Second)
		defer deadline.Stop()
		select {
		case <-finished:
			// A handler's return is not the end of its response: net/http
			// still writes the chunked terminator. Shutdown waits for every
			// connection to go idle, so the closing frame is followed by a
			// clean EOF rather than a cut connection.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = s.hs.Config.Shutdown(ctx)
			cancel()
		case <-deadline.C:
		}
		s.hs.CloseClientConnections()
		s.hs.Close()
	})
}

// Publish stores a notification and returns its sequence. The payload is
// rendered as aviso returns it (JSON with sorted keys; nil or "" becomes
// null). It panics when payload cannot be encoded as JSON.
func (s *Server) Publish(eventType string, identifier map[string]string, payload any) uint64 {
	raw, err := json.Marshal(payload)
	if err == nil {
		raw, err = normalizePayload(raw)
	}
	if err != nil {
		panic(fmt.Sprintf("avisotest: Publish %s: payload: %v", eventType, err))
	}
	return s.PublishRaw(eventType, identifier, raw)
}

// PublishRaw stores a notification whose payload bytes are inserted into the
// CloudEvent verbatim (empty means null). Invalid JSON is not rejected: it
// produces a malformed notification, in replays too.
func (s *Server) PublishRaw(eventType string, identifier map[string]string, payload []byte) uint64 {
	raw := make(map[string]json.RawMessage, len(identifier))
	for k, v := range identifier {
		raw[k] = marshal(v)
	}
	return s.store(eventType, raw, payload, nil)
}

// PublishJSON stores a notification whose identifier values are any JSON
// values, rendered as given (keys sorted): numbers stay numbers, a polygon
// [][]float64{{52.5, 13.4}, ...} becomes [[52.5,13.4],...], as aviso 0.13
// returns them. Identifier filters compare a string or number value by its
// text (a string by its contents); array and object values match only a
// request that does not constrain their key. The payload is rendered as by
// Publish. It panics when identifier or payload cannot be encoded as JSON.
func (s *Server) PublishJSON(eventType string, identifier map[string]any, payload any) uint64 {
	raw := make(map[string]json.RawMessage, len(identifier))
	for k, v := range identifier {
		b, err := json.Marshal(v)
		if err == nil {
			b, err = normalizePayload(b)
		}
		if err != nil {
			panic(fmt.Sprintf("avisotest: PublishJSON %s: identifier %q: %v", eventType, k, err))
		}
		raw[k] = b
	}
	p, err := json.Marshal(payload)
	if err == nil {
		p, err = normalizePayload(p)
	}
	if err != nil {
		panic(fmt.Sprintf("avisotest: PublishJSON %s: payload: %v", eventType, err))
	}
	return s.store(eventType, raw, p, nil)
}

// PublishPoison stores a notification aviso cannot turn into a CloudEvent
// (for example a stored polygon that does not parse), in both versions. It
// occupies its sequence, which it returns, and every delivery of it (live,
// and every replay that covers it) is the error frame
// {"error":"CloudEvent creation failed","message":message,"request_id":...,
// "sequence":N,"topic":...}; it never counts against the replay limit.
// message "" means "Failed to create CloudEvent for notification with
// sequence N".
func (s *Server) PublishPoison(eventType string, identifier map[string]string, message string) uint64 {
	raw := make(map[string]json.RawMessage, len(identifier))
	for k, v := range identifier {
		raw[k] = marshal(v)
	}
	return s.store(eventType, raw, nil, &message)
}

// store appends a notification; poison non-nil stores a poison one with that
// message.
func (s *Server) store(eventType string, identifier map[string]json.RawMessage, payload []byte, poison *string) uint64 {
	if len(payload) == 0 {
		payload = []byte("null")
	}
	e := &entry{identifier: map[string]string{}}
	for k, v := range identifier {
		if sv, err := scalarText(v); err == nil {
			e.identifier[k] = sv
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.globalSeq {
		s.globalSeq++
		e.seq = s.globalSeq
	} else {
		s.seqs[eventType]++
		e.seq = s.seqs[eventType]
	}
	e.time = s.cfg.now()
	switch {
	case poison == nil:
		ce := renderCloudEvent(s.cfg.baseURL, eventType, e.seq, e.time, identifier, payload)
		e.live, e.replay = frame("live-notification", ce), frame("replay", ce)
	case *poison == "":
		e.poison = creationFailedMessage(e.seq)
	default:
		e.poison = *poison
	}
	s.logs[eventType] = append(s.logs[eventType], e)
	close(s.wake)
	s.wake = make(chan struct{})
	return e.seq
}

// SetBackendConnected sets what GET /ready reports under V013 (initially
// true): 200 {"status":"ready","backend_connected":true}, or 503
// {"status":"not_ready","backend_connected":false}. It changes nothing else.
func (s *Server) SetBackendConnected(ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notReady = !ok
}

// LastSequence returns the sequence of the last notification of eventType
// (0 when none).
func (s *Server) LastSequence(eventType string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if es := s.logs[eventType]; len(es) > 0 {
		return es[len(es)-1].seq
	}
	return 0
}

// Requests returns the requests received so far, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// WaitRequests waits until at least n requests have arrived and returns
// them. A watch request is recorded after its live position is fixed: a
// notification published after WaitRequests returns reaches that watch (if
// the request is accepted).
func (s *Server) WaitRequests(ctx context.Context, n int) ([]Request, error) {
	for {
		s.mu.Lock()
		reqs, wake := slices.Clone(s.requests), s.reqWake
		s.mu.Unlock()
		if len(reqs) >= n {
			return reqs, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return reqs, fmt.Errorf("avisotest: %d of %d requests arrived: %w", len(reqs), n, ctx.Err())
		}
	}
}

// Fault queues faults, one per connection: the next watch or replay request
// takes the first, the one after it the second, and so on.
func (s *Server) Fault(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, faults...)
}

// FaultEvery applies f to every connection that finds the queue empty
// (nil stops it). Example: FaultEvery(CloseWith{Reason:
// "max_duration_reached", After: 5}) closes every stream after 5
// notifications.
func (s *Server) FaultEvery(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.every = f
}

// OpenStreams returns the number of streams being served.
func (s *Server) OpenStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// CloseStreams makes every open stream send connection-closing with reason
// (and aviso's message for it) and end its body.
func (s *Server) CloseStreams(reason string) { s.signal(reason) }

// DropStreams cuts the TCP connection of every open stream without a
// closing frame.
func (s *Server) DropStreams() { s.signal(dropSignal) }

const dropSignal = "\x00drop"

func (s *Server) signal(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.streams {
		select {
		case st.ctl <- v:
		default:
		}
	}
}

func (s *Server) snapshot(eventType string) ([]*entry, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs[eventType], s.wake
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rid := newRequestID()
	w.Header().Set("X-Request-ID", rid)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "server closed", http.StatusServiceUnavailable)
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()

	path, ok := strings.CutPrefix(r.URL.Path, s.cfg.basePath)
	if !ok {
		path = ""
	}
	method := http.MethodPost
	if path == "/health" || path == "/ready" {
		method = http.MethodGet
	}
	if path == "/ready" && s.cfg.version == V071 {
		path = "" // 0.7.1 has no readiness route
	}
	switch path {
	case "/api/v1/watch", "/api/v1/replay", "/api/v1/notification", "/health", "/ready":
		if r.Method != method {
			w.Header().Set("Allow", method)
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
	default:
		w.WriteHeader(http.StatusNotFound)
		return
	}
	switch path {
	case "/health":
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
	case "/ready":
		s.mu.Lock()
		down := s.notReady
		s.mu.Unlock()
		if down {
			writeJSON(w, http.StatusServiceUnavailable, []byte(`{"status":"not_ready","backend_connected":false}`))
		} else {
			writeJSON(w, http.StatusOK, []byte(`{"status":"ready","backend_connected":true}`))
		}
	case "/api/v1/notification":
		s.serveNotify(w, r, rid)
	default:
		s.serveStream(w, r, rid, strings.TrimPrefix(path, "/api/v1/"))
	}
}

const maxBody = 256 << 10 // actix's default payload limit

// record reads the body and records the request; it also fixes the live
// start of a watch and takes the connection's fault.
func (s *Server) record(r *http.Request, rid string, takeFault bool) (rec Request, liveStart int, f Fault, tooLarge bool) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	tooLarge = len(body) > maxBody
	rec = Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, RequestID: rid}
	rec.looseParse()
	s.mu.Lock()
	defer s.mu.Unlock()
	if takeFault {
		if len(s.faults) > 0 {
			f, s.faults = s.faults[0], s.faults[1:]
		} else {
			f = s.every
		}
	}
	liveStart = len(s.logs[rec.EventType])
	s.requests = append(s.requests, rec)
	close(s.reqWake)
	s.reqWake = make(chan struct{})
	return rec, liveStart, f, tooLarge
}

func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, rid, mode string) {
	rec, liveStart, f, tooLarge := s.record(r, rid, true)
	cf := newConnFaults(f)
	if st := cf.stallHeaders; st != nil && !s.wait(r.Context(), st.For) {
		panic(http.ErrAbortHandler)
	}
	if cf.status != nil {
		s.writeStatus(w, rid, mode, cf.status)
		return
	}
	if tooLarge {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	if e := s.authorize(r); e != nil {
		s.writeError(w, rid, e)
		return
	}
	m, e := parseBody(rec.Body, s.cfg.version)
	if e == nil {
		e = s.checkEventType(rec.EventType)
	}
	var req *streamRequest
	if e == nil {
		req, e = validateStream(m, mode, s.cfg.version, s.cfg.schemas[rec.EventType])
	}
	if e != nil {
		s.writeError(w, rid, e)
		return
	}
	st := newStream(s, w, r, rid, mode, req, liveStart, cf)
	s.mu.Lock()
	s.streams[st] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.streams, st)
		s.mu.Unlock()
	}()
	st.run()
}

// wait sleeps for d (0: forever) unless the request or the server ends
// first; it reports whether d elapsed.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	var tc <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-tc:
		return true
	case <-ctx.Done():
	case <-s.done:
	}
	return false
}

func (s *Server) checkEventType(et string) *apiError {
	if s.cfg.eventTypes == nil || slices.Contains(s.cfg.eventTypes, et) {
		return nil
	}
	return &apiError{400, map[string]any{
		"code":                   "UNKNOWN_EVENT_TYPE",
		"configured_event_types": s.cfg.eventTypes,
		"error":                  "unknown_event_type",
		"message":                fmt.Sprintf("unknown event type '%s'", et),
	}}
}

func (s *Server) authorize(r *http.Request) *apiError {
	if s.cfg.tokenFile == "" {
		return nil
	}
	b, err := readTrimmed(s.cfg.tokenFile)
	if err != nil {
		return simpleError(500, "INTERNAL_ERROR", "internal_error", "Authentication settings are unavailable")
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return simpleError(401, "UNAUTHORIZED", "unauthorized", "Authorization header is required")
	}
	scheme, token, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") || token != b {
		return simpleError(401, "UNAUTHORIZED", "unauthorized", "Invalid or expired token")
	}
	return nil
}

func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

func (s *Server) writeError(w http.ResponseWriter, rid string, e *apiError) {
	if e.status == http.StatusUnauthorized {
		w.Header().Add("WWW-Authenticate", "Bearer")
	}
	writeJSON(w, e.status, e.render(rid))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// defaultStatusErrors are the bodies of Status faults without a Body.
var defaultStatusErrors = map[int]*apiError{
	400: standardError(400, "INVALID_WATCH_REQUEST", "Invalid Watch Request", "Invalid watch request", "injected by avisotest"),
	401: simpleError(401, "UNAUTHORIZED", "unauthorized", "Authentication is required for this stream"),
	403: simpleError(403, "FORBIDDEN", "forbidden", "Access to this stream is forbidden"),
	500: simpleError(500, "INTERNAL_ERROR", "internal_error", "Internal server error"),
	503: simpleError(503, "SERVICE_UNAVAILABLE", "service_unavailable", "Authentication service is unavailable"),
}

func (s *Server) writeStatus(w http.ResponseWriter, rid, mode string, st *Status) {
	h := w.Header()
	for k, vs := range st.Header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	if st.RetryAfter != "" {
		h.Set("Retry-After", st.RetryAfter)
	}
	body := []byte(st.Body)
	ctype := st.ContentType
	if st.Body == "" {
		if e := defaultStatusErrors[st.Code]; e != nil {
			body, ctype = e.render(rid), orDefault(ctype, "application/json")
			if st.Code == http.StatusUnauthorized {
				h.Add("WWW-Authenticate", "Bearer")
			}
		}
	} else if ctype == "" && json.Valid(body) {
		ctype = "application/json"
	}
	if ctype != "" {
		h.Set("Content-Type", ctype)
	}
	w.WriteHeader(st.Code)
	_, _ = w.Write(body)
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// serveNotify implements POST /api/v1/notification (publish over HTTP).
func (s *Server) serveNotify(w http.ResponseWriter, r *http.Request, rid string) {
	rec, _, _, tooLarge := s.record(r, rid, false)
	if tooLarge {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	if e := s.authorize(r); e != nil {
		s.writeError(w, rid, e)
		return
	}
	m, e := parseBody(rec.Body, s.cfg.version)
	if e == nil {
		e = s.checkEventType(rec.EventType)
	}
	bad := func(msg string) *apiError {
		return standardError(400, "INVALID_NOTIFICATION_REQUEST", "Invalid Notification Request", msg, msg)
	}
	ident := map[string]string{}
	if e == nil {
		var raw map[string]json.RawMessage
		_ = json.Unmarshal(m["identifier"], &raw)
		for k, v := range raw {
			sv, err := scalarText(v)
			if err != nil {
				e = bad(fmt.Sprintf("identifier %q: %v", k, err))
				break
			}
			ident[k] = sv
		}
	}
	if e == nil && (m["from_id"] != nil || m["from_date"] != nil) {
		e = bad("from_id and from_date are not allowed on notifications")
	}
	if e == nil && (m["to_id"] != nil || m["to_date"] != nil) {
		e = bad("to_id and to_date are only supported for the replay endpoint, not /notification")
	}
	if e != nil {
		s.writeError(w, rid, e)
		return
	}
	payload, err := normalizePayload(m["payload"])
	if err != nil {
		s.writeError(w, rid, bad(err.Error()))
		return
	}
	s.PublishRaw(rec.EventType, ident, payload)
	writeJSON(w, http.StatusOK, marshal(struct {
		ProcessedAt string `json:"processed_at"`
		RequestID   string `json:"request_id"`
		Status      string `json:"status"`
	}{controlTime(s.cfg.now()), rid, "success"}))
}
