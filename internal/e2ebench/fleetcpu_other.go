//go:build !linux

package e2ebench

import "time"

// pidCPU is unknown outside Linux.
func pidCPU(int) (time.Duration, bool) { return 0, false }
