package nats

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// subscribe returns a channel of the messages on subj (a core
// subscription on its own connection).
func subscribe(t *testing.T, srv *natstest.Server, subj string) <-chan *natsgo.Msg {
	t.Helper()
	nc := srv.Conn(t)
	ch := make(chan *natsgo.Msg, 10000)
	if _, err := nc.ChanSubscribe(subj, ch); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

func receive(t *testing.T, ch <-chan *natsgo.Msg) *natsgo.Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
	}
	return nil
}

func TestCoreDeliversWithFlushAcks(t *testing.T) {
	srv := natstest.NewServer(t)
	tests := []struct {
		name   string
		format Format
	}{
		{"binary", FormatBinary},
		{"structured", FormatStructured},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := subscribe(t, srv, "core."+tt.name+".>")
			s := newCoreSink(t, srv, Config{Format: tt.format, Subject: "core." + tt.name + ".{event_type}.{identifier.date}"})
			ns := bridgetest.Notifications(1, 500, bridgetest.EventType("my.event"), bridgetest.DataSize(600))
			for i, a := range publishAll(t, s, ns) {
				if a.Err != nil || a.ID != ns[i].ID {
					t.Fatalf("ack %d = %+v", i, a)
				}
			}
			for i, n := range ns {
				m := receive(t, sub)
				if want := "core." + tt.name + ".my%2Eevent.20260304"; m.Subject != want {
					t.Fatalf("message %d subject %q, want %q", i, m.Subject, want)
				}
				if want := wantHeaders(n, tt.format, nil); !headersEqual(m.Header, want) {
					t.Fatalf("message %d headers\n got %v\nwant %v", i, m.Header, want)
				}
				body := []byte(n.Data)
				if tt.format == FormatStructured {
					body = n.CloudEvent
				}
				if !bytes.Equal(m.Data, body) {
					t.Fatalf("message %d body %s, want %s", i, m.Data, body)
				}
			}
		})
	}
}

func TestCoreOutage(t *testing.T) {
	srv := natstest.NewServer(t)
	s := newCoreSink(t, srv, Config{PublishTimeout: time.Second})
	ns := bridgetest.Notifications(1, 3, bridgetest.EventType("mars"), bridgetest.DataSize(100))
	ctx := testCtx(t, 30*time.Second)
	publishAll(t, s, ns[:1])

	srv.Shutdown()
	bridgetest.Eventually(t, 10*time.Second, "disconnect", func() bool { return s.Healthy() != nil })
	err := s.Publish(ctx, ns[1])
	if err == nil || bridge.IsPermanent(err) {
		t.Fatalf("Publish while disconnected = %v, want a retryable error", err)
	}
	srv.Restart()
	bridgetest.Eventually(t, 10*time.Second, "reconnect", func() bool { return s.Healthy() == nil })
	sub := subscribe(t, srv, "aviso.>")
	publishAll(t, s, ns[1:])
	for _, n := range ns[1:] {
		if m := receive(t, sub); m.Header.Get("Nats-Msg-Id") != n.ID {
			t.Fatalf("got %s, want %s", m.Header.Get("Nats-Msg-Id"), n.ID)
		}
	}
}

func TestCorePermanentErrors(t *testing.T) {
	srv := natstest.NewServer(t, natstest.WithMaxPayload(4096), natstest.WithOptions(func(o *server.Options) {
		o.Users = []*server.User{{Username: "bridge", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"aviso.secret"}},
		}}}
	}))
	cfg := Config{ConnConfig: ConnConfig{User: "bridge", Password: "pw"}}
	s := newCoreSink(t, srv, cfg)
	ctx := testCtx(t, 10*time.Second)

	big := bridgetest.Notifications(1, 1, bridgetest.EventType("mars"), bridgetest.DataSize(8000))[0]
	err := s.Publish(ctx, big)
	if !bridge.IsPermanent(err) {
		t.Fatalf("Publish over max_payload = %v, want permanent", err)
	}
	mustContain(t, err, big.ID, `"aviso.mars"`, "maximum payload")

	ns := bridgetest.Notifications(2, 1, bridgetest.EventType("secret"), bridgetest.DataSize(100))
	ns = append(ns, bridgetest.Notifications(3, 1, bridgetest.EventType("mars"), bridgetest.DataSize(100))...)
	acks := publishAll(t, s, ns)
	if !bridge.IsPermanent(acks[0].Err) {
		t.Fatalf("ack of a publish without permission = %v, want permanent", acks[0].Err)
	}
	mustContain(t, acks[0].Err, `"aviso.secret"`, "ermissions")
	// The other publish may be asked to go again (only the last violation
	// is visible); it must not be reported stored and refused both.
	if acks[1].Err != nil && bridge.IsPermanent(acks[1].Err) {
		t.Fatalf("ack of a permitted publish = %v", acks[1].Err)
	}
}

func TestCoreDeadLetter(t *testing.T) {
	srv := natstest.NewServer(t)
	sub := subscribe(t, srv, "aviso.dlq")
	s := newCoreSink(t, srv, Config{})
	n := bridgetest.Notifications(42, 1, bridgetest.EventType("mars"), bridgetest.DataSize(100))[0]
	if err := s.DeadLetter(testCtx(t, 10*time.Second), bridge.DeadLetter{Kind: bridge.DeadLetterRejected,
		Notification: n, Raw: n.CloudEvent, Reason: "rejected\nbecause"}); err != nil {
		t.Fatal(err)
	}
	m := receive(t, sub)
	want := wantHeaders(n, FormatBinary, map[string]string{
		"Nats-Msg-Id": "dlq:mars@42", "Aviso-Bridge-Dlq-Kind": "rejected", "Aviso-Bridge-Dlq-Reason": "rejected because"})
	delete(want, "Content-Type")
	delete(want, "ce-datacontenttype")
	if !headersEqual(m.Header, want) {
		t.Errorf("headers\n got %v\nwant %v", m.Header, want)
	}
	if !bytes.Equal(m.Data, n.CloudEvent) {
		t.Errorf("body %s, want %s", m.Data, n.CloudEvent)
	}
}

// Forced reconnects of the core sink's connection: every notification
// reaches the subscriber, and the first delivery of each comes in order
// (re-sends after a reconnect may repeat some).
func TestCoreForcedReconnectsKeepOrder(t *testing.T) {
	srv := natstest.NewServer(t)
	sub := subscribe(t, srv, "aviso.>")
	s := newCoreSink(t, srv, Config{PublishTimeout: 2 * time.Second})
	ns := bridgetest.Notifications(1, 8000, bridgetest.EventType("mars"), bridgetest.DataSize(300))

	res := make(chan error, 1)
	var st bridgetest.DriveStats
	go func() {
		var err error
		st, err = bridgetest.Drive(testCtx(t, 60*time.Second), s, ns, bridgetest.DriveConfig{Window: 256, Backoff: 10 * time.Millisecond})
		res <- err
	}()
	next := 0 // index of the next first delivery expected
	seen := map[string]bool{}
	forced := 0
	for next < len(ns) {
		m := receive(t, sub)
		id := m.Header.Get("Nats-Msg-Id")
		if seen[id] {
			continue
		}
		if id != ns[next].ID {
			t.Fatalf("first delivery of %s while %s is missing", id, ns[next].ID)
		}
		seen[id] = true
		next++
		if next%1000 == 0 && forced < 3 {
			forced++
			if err := s.Conn().ForceReconnect(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := <-res; err != nil {
		t.Fatalf("Drive: %v", err)
	}
	t.Logf("publishes %d, re-publish rounds %d", st.Publishes, st.Retries)
	if st.Retries == 0 {
		t.Fatal("no re-publish round: the reconnects hit no pending publish")
	}
}

// A flush issued while reconnecting is queued by nats.go and answered over
// the new connection, but messages written to the old one may be gone: such
// a flush must not acknowledge them.
func TestCoreFlushAcrossReconnectIsNoAck(t *testing.T) {
	srv := natstest.NewServer(t)
	s := newCoreSink(t, srv, Config{PublishTimeout: 20 * time.Second})
	srv.Shutdown()
	bridgetest.Eventually(t, 10*time.Second, "disconnect", func() bool { return s.Healthy() != nil })

	// As if published just before the connection dropped.
	s.mu.Lock()
	s.batch = append(s.batch, corePending{seq: 1, id: "mars@1", subj: "aviso.mars", epoch: reconnects(s.nc)})
	s.outstanding++
	s.lastEpoch = reconnects(s.nc)
	s.mu.Unlock()
	s.kick <- struct{}{}
	srv.Restart()

	a := nextAck(t, s)
	if !errors.Is(a.Err, ErrReconnected) || bridge.IsPermanent(a.Err) {
		t.Fatalf("ack = %v, want a retryable ErrReconnected", a.Err)
	}
}
