//go:build unix

package e2ebench

import (
	"os"
	"runtime"
	"syscall"
)

// peakRSS returns ru_maxrss of a reaped child in bytes (kilobytes on Linux
// and the BSDs, bytes on macOS).
func peakRSS(ps *os.ProcessState) int64 {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" {
		return int64(ru.Maxrss)
	}
	return int64(ru.Maxrss) * 1024
}
