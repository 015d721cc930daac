package nats

import (
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

func jsMessages(msgs []jetstream.Msg) []bridgetest.Message {
	out := make([]bridgetest.Message, len(msgs))
	for i, m := range msgs {
		out[i] = bridgetest.Message{Body: m.Data(), Headers: firstValues(m.Headers())}
	}
	return out
}

func firstValues(h natsgo.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		if len(v) > 0 {
			out[k] = v[0]
		}
	}
	return out
}

// The JetStream sink meets the bridge.Sink contract in both formats; a
// notification larger than the stream's max_msg_size is rejected
// permanently.
func TestJetStreamSinkSuite(t *testing.T) {
	for _, format := range []Format{FormatBinary, FormatStructured} {
		t.Run(string(format), func(t *testing.T) {
			bridgetest.SinkSuite(t, bridgetest.SinkSuiteConfig{
				Structured: format == FormatStructured,
				IDHeader:   "Nats-Msg-Id",
				Reject: func(seq uint64) *bridge.Notification {
					return bridgetest.Notification(seq, bridgetest.DataSize(16*1024))
				},
				New: func(t *testing.T) bridgetest.SinkUnderTest {
					srv := natstest.NewServer(t)
					js := avisoStream(t, srv, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 8 * 1024 })
					s := newJetStreamSink(t, srv, Config{Format: format, MaxInFlight: 64}, nil)
					return bridgetest.SinkUnderTest{
						Sink: s,
						Stored: func(t *testing.T) []bridgetest.Message {
							return jsMessages(natstest.ReadStream(t, js, "AVISO", "aviso.mars"))
						},
						DeadLettered: func(t *testing.T) []bridgetest.Message {
							return jsMessages(natstest.ReadStream(t, js, "AVISO", "aviso.dlq"))
						},
					}
				},
			})
		})
	}
}

// collector records the messages of a core NATS subscription.
type collector struct {
	mu   sync.Mutex
	msgs []bridgetest.Message
}

func (c *collector) add(m *natsgo.Msg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, bridgetest.Message{Body: m.Data, Headers: firstValues(m.Header)})
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// stored waits until the flush round trip of a fresh ping has passed the
// sink's messages (the subscriber's connection is flushed) and returns
// them.
func (c *collector) stored(nc *natsgo.Conn) func(t *testing.T) []bridgetest.Message {
	return func(t *testing.T) []bridgetest.Message {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		last := -1
		bridgetest.Eventually(t, 10*time.Second, "core NATS deliveries to settle", func() bool {
			n := c.count()
			settled := n == last
			last = n
			return settled
		})
		c.mu.Lock()
		defer c.mu.Unlock()
		return append([]bridgetest.Message(nil), c.msgs...)
	}
}

// The core NATS sink meets the bridge.Sink contract; a notification over
// the server's max_payload is rejected permanently.
func TestCoreSinkSuite(t *testing.T) {
	bridgetest.SinkSuite(t, bridgetest.SinkSuiteConfig{
		IDHeader: "Nats-Msg-Id",
		Reject: func(seq uint64) *bridge.Notification {
			return bridgetest.Notification(seq, bridgetest.DataSize(16*1024))
		},
		New: func(t *testing.T) bridgetest.SinkUnderTest {
			srv := natstest.NewServer(t, natstest.WithMaxPayload(8*1024))
			nc := srv.Conn(t)
			var main, dlq collector
			for subj, c := range map[string]*collector{"aviso.mars": &main, "aviso.dlq": &dlq} {
				if _, err := nc.Subscribe(subj, c.add); err != nil {
					t.Fatal(err)
				}
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			s := newCoreSink(t, srv, Config{Mode: ModeCore, MaxInFlight: 64})
			return bridgetest.SinkUnderTest{Sink: s, Stored: main.stored(nc), DeadLettered: dlq.stored(nc)}
		},
	})
}
