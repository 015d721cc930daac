// Package checkpoint holds the bridge.Store implementations that need no
// client library: File (CHECKPOINT_STORE=file, the default) and Memory
// (CHECKPOINT_STORE=none, and tests). Stores backed by NATS KV or Kafka live
// beside their client packages.
//
// Data flow: the bridge pipeline commits the acknowledged watermark here
// (bridge.Pipeline -> Store.Commit); the supervisor loads it at start-up to
// resume from the next sequence.
package checkpoint
