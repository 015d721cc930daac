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
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the path of the aviso-bridge binary built by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "aviso-bridge-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "aviso-bridge")
	build := exec.Command("go", "build", "-o", binary, "./cmd/aviso-bridge")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: go build ./cmd/aviso-bridge:", err)
		return 1
	}
	return m.Run()
}

// long reports whether the long variants were asked for (AVISO_BRIDGE_LONG=1).
func long() bool { return os.Getenv("AVISO_BRIDGE_LONG") == "1" }
