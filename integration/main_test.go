// Package integration runs the built aviso-bridge binary as a subprocess
// against real servers in process: avisotest (aviso-server), an embedded
// nats-server with JetStream (file storage) and kfake (Kafka). Every check
// reads the sink back message by message, so the guarantees of
// interface.md section 6 are proved on the artefact operators run, configured
// only through environment variables.
//
// Data flow under test: avisotest -> aviso-bridge (subprocess) -> JetStream /
// Kafka / stdout -> readers in this package.
//
// Long variants: AVISO_BRIDGE_LONG=1 (see README.md).
package integration

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/integration/harness"
)

// binary is the path of the aviso-bridge binary built by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	return harness.Main("..", &binary, m.Run)
}

// long reports whether the long variants were asked for (AVISO_BRIDGE_LONG=1).
func long() bool { return os.Getenv("AVISO_BRIDGE_LONG") == "1" }

// Shorthands for the harness (package integration/harness).
type (
	env       = harness.Env
	proc      = harness.Proc
	logRecord = harness.LogRecord
	tally     = harness.Tally
)

// startBridge starts the binary built by TestMain (see harness.Start).
func startBridge(t testing.TB, name, dir string, e env, args ...string) *proc {
	t.Helper()
	return harness.Start(t, binary, name, dir, e, args...)
}

func eventually(timeout time.Duration, cond func() bool) bool {
	return harness.Eventually(timeout, cond)
}
func freeAddr(t testing.TB) string { return harness.FreeAddr(t) }
func httpGet(ctx context.Context, addr, path string) (int, []byte, error) {
	return harness.HTTPGet(ctx, addr, path)
}
func count(got, want []uint64) tally { return harness.Count(got, want) }
func requireComplete(t testing.TB, what string, got, want []uint64, maxDup int) tally {
	t.Helper()
	return harness.RequireComplete(t, what, got, want, maxDup)
}
func seqRange(first, last uint64) []uint64           { return harness.SeqRange(first, last) }
func without(seqs []uint64, drop ...uint64) []uint64 { return harness.Without(seqs, drop...) }
func checkpointSeq(t testing.TB, path string) (uint64, bool) {
	t.Helper()
	return harness.CheckpointSeq(t, path)
}
