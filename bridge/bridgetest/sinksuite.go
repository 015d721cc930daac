package bridgetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Message is one message as a sink stored it, read back from its
// destination.
type Message struct {
	// Body is the message body (a stdout line without its newline).
	Body []byte
	// Headers holds the first value of each header (nil when the
	// destination has none).
	Headers map[string]string
}

// SinkUnderTest is one fresh sink for SinkSuite, with the means to read
// back what it stored.
type SinkUnderTest struct {
	// Sink was built with a MaxInFlight of at least SinkSuiteConfig.Window
	// and publishes where Stored reads. The suite closes it.
	Sink bridge.Sink
	// Stored, when set, returns the messages the sink stored for
	// notifications, in the order stored.
	Stored func(t *testing.T) []Message
	// DeadLettered, when set, returns the messages stored by DeadLetter,
	// in the order stored.
	DeadLettered func(t *testing.T) []Message
}

// SinkSuiteConfig describes the sink SinkSuite checks.
type SinkSuiteConfig struct {
	// New returns a fresh sink (and destination) for one subtest.
	New func(t *testing.T) SinkUnderTest
	// Window is the MaxInFlight the sinks are built with (default 64).
	Window int
	// Structured says the body is the whole CloudEvent (structured mode,
	// stdout); otherwise it is the CloudEvent data member (binary mode).
	Structured bool
	// IDHeader is the header carrying the CloudEvent id ("ce-id", "ce_id";
	// empty: not checked).
	IDHeader string
	// Reject, when set, returns a notification of sequence seq that the
	// sink rejects permanently (too large, a topic or subject it may not
	// use).
	Reject func(seq uint64) *bridge.Notification
	// Timeout bounds each subtest (default 30s).
	Timeout time.Duration
}

// SinkSuite checks a bridge.Sink against the contract documented on
// bridge.Sink, in the manner of testing/fstest.TestFS: one Ack per
// accepted Publish, in publish order; Close flushes and leaves the Acks of
// everything published; a permanent rejection is a bridge.PermanentError;
// a dead letter is stored and acknowledged; what lands in the destination
// is, in order, the body the README's "What lands in the sink" table names
// for the mode, with the CloudEvent id in IDHeader.
func SinkSuite(t *testing.T, cfg SinkSuiteConfig) {
	t.Helper()
	if cfg.Window <= 0 {
		cfg.Window = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	s := suite{cfg: cfg}
	t.Run("AcksInPublishOrder", s.acksInOrder)
	t.Run("CloseFlushes", s.closeFlushes)
	t.Run("Content", s.content)
	t.Run("PermanentRejection", s.permanentRejection)
	t.Run("DeadLetter", s.deadLetter)
}

type suite struct{ cfg SinkSuiteConfig }

func (s suite) start(t *testing.T) (context.Context, SinkUnderTest) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	t.Cleanup(cancel)
	u := s.cfg.New(t)
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		_ = u.Sink.Close(cctx) // a second Close: the result is not checked here
	})
	return ctx, u
}

// acksInOrder drives several windows' worth of notifications and checks
// that no Ack is left over.
func (s suite) acksInOrder(t *testing.T) {
	ctx, u := s.start(t)
	ns := Notifications(1, 5*s.cfg.Window+3)
	st, err := Drive(ctx, u.Sink, ns, DriveConfig{Window: s.cfg.Window})
	if err != nil {
		t.Fatalf("Drive: %v", err)
	}
	if st.Acked != len(ns) {
		t.Fatalf("%d acknowledged, want %d", st.Acked, len(ns))
	}
	if err := u.Sink.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case a := <-u.Sink.Acks():
		t.Fatalf("an Ack more than publishes: %+v", a)
	default:
	}
	if u.Stored != nil {
		s.checkStored(t, u.Stored(t), ns)
	}
}

// closeFlushes publishes a window without reading Acks, closes, and
// requires every Ack to be queued and every notification stored.
func (s suite) closeFlushes(t *testing.T) {
	ctx, u := s.start(t)
	ns := Notifications(100, s.cfg.Window)
	for _, n := range ns {
		if err := u.Sink.Publish(ctx, n); err != nil {
			t.Fatalf("Publish %s: %v", n.ID, err)
		}
	}
	if err := u.Sink.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, n := range ns {
		select {
		case a := <-u.Sink.Acks():
			if a.ID != n.ID || a.Sequence != n.Sequence || a.Err != nil {
				t.Fatalf("ack %d after Close = %+v, want a success for %s", i, a, n.ID)
			}
		default:
			t.Fatalf("Close returned with %d of %d Acks queued", i, len(ns))
		}
	}
	if u.Stored != nil {
		s.checkStored(t, u.Stored(t), ns)
	}
}

// content checks the body and id header of notifications whose payloads
// vary in size and identifier.
func (s suite) content(t *testing.T) {
	if s.cfg.New == nil {
		t.Fatal("SinkSuiteConfig.New is nil")
	}
	ctx, u := s.start(t)
	if u.Stored == nil {
		t.Skip("no Stored read-back")
	}
	ns := []*bridge.Notification{
		Notification(1),
		Notification(2, DataSize(4000)),
		Notification(3, NoDataSchema(), Identifier(`{"step":12,"flag":true}`)),
	}
	if _, err := Drive(ctx, u.Sink, ns, DriveConfig{Window: s.cfg.Window}); err != nil {
		t.Fatalf("Drive: %v", err)
	}
	s.checkStored(t, u.Stored(t), ns)
}

func (s suite) checkStored(t *testing.T, got []Message, ns []*bridge.Notification) {
	t.Helper()
	if len(got) != len(ns) {
		t.Fatalf("destination holds %d messages, want %d", len(got), len(ns))
	}
	for i, n := range ns {
		want := []byte(n.Data)
		if s.cfg.Structured {
			want = n.CloudEvent
		}
		if !bytes.Equal(got[i].Body, want) {
			t.Fatalf("message %d body\n got %s\nwant %s", i, got[i].Body, want)
		}
		if h := s.cfg.IDHeader; h != "" && got[i].Headers[h] != n.ID {
			t.Fatalf("message %d header %s = %q, want %q", i, h, got[i].Headers[h], n.ID)
		}
	}
}

// permanentRejection publishes a notification the sink must reject and
// requires a PermanentError, from Publish or in its Ack.
func (s suite) permanentRejection(t *testing.T) {
	if s.cfg.Reject == nil {
		t.Skip("no Reject notification")
	}
	ctx, u := s.start(t)
	n := s.cfg.Reject(1)
	err := u.Sink.Publish(ctx, n)
	if err == nil {
		select {
		case a := <-u.Sink.Acks():
			if a.ID != n.ID {
				t.Fatalf("ack for %s, want %s", a.ID, n.ID)
			}
			err = a.Err
		case <-ctx.Done():
			t.Fatalf("no ack for %s", n.ID)
		}
	}
	if !bridge.IsPermanent(err) {
		t.Fatalf("rejection of %s = %v, want a *bridge.PermanentError", n.ID, err)
	}
	// The sink goes on: the next notification is stored.
	next := Notification(2)
	if _, err := Drive(ctx, u.Sink, []*bridge.Notification{next}, DriveConfig{}); err != nil {
		t.Fatalf("publish after a rejection: %v", err)
	}
}

// deadLetter stores a rejected notification and a malformed frame.
func (s suite) deadLetter(t *testing.T) {
	ctx, u := s.start(t)
	n := Notification(7)
	dls := []bridge.DeadLetter{
		{Kind: bridge.DeadLetterRejected, Notification: n, Raw: n.CloudEvent, Reason: "too large"},
		{Kind: bridge.DeadLetterMalformed, Raw: []byte(`{"id":"not json`), Event: "message", Reason: "bad frame"},
	}
	for _, dl := range dls {
		if err := u.Sink.DeadLetter(ctx, dl); err != nil {
			t.Fatalf("DeadLetter %s: %v", dl.Kind, err)
		}
	}
	if u.DeadLettered == nil {
		return
	}
	got := u.DeadLettered(t)
	if len(got) != len(dls) {
		t.Fatalf("dead-letter destination holds %d messages, want %d", len(got), len(dls))
	}
	for i, dl := range dls {
		if !bytes.Equal(got[i].Body, dl.Raw) {
			t.Fatalf("dead letter %d body %s, want %s", i, got[i].Body, dl.Raw)
		}
	}
}
