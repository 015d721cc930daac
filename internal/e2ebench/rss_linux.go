package e2ebench

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// vmHWM returns the peak resident set size (VmHWM of /proc/<pid>/status)
// of a running process in bytes, 0 when it cannot be read (the process has
// exited).
//
// Not the ru_maxrss of the reaped child: Go starts children with vfork,
// and Linux carries the parent's high-water mark over exec into the
// child's ru_maxrss, so a large benchmark process would be reported as the
// bridge's peak.
func vmHWM(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
