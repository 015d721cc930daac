package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Build compiles ./cmd/aviso-bridge of the module whose root is moduleRoot
// into dir and returns the binary's path. Call it once from TestMain.
func Build(moduleRoot, dir string) (string, error) {
	bin := filepath.Join(dir, "aviso-bridge")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/aviso-bridge")
	cmd.Dir = moduleRoot
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/aviso-bridge: %w", err)
	}
	return bin, nil
}

// Main builds the binary into a temporary directory, runs the tests with
// run, removes the directory, and returns the exit code for os.Exit. bin is
// set to the binary's path before run is called.
func Main(moduleRoot string, bin *string, run func() int) int {
	dir, err := os.MkdirTemp("", "aviso-bridge-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	*bin, err = Build(moduleRoot, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		return 1
	}
	return run()
}
