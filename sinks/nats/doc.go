// Package nats is the NATS end of aviso-bridge: the core NATS sink
// (SINK=nats), the JetStream sink (SINK=jetstream) and the NATS KV
// checkpoint store (CHECKPOINT_STORE=nats-kv).
//
// Data flow: ordered window (package bridge) -> Sink (this package) ->
// NATS server; the bridge's watermark -> KVStore (this package) -> NATS KV.
//
// Every notification becomes one message following the CloudEvents NATS
// binding (interface.md section 3): in binary mode the CloudEvent attributes
// travel as ce- headers and the body is the CloudEvent data exactly as
// received; in structured mode the body is the whole CloudEvent JSON as
// received. Nats-Msg-Id is always the CloudEvent id, so JetStream drops a
// re-send within the stream's duplicate window.
//
// Ordering across failures: both sinks publish with nats.go's reconnect
// buffer disabled (nothing is queued silently while disconnected), and once
// a retryable failure has been reported they refuse (retryably, without
// sending) every later Publish until the pipeline has received every
// outstanding acknowledgement and starts re-publishing from the failed
// notification. A reconnect while publishes are outstanding counts as such a
// failure. See docs/design/nats-sink.md for the reasoning.
//
// The package name shadows nats.go; this package imports nats.go as natsgo.
package nats
