package nats

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// wantHeaders is interface.md section 3 for n, plus extra.
func wantHeaders(n *bridge.Notification, format Format, extra map[string]string) natsgo.Header {
	h := natsgo.Header{"Nats-Msg-Id": {n.ID}}
	if format == FormatStructured {
		h["Content-Type"] = []string{"application/cloudevents+json"}
	} else {
		h["ce-specversion"] = []string{"1.0"}
		h["ce-id"] = []string{n.ID}
		h["ce-source"] = []string{n.Source}
		h["ce-type"] = []string{n.Type}
		h["ce-time"] = []string{n.TimeRaw}
		if n.DataSchema != "" {
			h["ce-dataschema"] = []string{n.DataSchema}
		}
		h["ce-datacontenttype"] = []string{"application/json"}
		h["Content-Type"] = []string{"application/json"}
	}
	for k, v := range extra {
		h[k] = []string{v}
	}
	return h
}

func headersEqual(a, b natsgo.Header) bool {
	return maps.EqualFunc(a, b, func(x, y []string) bool { return strings.Join(x, "\x00") == strings.Join(y, "\x00") })
}

func TestJetStreamMessageFormat(t *testing.T) {
	srv := natstest.NewServer(t)
	js := avisoStream(t, srv)
	// One notification with no dataschema and an odd identifier, to see
	// the optional header dropped and each value encoded into one token.
	odd := bridgetest.Notifications(7, 1, bridgetest.EventType("my.event"), bridgetest.DataSize(200))[0]
	odd.DataSchema = ""
	odd.Identifier = []byte(`{"date":"a b*>%.c","step":12}`)

	tests := []struct {
		name    string
		cfg     Config
		ns      []*bridge.Notification
		subject []string
		extra   map[string]string
	}{
		{
			name:    "binary",
			cfg:     Config{Format: FormatBinary, Subject: "aviso.b.{event_type}"},
			ns:      bridgetest.Notifications(1, 3, bridgetest.EventType("mars"), bridgetest.DataSize(600)),
			subject: []string{"aviso.b.mars", "aviso.b.mars", "aviso.b.mars"},
		},
		{
			name:    "structured with expected stream",
			cfg:     Config{Format: FormatStructured, Subject: "aviso.s.{event_type}", Stream: "AVISO"},
			ns:      bridgetest.Notifications(1, 2, bridgetest.EventType("venus"), bridgetest.DataSize(100)),
			subject: []string{"aviso.s.venus", "aviso.s.venus"},
			extra:   map[string]string{jetstream.ExpectedStreamHeader: "AVISO"},
		},
		{
			name:    "template encoding",
			cfg:     Config{Subject: "aviso.t.{event_type}.{identifier.date}.{identifier.step}.{identifier.missing}.{sequence}"},
			ns:      []*bridge.Notification{odd},
			subject: []string{"aviso.t.my%2Eevent.a%20b%2A%3E%25%2Ec.12._.7"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newJetStreamSink(t, srv, tt.cfg, nil)
			for i, a := range publishAll(t, s, tt.ns) {
				if a.Err != nil || a.ID != tt.ns[i].ID || a.Sequence != tt.ns[i].Sequence {
					t.Fatalf("ack %d = %+v", i, a)
				}
			}
			msgs := natstest.ReadStream(t, js, "AVISO", tt.subject[0][:len("aviso.x")]+".>")
			if len(msgs) != len(tt.ns) {
				t.Fatalf("stream holds %d messages, want %d", len(msgs), len(tt.ns))
			}
			for i, m := range msgs {
				n := tt.ns[i]
				if m.Subject() != tt.subject[i] {
					t.Errorf("message %d subject %q, want %q", i, m.Subject(), tt.subject[i])
				}
				want := wantHeaders(n, s.cfg.Format, tt.extra)
				if !headersEqual(m.Headers(), want) {
					t.Errorf("message %d headers\n got %v\nwant %v", i, m.Headers(), want)
				}
				body := []byte(n.Data)
				if s.cfg.Format == FormatStructured {
					body = n.CloudEvent
				}
				if !bytes.Equal(m.Data(), body) {
					t.Errorf("message %d body\n got %s\nwant %s", i, m.Data(), body)
				}
			}
		})
	}
}

// A restart from an older checkpoint re-sends a range: JetStream must
// acknowledge the re-sends as duplicates and store nothing twice.
func TestJetStreamDeduplicatesResend(t *testing.T) {
	srv := natstest.NewServer(t)
	js := avisoStream(t, srv)
	ns := bridgetest.Notifications(1, 150, bridgetest.EventType("mars"), bridgetest.DataSize(300))

	first := newJetStreamSink(t, srv, Config{Stream: "AVISO"}, nil)
	publishAll(t, first, ns[:100])
	ctx := testCtx(t, 10*time.Second)
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// "Restart" with a checkpoint at 49: re-publish 50..150.
	second := newJetStreamSink(t, srv, Config{Stream: "AVISO"}, nil)
	for _, a := range publishAll(t, second, ns[49:]) {
		if a.Err != nil {
			t.Fatalf("ack %s: %v", a.ID, a.Err)
		}
	}
	msgs := natstest.ReadStream(t, js, "AVISO", "")
	if len(msgs) != len(ns) {
		t.Fatalf("stream holds %d messages, want %d", len(msgs), len(ns))
	}
	for i, m := range msgs {
		if got := m.Headers().Get("Nats-Msg-Id"); got != ns[i].ID {
			t.Fatalf("stream message %d is %s, want %s", i+1, got, ns[i].ID)
		}
	}
}

func TestJetStreamPermanentErrors(t *testing.T) {
	srv := natstest.NewServer(t, natstest.WithMaxPayload(8*1024))
	avisoStream(t, srv)
	srv.CreateStream(t, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}})
	srv.CreateStream(t, jetstream.StreamConfig{Name: "SMALL", Subjects: []string{"small.>"}, MaxMsgSize: 1024})

	small := bridgetest.Notifications(1, 1, bridgetest.EventType("mars"), bridgetest.DataSize(100))
	big := bridgetest.Notifications(2, 1, bridgetest.EventType("mars"), bridgetest.DataSize(16*1024))
	medium := bridgetest.Notifications(3, 1, bridgetest.EventType("mars"), bridgetest.DataSize(2048))

	tests := []struct {
		name string
		cfg  Config
		n    *bridge.Notification
		sync bool     // Publish itself refuses
		want []string // in the error text
	}{
		{"no stream", Config{Subject: "nowhere.{event_type}"}, small[0], false,
			[]string{`"nowhere.mars"`, "no response from stream", "no JetStream stream captures the subject"}},
		{"wrong expected stream", Config{Stream: "OTHER"}, small[0], false,
			[]string{`"aviso.mars"`, `stream "OTHER"`, "expected stream does not match"}},
		{"over server max payload", Config{}, big[0], true,
			[]string{`"aviso.mars"`, "maximum payload exceeded"}},
		{"over stream max message size", Config{Subject: "small.{event_type}"}, medium[0], false,
			[]string{`"small.mars"`, "message size exceeds maximum allowed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newJetStreamSink(t, srv, tt.cfg, nil)
			err := s.Publish(testCtx(t, 10*time.Second), tt.n)
			if tt.sync {
				if !bridge.IsPermanent(err) {
					t.Fatalf("Publish = %v, want a permanent error", err)
				}
			} else {
				if err != nil {
					t.Fatalf("Publish: %v", err)
				}
				a := nextAck(t, s)
				err = a.Err
				if !bridge.IsPermanent(err) {
					t.Fatalf("ack error %v, want permanent", err)
				}
			}
			mustContain(t, err, tt.want...)
			mustContain(t, err, tt.n.ID)

			// A permanent failure does not block the next publish.
			ok := bridgetest.Notifications(100, 1, bridgetest.EventType("mars"), bridgetest.DataSize(100))[0]
			if err := s.Publish(testCtx(t, 10*time.Second), ok); err != nil {
				t.Fatalf("Publish after a permanent failure: %v", err)
			}
			nextAck(t, s)
		})
	}
}

// The NATS server stops for a few seconds mid-stream and restarts on the
// same port and store: nothing is lost, nothing stored twice, and the
// stream order is the publish order.
func TestJetStreamOutageKeepsOrder(t *testing.T) {
	srv := natstest.NewServer(t)
	js := avisoStream(t, srv)
	var logs logBuffer
	s := newJetStreamSink(t, srv, Config{Stream: "AVISO", PublishTimeout: 2 * time.Second, MaxPending: 64}, logs.logger())

	ns := bridgetest.Notifications(1, 4000, bridgetest.EventType("mars"), bridgetest.DataSize(600))
	type result struct {
		st  bridgetest.DriveStats
		err error
	}
	retried := make(chan error, 1)
	res := make(chan result, 1)
	go func() {
		st, err := bridgetest.Drive(testCtx(t, 60*time.Second), s, ns, bridgetest.DriveConfig{
			Window:  64,
			Backoff: 100 * time.Millisecond,
			OnReject: func(n *bridge.Notification, err error) error {
				return fmt.Errorf("unexpected permanent failure of %s: %w", n.ID, err)
			},
			OnRetry: func(n *bridge.Notification, err error) {
				select {
				case retried <- err:
				default:
				}
			},
		})
		res <- result{st, err}
	}()

	bridgetest.Eventually(t, 20*time.Second, "500 stored messages", func() bool { return streamMsgs(js) >= 500 })
	srv.Shutdown()
	down := time.Now()
	bridgetest.Eventually(t, 10*time.Second, "the sink to report the outage", func() bool { return s.Healthy() != nil })
	select {
	case err := <-retried:
		if bridge.IsPermanent(err) {
			t.Fatalf("outage reported as permanent: %v", err)
		}
		t.Logf("first retryable failure: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the driver saw no failure while the server was down")
	}
	// Keep the server down for a few seconds: several reconnect attempts
	// and re-publish rounds fail in between.
	<-time.After(3*time.Second - time.Since(down))
	srv.Restart()

	r := <-res
	if r.err != nil {
		t.Fatalf("Drive: %v", r.err)
	}
	if r.st.Retries == 0 {
		t.Fatal("no re-publish round: the outage was not exercised")
	}
	t.Logf("publishes %d, re-publish rounds %d", r.st.Publishes, r.st.Retries)
	if s.Healthy() != nil {
		t.Errorf("Healthy after reconnect: %v", s.Healthy())
	}
	msgs := natstest.ReadStream(t, srv.JetStream(t), "AVISO", "")
	if len(msgs) != len(ns) {
		t.Fatalf("stream holds %d messages, want %d", len(msgs), len(ns))
	}
	for i, m := range msgs {
		if got := m.Headers().Get("Nats-Msg-Id"); got != ns[i].ID {
			t.Fatalf("stream message %d is %s, want %s (order broken)", i+1, got, ns[i].ID)
		}
	}
	for _, ev := range []string{"sink.nats.disconnected", "sink.nats.reconnected"} {
		if !strings.Contains(logs.String(), ev) {
			t.Errorf("log has no %s event", ev)
		}
	}
}

func streamMsgs(js jetstream.JetStream) uint64 {
	ctx, cancel := contextTimeout(2 * time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "AVISO")
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// After a reported retryable failure the sink refuses later publishes
// until every outstanding ack has been taken, then accepts again.
func TestJetStreamFailFastUntilDrained(t *testing.T) {
	srv := natstest.NewServer(t)
	avisoStream(t, srv)
	s := newJetStreamSink(t, srv, Config{Stream: "AVISO", PublishTimeout: time.Second}, nil)
	ns := bridgetest.Notifications(1, 10, bridgetest.EventType("mars"), bridgetest.DataSize(100))
	ctx := testCtx(t, 30*time.Second)

	srv.Shutdown()
	bridgetest.Eventually(t, 10*time.Second, "disconnect", func() bool { return s.Healthy() != nil })
	err := s.Publish(ctx, ns[0])
	if err == nil || bridge.IsPermanent(err) {
		t.Fatalf("Publish while disconnected = %v, want a retryable error", err)
	}
	srv.Restart()
	bridgetest.Eventually(t, 10*time.Second, "reconnect", func() bool { return s.Healthy() == nil })

	// Nothing outstanding: the failure above does not block.
	if err := s.Publish(ctx, ns[0]); err != nil {
		t.Fatalf("Publish after reconnect: %v", err)
	}
	if a := nextAck(t, s); a.Err != nil {
		t.Fatal(a.Err)
	}

	// Simulate a reported failure with one publish outstanding.
	if err := s.Publish(ctx, ns[1]); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.broken = true
	s.mu.Unlock()
	if err := s.Publish(ctx, ns[2]); !errors.Is(err, ErrEarlierFailed) {
		t.Fatalf("Publish with a failure reported and an ack outstanding = %v, want ErrEarlierFailed", err)
	}
	bridgetest.Eventually(t, 10*time.Second, "the ack on the channel", func() bool { return len(s.Acks()) == 1 })
	if err := s.Publish(ctx, ns[2]); !errors.Is(err, ErrEarlierFailed) {
		t.Fatalf("Publish with an ack not yet taken = %v, want ErrEarlierFailed", err)
	}
	nextAck(t, s)
	if err := s.Publish(ctx, ns[2]); err != nil {
		t.Fatalf("Publish after all acks were taken: %v", err)
	}
	nextAck(t, s)
}

func TestJetStreamStreamSetup(t *testing.T) {
	srv := natstest.NewServer(t)
	srv.CreateStream(t, jetstream.StreamConfig{Name: "SHORT", Subjects: []string{"short.>"}, Duplicates: 30 * time.Second})
	js := srv.JetStream(t)

	t.Run("create", func(t *testing.T) {
		newJetStreamSink(t, srv, Config{Stream: "NEW", StreamCreate: true, Subject: "new.{event_type}",
			DLQSubject: "newdlq.{event_type}", DeadLetters: true, ShutdownTimeout: time.Minute}, nil)
		st, err := js.Stream(testCtx(t, 5*time.Second), "NEW")
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.CachedInfo().Config
		if want := []string{"new.*", "newdlq.*"}; strings.Join(cfg.Subjects, ",") != strings.Join(want, ",") {
			t.Errorf("subjects %q, want %q", cfg.Subjects, want)
		}
		if cfg.Storage != jetstream.FileStorage {
			t.Errorf("storage %v, want file", cfg.Storage)
		}
		if want := 2 * (time.Second + time.Minute); cfg.Duplicates != want {
			t.Errorf("duplicate window %v, want %v", cfg.Duplicates, want)
		}
	})
	t.Run("existing stream kept, short window warned", func(t *testing.T) {
		var logs logBuffer
		newJetStreamSink(t, srv, Config{Stream: "SHORT", StreamCreate: true, Subject: "short.{event_type}"}, logs.logger())
		st, err := js.Stream(testCtx(t, 5*time.Second), "SHORT")
		if err != nil {
			t.Fatal(err)
		}
		if d := st.CachedInfo().Config.Duplicates; d != 30*time.Second {
			t.Errorf("duplicate window changed to %v", d)
		}
		if !strings.Contains(logs.String(), "sink.nats.duplicate_window_short") {
			t.Errorf("no duplicate window warning in %s", logs.String())
		}
	})
	t.Run("missing stream", func(t *testing.T) {
		_, err := NewJetStreamSink(testCtx(t, 10*time.Second), Config{ConnConfig: ConnConfig{URL: srv.URL}, Stream: "MISSING"}, Options{})
		mustContain(t, err, "Stream and StreamCreate: ", `stream "MISSING" not found`)
	})
}

// TestJetStreamTwoBridgesCreateStreams: two bridges with their own stream
// and subject on one server both start with the default
// BRIDGE_DLQ_SUBJECT; a created stream holds the DLQ subject only when
// dead letters are enabled, and an overlap names the variables to fix and
// the stream that holds the subject.
func TestJetStreamTwoBridgesCreateStreams(t *testing.T) {
	srv := natstest.NewServer(t)
	js := srv.JetStream(t)
	subjects := func(name string) string {
		t.Helper()
		st, err := js.Stream(testCtx(t, 5*time.Second), name)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(st.CachedInfo().Config.Subjects, ",")
	}

	a := newJetStreamSink(t, srv, Config{Stream: "MARS", StreamCreate: true, Subject: "mars.{event_type}"}, nil)
	b := newJetStreamSink(t, srv, Config{Stream: "VENUS", StreamCreate: true, Subject: "venus.{event_type}"}, nil)
	if got := subjects("MARS"); got != "mars.*" {
		t.Errorf("MARS subjects %q, want mars.* (no DLQ subject while dead letters are off)", got)
	}
	if got := subjects("VENUS"); got != "venus.*" {
		t.Errorf("VENUS subjects %q, want venus.*", got)
	}
	ctx := testCtx(t, 10*time.Second)
	for _, tt := range []struct {
		s    *JetStreamSink
		et   string
		name string
	}{{a, "mars", "MARS"}, {b, "venus", "VENUS"}} {
		if err := tt.s.Publish(ctx, bridgetest.Notifications(1, 1, bridgetest.EventType(tt.et), bridgetest.DataSize(50))[0]); err != nil {
			t.Fatalf("%s: Publish: %v", tt.name, err)
		}
		if ack := nextAck(t, tt.s); ack.Err != nil {
			t.Fatalf("%s: ack %v", tt.name, ack.Err)
		}
		if msgs := natstest.ReadStream(t, js, tt.name, ""); len(msgs) != 1 {
			t.Errorf("%s holds %d messages, want 1", tt.name, len(msgs))
		}
	}

	// With dead letters on, the first stream takes the DLQ subject and a
	// second one asking for the same DLQ subject is refused by the server:
	// the error says which subject, which stream, and what to set.
	newJetStreamSink(t, srv, Config{Stream: "DLQ1", StreamCreate: true, Subject: "d1.{event_type}", DeadLetters: true}, nil)
	if got := subjects("DLQ1"); got != "d1.*,aviso.dlq" {
		t.Errorf("DLQ1 subjects %q, want d1.*,aviso.dlq", got)
	}
	_, err := NewJetStreamSink(testCtx(t, 10*time.Second), Config{ConnConfig: ConnConfig{URL: srv.URL},
		Stream: "DLQ2", StreamCreate: true, Subject: "d2.{event_type}", DeadLetters: true}, Options{})
	mustContain(t, err, "StreamSubjects and DLQSubject and Stream: ", `stream "DLQ2"`, "overlap", `dead-letter subject "aviso.dlq" is included`,
		`"aviso.dlq" is captured by stream "DLQ1"`)
	if strings.Contains(err.Error(), `"d2.*" is captured`) {
		t.Errorf("error blames a subject no stream holds: %v", err)
	}
	_, err = NewJetStreamSink(testCtx(t, 10*time.Second), Config{ConnConfig: ConnConfig{URL: srv.URL},
		Stream: "MARS2", StreamCreate: true, Subject: "mars.{event_type}"}, Options{})
	mustContain(t, err, "StreamSubjects and DLQSubject and Stream: ", "dead letters are off", `"mars.*" is captured by stream "MARS"`)
}

func TestJetStreamDeadLetter(t *testing.T) {
	srv := natstest.NewServer(t)
	js := avisoStream(t, srv)
	s := newJetStreamSink(t, srv, Config{Stream: "AVISO", DLQSubject: "aviso.dlq.{event_type}"}, nil)
	n := bridgetest.Notifications(42, 1, bridgetest.EventType("mars"), bridgetest.DataSize(100))[0]
	ctx := testCtx(t, 10*time.Second)

	if err := s.DeadLetter(ctx, bridge.DeadLetter{Kind: bridge.DeadLetterRejected, Notification: n,
		Raw: n.CloudEvent, Reason: "too large"}); err != nil {
		t.Fatal(err)
	}
	raw := []byte(`{"id":"broken`)
	if err := s.DeadLetter(ctx, bridge.DeadLetter{Kind: bridge.DeadLetterMalformed, Raw: raw,
		Event: "live-notification", Reason: "unexpected end of JSON input"}); err != nil {
		t.Fatal(err)
	}
	msgs := natstest.ReadStream(t, js, "AVISO", "aviso.dlq.>")
	if len(msgs) != 2 {
		t.Fatalf("%d dead letters, want 2", len(msgs))
	}
	wantRejected := wantHeaders(n, FormatBinary, map[string]string{
		"Nats-Msg-Id": "dlq:mars@42", "Aviso-Bridge-Dlq-Kind": "rejected", "Aviso-Bridge-Dlq-Reason": "too large"})
	delete(wantRejected, "Content-Type")
	delete(wantRejected, "ce-datacontenttype")
	checkMsg(t, msgs[0], "aviso.dlq.mars", wantRejected, n.CloudEvent)
	checkMsg(t, msgs[1], "aviso.dlq._", natsgo.Header{
		"Aviso-Bridge-Dlq-Kind":   {"malformed"},
		"Aviso-Bridge-Dlq-Reason": {"unexpected end of JSON input"},
		"Aviso-Bridge-Dlq-Event":  {"live-notification"},
	}, raw)
}

func checkMsg(t *testing.T, m jetstream.Msg, subject string, h natsgo.Header, body []byte) {
	t.Helper()
	if m.Subject() != subject {
		t.Errorf("subject %q, want %q", m.Subject(), subject)
	}
	if !headersEqual(m.Headers(), h) {
		t.Errorf("headers\n got %v\nwant %v", m.Headers(), h)
	}
	if !bytes.Equal(m.Data(), body) {
		t.Errorf("body %q, want %q", m.Data(), body)
	}
}

// Forced reconnects while publishes are pending (the server stays up, so
// the client is back at once): the lost publishes are re-sent and nothing
// overtakes them.
func TestJetStreamForcedReconnectsKeepOrder(t *testing.T) {
	srv := natstest.NewServer(t)
	js := avisoStream(t, srv)
	s := newJetStreamSink(t, srv, Config{Stream: "AVISO", PublishTimeout: 2 * time.Second}, nil)
	ns := bridgetest.Notifications(1, 20000, bridgetest.EventType("mars"), bridgetest.DataSize(300))

	res := make(chan error, 1)
	var st bridgetest.DriveStats
	go func() {
		var err error
		st, err = bridgetest.Drive(testCtx(t, 60*time.Second), s, ns, bridgetest.DriveConfig{Window: 256, Backoff: 10 * time.Millisecond})
		res <- err
	}()
	for _, at := range []uint64{2000, 6000, 10000, 14000} {
		bridgetest.Eventually(t, 30*time.Second, fmt.Sprintf("%d stored", at), func() bool { return streamMsgs(js) >= at })
		if err := s.Conn().ForceReconnect(); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-res; err != nil {
		t.Fatalf("Drive: %v", err)
	}
	t.Logf("publishes %d, re-publish rounds %d", st.Publishes, st.Retries)
	if st.Retries == 0 {
		t.Fatal("no re-publish round: the reconnects hit no pending publish")
	}
	msgs := natstest.ReadStream(t, js, "AVISO", "")
	if len(msgs) != len(ns) {
		t.Fatalf("stream holds %d messages, want %d", len(msgs), len(ns))
	}
	for i, m := range msgs {
		if got := m.Headers().Get("Nats-Msg-Id"); got != ns[i].ID {
			t.Fatalf("stream message %d is %s, want %s", i+1, got, ns[i].ID)
		}
	}
}

// A reconnect while a publish is pending stops later publishes until the
// pending one is resolved and taken, even before nats.go reports it.
func TestJetStreamReconnectWithPendingRefuses(t *testing.T) {
	srv := natstest.NewServer(t)
	avisoStream(t, srv)
	s := newJetStreamSink(t, srv, Config{Stream: "AVISO"}, nil)
	ctx := testCtx(t, 20*time.Second)
	ns := bridgetest.Notifications(1, 2, bridgetest.EventType("mars"), bridgetest.DataSize(100))

	// A pending publish nats.go knows nothing about (so nothing resolves
	// it behind the test's back).
	fake := &natsgo.Msg{Subject: "aviso.mars"}
	s.slots <- struct{}{}
	s.mu.Lock()
	e := &s.ring[s.tail&s.mask]
	e.seq, e.id, e.subj, e.live, e.msg = 99, "mars@99", "aviso.mars", true, fake
	s.tail++
	s.lastEpoch = reconnects(s.nc)
	s.mu.Unlock()

	before := reconnects(s.nc)
	if err := s.Conn().ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	bridgetest.Eventually(t, 10*time.Second, "reconnect", func() bool { return reconnects(s.nc) != before && s.Healthy() == nil })
	if err := s.Publish(ctx, ns[0]); !errors.Is(err, ErrReconnected) || bridge.IsPermanent(err) {
		t.Fatalf("Publish after a reconnect with a publish pending = %v, want a retryable ErrReconnected", err)
	}
	s.resolve(fake, natsgo.ErrDisconnected)
	if a := nextAck(t, s); a.ID != "mars@99" || a.Err == nil {
		t.Fatalf("ack = %+v", a)
	}
	for _, n := range ns {
		if err := s.Publish(ctx, n); err != nil {
			t.Fatalf("Publish once the pending ack was taken: %v", err)
		}
		if a := nextAck(t, s); a.Err != nil {
			t.Fatal(a.Err)
		}
	}
}
