package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

const testKey = "46fe3e30937478ae30527c74cb2f03a5e5419228a11051cdaccefe7d044b21c3"

func openFile(t *testing.T, path, key string) *File {
	t.Helper()
	f, err := OpenFile(path, key)
	if err != nil {
		t.Fatalf("OpenFile(%s): %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func mustLoad(t *testing.T, s bridge.Store) (bridge.Checkpoint, bool) {
	t.Helper()
	cp, found, err := s.Load(context.Background())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cp, found
}

func cpAt(seq uint64) bridge.Checkpoint {
	return bridge.Checkpoint{Sequence: seq, EventID: bridge.EventID("mars", seq), UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func TestFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "checkpoint.json") // parents created
	f := openFile(t, path, testKey)
	if _, found := mustLoad(t, f); found {
		t.Fatal("new store: found a checkpoint")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file created before the first commit: %v", err)
	}
	if err := f.Commit(context.Background(), cpAt(42)); err != nil {
		t.Fatal(err)
	}
	if cp, found := mustLoad(t, f); !found || cp != cpAt(42) {
		t.Fatalf("Load after commit = %+v, %v", cp, found)
	}
	f.Close()

	g := openFile(t, path, testKey)
	cp, found := mustLoad(t, g)
	if !found || cp.Sequence != 42 || cp.EventID != "mars@42" || !cp.UpdatedAt.Equal(cpAt(42).UpdatedAt) {
		t.Fatalf("reopened: %+v, %v", cp, found)
	}

	// The format is the aviso client's, plus updated_at.
	var doc map[string]any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["version"] != float64(1) || doc["key_format_version"] != float64(2) {
		t.Fatalf("versions: %s", b)
	}
	e := doc["checkpoints"].(map[string]any)[testKey].(map[string]any)
	if e["last_committed_sequence"] != float64(42) || e["last_event_id"] != "mars@42" || e["updated_at"] != "2026-01-02T03:04:05Z" {
		t.Fatalf("entry: %s", b)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func TestFileMonotonic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.json")
	f := openFile(t, path, testKey)
	ctx := context.Background()
	for _, c := range []struct {
		commit, want uint64
	}{{10, 10}, {5, 10}, {10, 10}, {11, 11}, {0, 11}, {1000, 1000}} {
		if err := f.Commit(ctx, cpAt(c.commit)); err != nil {
			t.Fatal(err)
		}
		if cp, _ := mustLoad(t, f); cp.Sequence != c.want {
			t.Fatalf("after commit %d: %d, want %d", c.commit, cp.Sequence, c.want)
		}
	}
	f.Close()
	g := openFile(t, path, testKey)
	if cp, _ := mustLoad(t, g); cp.Sequence != 1000 {
		t.Fatalf("on disk: %d", cp.Sequence)
	}
}

func TestFileKeepsOtherKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.json")
	other := `{"last_committed_sequence":7,"last_event_id":"diss@7","extra":"kept"}`
	if err := os.WriteFile(path, []byte(`{"version":1,"key_format_version":2,"checkpoints":{"other":`+other+`}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	f := openFile(t, path, testKey)
	if _, found := mustLoad(t, f); found {
		t.Fatal("found a checkpoint for a key not in the file")
	}
	if err := f.Commit(context.Background(), cpAt(3)); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Checkpoints map[string]map[string]any
	}
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if o := doc.Checkpoints["other"]; o["last_committed_sequence"] != float64(7) || o["extra"] != "kept" {
		t.Fatalf("other key lost: %s", b)
	}
	if doc.Checkpoints[testKey]["last_committed_sequence"] != float64(3) {
		t.Fatalf("own key: %s", b)
	}
}

func TestFileSecondOpenerFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.json")
	f := openFile(t, path, testKey)
	_, err := OpenFile(path, testKey)
	if !errors.Is(err, bridge.ErrKeyHeld) {
		t.Fatalf("second OpenFile(%s): %v, want ErrKeyHeld", testKey, err)
	}
	if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, testKey) || !strings.Contains(msg, "held by another bridge") {
		t.Fatalf("error does not name file and key: %q", msg)
	}
	// The first holder is unaffected and releasing the lock lets the next in.
	if err := f.Commit(context.Background(), cpAt(1)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	g := openFile(t, path, testKey)
	if cp, _ := mustLoad(t, g); cp.Sequence != 1 {
		t.Fatalf("got %d", cp.Sequence)
	}
}

// Stores of different keys share one file (several listeners, several
// processes on one host): each commit keeps the other keys' entries, also
// those committed after the store was opened.
func TestFileKeysShareTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.json")
	ctx := context.Background()
	a, b := openFile(t, path, "key-a"), openFile(t, path, "key-b")
	for seq := uint64(1); seq <= 3; seq++ {
		if err := a.Commit(ctx, cpAt(seq)); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(ctx, cpAt(seq*10)); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	b.Close()
	for key, want := range map[string]uint64{"key-a": 3, "key-b": 30} {
		if cp, found := mustLoad(t, openFile(t, path, key)); !found || cp.Sequence != want {
			t.Errorf("%s: %d, %v; want %d", key, cp.Sequence, found, want)
		}
	}
}

func TestFileCorrupt(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"bad JSON", `{"version":1,"checkpoints":{`, "corrupt"},
		{"empty file", ``, "corrupt"},
		{"not an object", `[1,2]`, "corrupt"},
		{"no version", `{"checkpoints":{}}`, "version"},
		{"wrong version", `{"version":2,"checkpoints":{}}`, "unsupported file version 2"},
		{"wrong key format", `{"version":1,"key_format_version":1,"checkpoints":{}}`, "key_format_version 1"},
		{"entry not an object", `{"version":1,"checkpoints":{"` + testKey + `":"x"}}`, testKey},
		{"entry without sequence", `{"version":1,"checkpoints":{"` + testKey + `":{"last_event_id":"mars@1"}}}`, "last_committed_sequence"},
		{"negative sequence", `{"version":1,"checkpoints":{"` + testKey + `":{"last_committed_sequence":-1}}}`, "corrupt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cp.json")
			if err := os.WriteFile(path, []byte(tt.body), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := OpenFile(path, testKey)
			if err == nil {
				f.Close()
				t.Fatal("OpenFile succeeded on a corrupt file")
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, tt.want) {
				t.Fatalf("error %q does not name the path and %q", msg, tt.want)
			}
			// The lock is released after a failed open.
			if err := os.WriteFile(path, []byte(`{"version":1,"checkpoints":{}}`), 0o644); err != nil {
				t.Fatal(err)
			}
			openFile(t, path, testKey)
		})
	}
}

func TestFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.json")
	if err := os.Mkdir(path, 0o755); err != nil { // a directory where the file should be
		t.Fatal(err)
	}
	_, err := OpenFile(path, testKey)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("OpenFile on a directory: %v", err)
	}
}

// A crash between writing the temp file and renaming it leaves the temp
// file behind; the last good state must survive and the temp file go.
func TestFileCrashBeforeRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.json")
	f := openFile(t, path, testKey)
	ctx := context.Background()
	if err := f.Commit(ctx, cpAt(5)); err != nil {
		t.Fatal(err)
	}
	crash := errors.New("crash")
	f.hook = func(stage string) error {
		if stage == "before-rename" {
			return crash
		}
		return nil
	}
	if err := f.Commit(ctx, cpAt(9)); !errors.Is(err, crash) {
		t.Fatalf("commit with crash hook: %v", err)
	}
	if cp, _ := mustLoad(t, f); cp.Sequence != 5 {
		t.Fatalf("in-memory state moved to %d on a failed commit", cp.Sequence)
	}
	// A real crash leaves the written temp file; put one back as the crash
	// would have (the hook path removed its own), plus a truncated one.
	for i, body := range []string{`{"version":1,"checkpoints":{"` + testKey + `":{"last_committed_sequence":9}}}`, `{"vers`} {
		name := filepath.Join(dir, "cp.json.tmp-crash"+string(rune('a'+i)))
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f.Close() // the process dies: the kernel drops the lock

	g := openFile(t, path, testKey)
	if cp, found := mustLoad(t, g); !found || cp.Sequence != 5 {
		t.Fatalf("after crash: %+v %v, want the last good state 5", cp, found)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "cp.json.tmp-*"))
	if len(left) != 0 {
		t.Fatalf("stale temp files kept: %v", left)
	}
	if err := g.Commit(ctx, cpAt(9)); err != nil {
		t.Fatal(err)
	}
	if cp, _ := mustLoad(t, g); cp.Sequence != 9 {
		t.Fatalf("commit after recovery: %d", cp.Sequence)
	}
}

func TestFileFsyncFailureKeepsState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.json")
	f := openFile(t, path, testKey)
	ctx := context.Background()
	if err := f.Commit(ctx, cpAt(1)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("EIO")
	f.syncFn = func(*os.File) error { return boom }
	if err := f.Commit(ctx, cpAt(2)); !errors.Is(err, boom) || !strings.Contains(err.Error(), path) {
		t.Fatalf("commit with failing fsync: %v", err)
	}
	f.syncFn = (*os.File).Sync
	if cp, _ := mustLoad(t, f); cp.Sequence != 1 {
		t.Fatalf("state after failed commit: %d", cp.Sequence)
	}
	if err := f.Commit(ctx, cpAt(2)); err != nil { // the retry works
		t.Fatal(err)
	}
	left, _ := filepath.Glob(path + ".tmp-*")
	if len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

func TestFileClosed(t *testing.T) {
	f := openFile(t, filepath.Join(t.TempDir(), "cp.json"), testKey)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := f.Commit(context.Background(), cpAt(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close: %v", err)
	}
	if _, _, err := f.Load(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Load after Close: %v", err)
	}
}

func TestFileOpenErrors(t *testing.T) {
	if _, err := OpenFile("", testKey); err == nil || !strings.Contains(err.Error(), "checkpoint file path") {
		t.Fatalf("empty path: %v", err)
	}
	if _, err := OpenFile(filepath.Join(t.TempDir(), "cp.json"), ""); err == nil || !strings.Contains(err.Error(), "checkpoint key") {
		t.Fatalf("empty key: %v", err)
	}
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(blocker, "sub", "cp.json") // parent is a file
	if _, err := OpenFile(p, testKey); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("uncreatable directory: %v", err)
	}
}

// The lock holds through symbolic links: a store opened through a link
// (to the file, to its directory, or dangling to a file not created yet)
// and one opened through the real path conflict, in either order; a
// commit through the link replaces the target and keeps the link.
func TestFileLockThroughSymlinks(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the path through links and the target path.
		setup func(t *testing.T, dir string) (link, target string)
	}{
		{"link to the file", func(t *testing.T, dir string) (string, string) {
			target := filepath.Join(dir, "cp.json")
			if err := os.WriteFile(target, []byte(`{"version":1,"checkpoints":{}}`), 0o644); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(dir, "link.json")
			mustSymlink(t, "cp.json", link)
			return link, target
		}},
		{"dangling link to a file not created yet", func(t *testing.T, dir string) (string, string) {
			if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(dir, "link.json")
			mustSymlink(t, "data/cp.json", link)
			return link, filepath.Join(dir, "data", "cp.json")
		}},
		{"link to the directory", func(t *testing.T, dir string) (string, string) {
			if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
				t.Fatal(err)
			}
			mustSymlink(t, filepath.Join(dir, "data"), filepath.Join(dir, "alias"))
			return filepath.Join(dir, "alias", "cp.json"), filepath.Join(dir, "data", "cp.json")
		}},
		{"chain of links", func(t *testing.T, dir string) (string, string) {
			mustSymlink(t, "b.json", filepath.Join(dir, "a.json"))
			mustSymlink(t, "cp.json", filepath.Join(dir, "b.json"))
			return filepath.Join(dir, "a.json"), filepath.Join(dir, "cp.json")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			link, target := tt.setup(t, dir)
			for _, order := range [][2]string{{link, target}, {target, link}} {
				f := openFile(t, order[0], testKey)
				_, err := OpenFile(order[1], testKey)
				if !errors.Is(err, bridge.ErrKeyHeld) {
					t.Fatalf("OpenFile(%s) while %s is open: %v, want ErrKeyHeld", order[1], order[0], err)
				}
				f.Close()
			}
			f := openFile(t, link, testKey)
			if err := f.Commit(context.Background(), cpAt(5)); err != nil {
				t.Fatal(err)
			}
			f.Close()
			fi, err := os.Lstat(link)
			if err != nil {
				t.Fatal(err)
			}
			if linked := filepath.Base(filepath.Dir(link)) != "alias"; linked && fi.Mode()&os.ModeSymlink == 0 {
				t.Fatalf("the commit replaced the link %s with a file", link)
			}
			g := openFile(t, target, testKey)
			if cp, found := mustLoad(t, g); !found || cp.Sequence != 5 {
				t.Fatalf("target path holds %v %v, want the commit through the link", cp, found)
			}
			if want, _ := filepath.EvalSymlinks(target); g.RealPath() != want {
				t.Errorf("RealPath %q, want %q", g.RealPath(), want)
			}
		})
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestFileSymlinkLoop(t *testing.T) {
	dir := t.TempDir()
	mustSymlink(t, "b.json", filepath.Join(dir, "a.json"))
	mustSymlink(t, "a.json", filepath.Join(dir, "b.json"))
	_, err := OpenFile(filepath.Join(dir, "a.json"), testKey)
	if err == nil || !strings.Contains(err.Error(), "checkpoint file") || !strings.Contains(err.Error(), "a.json") {
		t.Fatalf("OpenFile through a link loop: %v", err)
	}
}

// OtherKeys names the keys of other bridges (or of this bridge under an
// older key) so that a changed checkpoint key can be warned about.
func TestFileOtherKeys(t *testing.T) {
	tests := []struct {
		name string
		doc  string // "" for no file
		want []string
	}{
		{"no file", "", nil},
		{"empty", `{"version":1,"checkpoints":{}}`, nil},
		{"only this key", `{"version":1,"checkpoints":{"` + testKey + `":{"last_committed_sequence":1}}}`, nil},
		{"other keys only", `{"version":1,"checkpoints":{"zz":{"last_committed_sequence":1},"aa":{"last_committed_sequence":2}}}`, []string{"aa", "zz"}},
		{"this and others", `{"version":1,"checkpoints":{"` + testKey + `":{"last_committed_sequence":1},"old":{"last_committed_sequence":2}}}`, []string{"old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cp.json")
			if tt.doc != "" {
				if err := os.WriteFile(path, []byte(tt.doc), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f := openFile(t, path, testKey)
			if got := f.OtherKeys(); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("OtherKeys = %q, want %q", got, tt.want)
			}
			// A commit of this key does not make it another key.
			if err := f.Commit(context.Background(), cpAt(9)); err != nil {
				t.Fatal(err)
			}
			if got := f.OtherKeys(); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("after Commit: OtherKeys = %q, want %q", got, tt.want)
			}
		})
	}
}
