//go:build !unix

package e2ebench

import "os"

// peakRSS is unknown here.
func peakRSS(*os.ProcessState) int64 { return 0 }
