package checkpoint

import (
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
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
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

// File is the file checkpoint store (CHECKPOINT_STORE=file) of one key.
// It holds an exclusive lock on its key (<real path>.keys/<hash>.lock,
// filelock.go) from OpenFile to Close, so two bridges cannot hold one key,
// while stores of other keys share the file; every commit takes the
// file-wide lock <real path>.lock, re-reads the file (keeping the other
// keys' entries) and replaces it atomically (temp file in the same
// directory, fsync, rename, fsync of the directory): after a crash the
// file holds either the previous or the new state. The real path is the
// configured one with every symbolic link resolved (also a dangling link
// to a file not created yet), so a store opened through a link and one
// opened through the real path share the locks, and a commit replaces the
// link's target, never the link.
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
// process (or another open File) holds the key, the error is a
// *lease.HeldError (wrapping bridge.ErrKeyHeld) naming the file, the key
// and the holder. Other keys of the file can be open at the same time, in
// this process or others (see filelock.go). Temp files left by a crash
// between write and rename are removed.
func OpenFile(path, key string) (*File, error) {
	return OpenFileLease(context.Background(), path, key, lease.Config{})
}

// OpenFileLease is OpenFile with a lease mode: lease.Standby waits until
// the key's holder closes its store or dies (the kernel drops its lock),
// polling the lock every 20ms, until ctx ends; lease.Probe and lease.Try
// fail at once. lc.Owner, when set, names this store in the key's lock;
// lc.TTL is not used.
func OpenFileLease(ctx context.Context, path, key string, lc lease.Config) (*File, error) {
	if path == "" {
		return nil, errors.New("empty checkpoint file path")
	}
	if key == "" {
		return nil, errors.New("empty checkpoint key")
	}
	resolved, err := prepare(path)
	if err != nil {
		return nil, err
	}
	lock, err := lockKey(ctx, path, resolved, key, lc)
	if err != nil {
		return nil, err
	}
	f := &File{path: path, real: resolved, key: key, lock: lock, syncFn: (*os.File).Sync}
	err = withFileLock(resolved, func() error {
		if err := f.removeTemps(); err != nil {
			return err
		}
		return f.read()
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// prepare creates path's directory and returns its real path (see File).
func prepare(path string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("checkpoint file %s: create directory: %w", path, err)
	}
	resolved, err := realPath(path)
	if err != nil {
		return "", fmt.Errorf("checkpoint file %s: resolve symbolic links: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(resolved), 0o755); err != nil {
		return "", fmt.Errorf("checkpoint file %s: create directory %s: %w", path, filepath.Dir(resolved), err)
	}
	return resolved, nil
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
// the file-wide lock, held by the caller, guarantees no live writer owns
// them.
func (f *File) removeTemps() error {
	dir := filepath.Dir(f.real)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("checkpoint file %s: read directory: %w", f.path, err)
	}
	prefix := f.tempPrefix()
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && !e.IsDir() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("checkpoint file %s: remove stale temp file: %w", f.path, err)
			}
		}
	}
	return nil
}

func (f *File) read() error {
	doc, err := readDoc(f.path, f.real)
	if err != nil {
		return err
	}
	f.doc = doc
	if e, ok := f.doc.Checkpoints[f.key]; ok {
		cp, err := parseEntry(f.path, f.key, e)
		if err != nil {
			return err
		}
		f.cp, f.found = cp, true
	}
	return nil
}

// corrupt is the error of a file that cannot be decoded.
func corrupt(path, format string, args ...any) error {
	return fmt.Errorf("checkpoint file %s: corrupt checkpoint file (fix or remove it to start from the configured start position): "+format, append([]any{path}, args...)...)
}

// parseEntry decodes the entry of key.
func parseEntry(path, key string, e json.RawMessage) (bridge.Checkpoint, error) {
	var ent fileEntry
	if err := json.Unmarshal(e, &ent); err != nil {
		return bridge.Checkpoint{}, corrupt(path, "checkpoint key %s: %v", key, err)
	}
	if ent.Sequence == nil {
		return bridge.Checkpoint{}, corrupt(path, "checkpoint key %s: no last_committed_sequence", key)
	}
	return bridge.Checkpoint{Sequence: *ent.Sequence, EventID: ent.EventID, UpdatedAt: ent.UpdatedAt}, nil
}

// readDoc reads the file at resolved (configured as path); a missing
// file is an empty document.
func readDoc(path, resolved string) (fileDoc, error) {
	doc := fileDoc{Version: fileVersion, KeyFormatVersion: keyFormatVersion, Checkpoints: map[string]json.RawMessage{}}
	b, err := os.ReadFile(resolved)
	if errors.Is(err, os.ErrNotExist) {
		return doc, nil
	}
	if err != nil {
		return doc, fmt.Errorf("checkpoint file %s: %w", path, err)
	}
	var raw struct {
		Version          *int                       `json:"version"`
		KeyFormatVersion *int                       `json:"key_format_version"`
		Checkpoints      map[string]json.RawMessage `json:"checkpoints"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return doc, corrupt(path, "%v", err)
	}
	switch {
	case raw.Version == nil:
		return doc, corrupt(path, "no \"version\"")
	case *raw.Version != fileVersion:
		return doc, fmt.Errorf("checkpoint file %s: unsupported file version %d (want %d)", path, *raw.Version, fileVersion)
	case raw.KeyFormatVersion != nil && *raw.KeyFormatVersion != keyFormatVersion:
		return doc, fmt.Errorf("checkpoint file %s: unsupported key_format_version %d (want %d)", path, *raw.KeyFormatVersion, keyFormatVersion)
	}
	if raw.Checkpoints != nil {
		doc.Checkpoints = raw.Checkpoints
	}
	return doc, nil
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
		return fmt.Errorf("checkpoint file %s: %w", f.path, ErrClosed)
	}
	if f.found && cp.Sequence <= f.cp.Sequence {
		return nil
	}
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = time.Now().UTC()
	}
	entry, err := encodeEntry(cp)
	if err != nil {
		return fmt.Errorf("checkpoint file %s: %w", f.path, err)
	}
	err = withFileLock(f.real, func() error {
		doc, err := readDoc(f.path, f.real) // other keys, written by other stores since
		if err != nil {
			return err
		}
		doc.Checkpoints[f.key] = entry
		if err := writeDoc(doc, f.replace); err != nil {
			return err
		}
		f.doc = doc
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint file %s: commit sequence %d: %w", f.path, cp.Sequence, err)
	}
	f.cp, f.found = cp, true
	return nil
}

// encodeEntry is the file entry of cp.
func encodeEntry(cp bridge.Checkpoint) (json.RawMessage, error) {
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = time.Now().UTC()
	}
	seq := cp.Sequence
	return json.Marshal(fileEntry{Sequence: &seq, EventID: cp.EventID, UpdatedAt: cp.UpdatedAt})
}

// writeDoc encodes doc and hands it to replace.
func writeDoc(doc fileDoc, replace func([]byte) error) error {
	doc.Version, doc.KeyFormatVersion = fileVersion, keyFormatVersion
	body, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return replace(append(body, '\n'))
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
