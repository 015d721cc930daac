//go:build unix

package e2ebench

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) this process has used so far:
// bridge, servers and brokers together, since they share the process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
