package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// SeqOfID splits a CloudEvent id "<event_type>@<sequence>" and fails the
// test unless the event type is eventType.
func SeqOfID(t testing.TB, eventType, id string) uint64 {
	t.Helper()
	i := strings.LastIndexByte(id, '@')
	if i < 0 || id[:i] != eventType {
		t.Fatalf("id %q is not %s@<sequence>", id, eventType)
	}
	s, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil {
		t.Fatalf("id %q: %v", id, err)
	}
	return s
}

// Tally is what a sink read back holds compared with what was published.
type Tally struct {
	Records    int      // messages read back
	Missing    []uint64 // published, never read back
	Duplicates int      // messages whose id was read back before
	Unexpected []uint64 // read back, never published
	// OutOfOrder lists first occurrences that are not above the previous
	// first occurrence (order is judged on first deliveries: a re-send after
	// a crash repeats an earlier id by design).
	OutOfOrder []string
	// MaxRun is the longest run of consecutive duplicate records.
	MaxRun int
}

func (tl Tally) String() string {
	return fmt.Sprintf("records=%d missing=%d duplicates=%d unexpected=%d out_of_order=%d max_duplicate_run=%d",
		tl.Records, len(tl.Missing), tl.Duplicates, len(tl.Unexpected), len(tl.OutOfOrder), tl.MaxRun)
}

// Count compares the sequences read back from a sink (got, in storage
// order) with those published (want).
func Count(got, want []uint64) Tally {
	tl := Tally{Records: len(got)}
	published := make(map[uint64]bool, len(want))
	for _, s := range want {
		published[s] = true
	}
	seen := make(map[uint64]bool, len(got))
	var last uint64
	run := 0
	for i, s := range got {
		if seen[s] {
			tl.Duplicates++
			run++
			tl.MaxRun = max(tl.MaxRun, run)
			continue
		}
		run = 0
		seen[s] = true
		if !published[s] {
			tl.Unexpected = append(tl.Unexpected, s)
		}
		if s <= last && len(tl.OutOfOrder) < 20 {
			tl.OutOfOrder = append(tl.OutOfOrder, fmt.Sprintf("record %d: sequence %d after %d", i, s, last))
		}
		last = max(last, s)
	}
	for _, s := range want {
		if !seen[s] {
			tl.Missing = append(tl.Missing, s)
		}
	}
	return tl
}

// RequireComplete fails unless got holds every sequence of want, in order,
// nothing else, and at most maxDup duplicates.
func RequireComplete(t testing.TB, what string, got, want []uint64, maxDup int) Tally {
	t.Helper()
	tl := Count(got, want)
	t.Logf("%s: %v", what, tl)
	if len(tl.Missing) > 0 {
		t.Errorf("%s: %d of %d published notifications missing, first %v", what, len(tl.Missing), len(want), tl.Missing[:min(10, len(tl.Missing))])
	}
	if len(tl.OutOfOrder) > 0 {
		t.Errorf("%s: order broken: %v", what, tl.OutOfOrder)
	}
	if len(tl.Unexpected) > 0 {
		t.Errorf("%s: sequences never published: %v", what, tl.Unexpected[:min(10, len(tl.Unexpected))])
	}
	if tl.Duplicates > maxDup {
		t.Errorf("%s: %d duplicates, want at most %d", what, tl.Duplicates, maxDup)
	}
	return tl
}

// SeqRange returns first, first+1, ..., last.
func SeqRange(first, last uint64) []uint64 {
	out := make([]uint64, 0, last-first+1)
	for s := first; s <= last; s++ {
		out = append(out, s)
	}
	return out
}

// Without returns seqs minus drop.
func Without(seqs []uint64, drop ...uint64) []uint64 {
	return slices.DeleteFunc(slices.Clone(seqs), func(s uint64) bool { return slices.Contains(drop, s) })
}

// CheckpointSeq reads the committed sequence of the only key in a checkpoint
// file (false when the file or the key is not there yet).
func CheckpointSeq(t testing.TB, path string) (uint64, bool) {
	t.Helper()
	b, err := readFileIfExists(path)
	if err != nil || b == nil {
		return 0, false
	}
	var doc struct {
		Checkpoints map[string]struct {
			Seq *uint64 `json:"last_committed_sequence"`
		} `json:"checkpoints"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("checkpoint file %s: %v\n%s", path, err, b)
	}
	if len(doc.Checkpoints) > 1 {
		t.Fatalf("checkpoint file %s holds %d keys, want 1", path, len(doc.Checkpoints))
	}
	for _, c := range doc.Checkpoints {
		if c.Seq != nil {
			return *c.Seq, true
		}
	}
	return 0, false
}

// readFileIfExists returns nil, nil when path does not exist.
func readFileIfExists(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}
