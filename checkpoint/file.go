package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// File format versions. The layout follows the aviso client's JSON file
// store (docs/checkpoint.md): one file can hold the checkpoints of several
// keys, and entries of other keys are kept when the file is rewritten.
const (
	fileVersion      = 1
	keyFormatVersion = 2 // the version of bridge.CheckpointKey's derivation
)

// fileDoc is the on-disk document.
type fileDoc struct {
	Version          int                        `json:"version"`
	KeyFormatVersion int                        `json:"key_format_version,omitempty"`
	Checkpoints      map[string]json.RawMessage `json:"checkpoints"`
}

// fileEntry is one key's entry; Sequence is a pointer to tell a missing
// field from 0.
type fileEntry struct {
	Sequence  *uint64   `json:"last_committed_sequence"`
	EventID   string    `json:"last_event_id,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// File is the file checkpoint store (CHECKPOINT_STORE=file). It holds an
// exclusive lock on "<real path>.lock" from OpenFile to Close, so two
// bridges cannot share one file, and replaces the file atomically on every
// commit (temp file in the same directory, fsync, rename, fsync of the
// directory): after a crash the file holds either the previous or the new
// state. The real path is the configured one with every symbolic link
// resolved (also a dangling link to a file not created yet), so a store
// opened through a link and one opened through the real path share the
// lock, and a commit replaces the link's target, never the link.
type File struct {
	path string // as configured (messages)
	real string // path with symbolic links resolved (I/O and lock)
	key  string

	mu     sync.Mutex
	lock   *os.File // nil once closed
	doc    fileDoc
	cp     bridge.Checkpoint
	found  bool
	syncFn func(*os.File) error // fsync; replaced by tests
	hook   func(stage string) error
}

var _ bridge.Store = (*File)(nil)

// OpenFile opens the checkpoint of key in the file at path, creating the
// parent directory (0o755) if missing. A missing file means no checkpoint.
// An unreadable or corrupt file, or one of another format version, is an
// error naming the path (never a silent restart from scratch). When another
// process (or another open File) holds the file, the error wraps
// bridge.ErrKeyHeld and names the file and the key. Temp files left by a
// crash between write and rename are removed.
func OpenFile(path, key string) (*File, error) {
	if path == "" {
		return nil, errors.New("CHECKPOINT_FILE: empty path")
	}
	if key == "" {
		return nil, errors.New("CHECKPOINT_KEY: empty key")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("CHECKPOINT_FILE %s: create directory: %w", path, err)
	}
	resolved, err := realPath(path)
	if err != nil {
		return nil, fmt.Errorf("CHECKPOINT_FILE %s: resolve symbolic links: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(resolved), 0o755); err != nil {
		return nil, fmt.Errorf("CHECKPOINT_FILE %s: create directory %s: %w", path, filepath.Dir(resolved), err)
	}
	lockPath := resolved + ".lock"
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("CHECKPOINT_FILE %s: open lock file: %w", path, err)
	}
	if err := lockFile(lock); err != nil {
		lock.Close()
		if errors.Is(err, errLocked) {
			holder := ""
			if b, rerr := os.ReadFile(lockPath); rerr == nil && len(bytes.TrimSpace(b)) > 0 {
				holder = " (held by pid " + string(bytes.TrimSpace(b)) + ")"
			}
			return nil, fmt.Errorf("CHECKPOINT_FILE %s: checkpoint key %s: lock %s is held by another bridge%s: %w", path, key, lockPath, holder, bridge.ErrKeyHeld)
		}
		return nil, fmt.Errorf("CHECKPOINT_FILE %s: lock %s: %w", path, lockPath, err)
	}
	// Record the holder for the message above; failure is harmless.
	if lock.Truncate(0) == nil {
		_, _ = lock.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	}
	f := &File{path: path, real: resolved, key: key, lock: lock, syncFn: (*os.File).Sync}
	if err := f.removeTemps(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.read(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Path returns the file's path as configured.
func (f *File) Path() string { return f.path }

// RealPath returns the file's path with symbolic links resolved: the file
// that is read, replaced and locked.
func (f *File) RealPath() string { return f.real }

// OtherKeys returns, sorted, the checkpoint keys the file held at OpenFile
// besides this store's key. When Load finds no checkpoint but OtherKeys is
// not empty, the checkpoint key has probably changed (a new AVISO_URL,
// AVISO_EVENT_TYPE or AVISO_IDENTIFIER spelling, or CHECKPOINT_KEY): the
// caller should warn, naming these keys, before starting from AVISO_FROM_*.
func (f *File) OtherKeys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for k := range f.doc.Checkpoints {
		if k != f.key {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// maxLinks bounds the symbolic links realPath follows (as the kernel's
// ELOOP limit does).
const maxLinks = 40

// realPath resolves every symbolic link of path, which need not exist: a
// missing final name (or the missing target of a dangling link) is joined
// to its resolved directory. The result is absolute.
func realPath(path string) (string, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	for range maxLinks {
		r, err := filepath.EvalSymlinks(p)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		dir, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			return "", err
		}
		p = filepath.Join(dir, filepath.Base(p))
		target, err := os.Readlink(p)
		if errors.Is(err, os.ErrNotExist) {
			return p, nil // the file does not exist yet
		}
		if err != nil {
			return "", err // neither a link nor missing: EvalSymlinks said why
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		p = target // a dangling link: resolve its target
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", path)
}

func (f *File) tempPrefix() string { return filepath.Base(f.real) + ".tmp-" }

// removeTemps deletes temp files a crash left between write and rename;
// the lock guarantees no live writer owns them.
func (f *File) removeTemps() error {
	dir := filepath.Dir(f.real)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("CHECKPOINT_FILE %s: read directory: %w", f.path, err)
	}
	prefix := f.tempPrefix()
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && !e.IsDir() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("CHECKPOINT_FILE %s: remove stale temp file: %w", f.path, err)
			}
		}
	}
	return nil
}

func (f *File) read() error {
	f.doc = fileDoc{Version: fileVersion, KeyFormatVersion: keyFormatVersion, Checkpoints: map[string]json.RawMessage{}}
	b, err := os.ReadFile(f.real)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("CHECKPOINT_FILE %s: %w", f.path, err)
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("CHECKPOINT_FILE %s: corrupt checkpoint file (fix or remove it to start from AVISO_FROM_*): "+format, append([]any{f.path}, args...)...)
	}
	var raw struct {
		Version          *int                       `json:"version"`
		KeyFormatVersion *int                       `json:"key_format_version"`
		Checkpoints      map[string]json.RawMessage `json:"checkpoints"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return corrupt("%v", err)
	}
	switch {
	case raw.Version == nil:
		return corrupt("no \"version\"")
	case *raw.Version != fileVersion:
		return fmt.Errorf("CHECKPOINT_FILE %s: unsupported file version %d (want %d)", f.path, *raw.Version, fileVersion)
	case raw.KeyFormatVersion != nil && *raw.KeyFormatVersion != keyFormatVersion:
		return fmt.Errorf("CHECKPOINT_FILE %s: unsupported key_format_version %d (want %d)", f.path, *raw.KeyFormatVersion, keyFormatVersion)
	}
	if raw.Checkpoints != nil {
		f.doc.Checkpoints = raw.Checkpoints
	}
	if e, ok := f.doc.Checkpoints[f.key]; ok {
		var ent fileEntry
		if err := json.Unmarshal(e, &ent); err != nil {
			return corrupt("checkpoint key %s: %v", f.key, err)
		}
		if ent.Sequence == nil {
			return corrupt("checkpoint key %s: no last_committed_sequence", f.key)
		}
		f.cp = bridge.Checkpoint{Sequence: *ent.Sequence, EventID: ent.EventID, UpdatedAt: ent.UpdatedAt}
		f.found = true
	}
	return nil
}

// Load returns the checkpoint of the store's key (read at OpenFile, then
// kept up to date by Commit).
func (f *File) Load(context.Context) (bridge.Checkpoint, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lock == nil {
		return bridge.Checkpoint{}, false, ErrClosed
	}
	return f.cp, f.found, nil
}

// Commit writes cp unless a checkpoint at or above cp.Sequence is stored.
// File I/O is not interruptible; ctx is not consulted.
func (f *File) Commit(_ context.Context, cp bridge.Checkpoint) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lock == nil {
		return fmt.Errorf("CHECKPOINT_FILE %s: %w", f.path, ErrClosed)
	}
	if f.found && cp.Sequence <= f.cp.Sequence {
		return nil
	}
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = time.Now().UTC()
	}
	seq := cp.Sequence
	entry, err := json.Marshal(fileEntry{Sequence: &seq, EventID: cp.EventID, UpdatedAt: cp.UpdatedAt})
	if err != nil {
		return fmt.Errorf("CHECKPOINT_FILE %s: %w", f.path, err)
	}
	doc := fileDoc{Version: fileVersion, KeyFormatVersion: keyFormatVersion, Checkpoints: make(map[string]json.RawMessage, len(f.doc.Checkpoints)+1)}
	for k, v := range f.doc.Checkpoints {
		doc.Checkpoints[k] = v
	}
	doc.Checkpoints[f.key] = entry
	body, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("CHECKPOINT_FILE %s: %w", f.path, err)
	}
	body = append(body, '\n')
	if err := f.replace(body); err != nil {
		return fmt.Errorf("CHECKPOINT_FILE %s: commit sequence %d: %w", f.path, cp.Sequence, err)
	}
	f.doc = doc
	f.cp, f.found = cp, true
	return nil
}

// replace writes body to a temp file in the file's directory, syncs it,
// renames it over the file and syncs the directory.
func (f *File) replace(body []byte) (err error) {
	dir := filepath.Dir(f.real)
	tmp, err := os.CreateTemp(dir, f.tempPrefix())
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if _, err = tmp.Write(body); err != nil {
		return err
	}
	if err = f.syncFn(tmp); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if f.hook != nil {
		if err = f.hook("before-rename"); err != nil {
			return err
		}
	}
	if err = os.Rename(tmp.Name(), f.real); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// Close releases the lock. Idempotent.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lock == nil {
		return nil
	}
	err := f.lock.Close() // closing the descriptor releases the flock
	f.lock = nil
	return err
}
