//go:build !unix

package e2ebench

import "time"

// processCPU is unknown here.
func processCPU() time.Duration { return 0 }
