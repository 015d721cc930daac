// Package nats is the NATS end of aviso-bridge: the core NATS sink
// (SINK=nats), the JetStream sink (SINK=jetstream) and the connection they
// share with the NATS KV checkpoint store (package checkpoint/natskv).
//
// Data flow: ordered window (package bridge) -> Sink (this package) ->
// NATS server.
//
// Every notification becomes one message following the CloudEvents NATS
// binding (README, "What lands in the sink"): in binary mode the CloudEvent attributes
// travel as ce- headers and the body is the CloudEvent data exactly as
// received; in structured mode the body is the whole CloudEvent JSON as
// received. Nats-Msg-Id is always the CloudEvent id, so JetStream drops a
// re-send within the stream's duplicate window.
//
// Ordering across failures. The stored order must stay the receipt order
// although the pipeline re-publishes from a failed notification on:
//   - both sinks connect with nats.go's reconnect buffer disabled
//     (ReconnectBufSize -1), so a publish while disconnected fails at once
//     instead of being queued and sent after later ones;
//   - on a disconnect nats.go fails every pending JetStream publish
//     (ErrDisconnected) and drops what it had not written yet; a core flush
//     issued while reconnecting is answered over the new connection, so a
//     flush only acknowledges messages when the reconnect count did not
//     change since they were written;
//   - once a retryable failure has been reported, Publish refuses
//     (retryably, without sending) until every outstanding Ack has been
//     taken from Acks; a reconnect while publishes are outstanding counts
//     as such a failure, since the new connection could otherwise carry a
//     later notification before the lost ones are re-sent;
//   - JetStream's own no-responders retry (which would re-send a message
//     after later ones) is off; the sink asks the server whether a stream
//     captures the subject and reports "no stream" as permanent and
//     anything else as retryable.
//
// Dead letters (BRIDGE_ON_REJECT=dlq) carry the rejected notification's
// ce- headers, Aviso-Bridge-Dlq-Kind/Reason (and -Event for a malformed
// frame) and, as body, the CloudEvent JSON. A dead letter that would exceed
// the server's max_payload, or that the stream refuses for its size, is
// published with its headers only plus Aviso-Bridge-Dlq-Body-Omitted: the
// body's size in bytes (warning sink.nats.deadletter.body_omitted), so that
// a notification rejected for its size can still be dead-lettered.
//
// The package name shadows nats.go; this package imports nats.go as natsgo.
package nats

import "github.com/aviso-bridge/aviso-bridge/bridge"

var (
	_ bridge.Sink           = (*JetStreamSink)(nil)
	_ bridge.Sink           = (*CoreSink)(nil)
	_ bridge.HealthReporter = (*JetStreamSink)(nil)
	_ bridge.HealthReporter = (*CoreSink)(nil)
)
