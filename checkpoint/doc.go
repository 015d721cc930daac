// Package checkpoint holds the bridge.Store implementations that need no
// client library: File (CHECKPOINT_STORE=file, the default) and Memory
// (CHECKPOINT_STORE=none, and tests). The stores that several bridges can
// reach live in checkpoint/natskv and checkpoint/kafkatopic and hold their
// key with checkpoint/lease (docs/checkpoint.md).
//
// Data flow: the bridge pipeline commits the acknowledged watermark here
// (bridge.Pipeline -> Store.Commit); the supervisor loads it at start-up to
// resume from the next sequence.
package checkpoint
