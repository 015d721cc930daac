package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

// FileAdmin is the file store as a whole: Admin over every key of the
// file and the Coordinator of bridges on one host. There is no lease:
// a key is held while its lock is (see filelock.go), and the kernel drops
// the locks of a process that dies, so liveness needs no clock. A member
// is a lock file <file>.members/<hash>.lock held by the bridge and
// naming its id; Members removes those nobody holds.
type FileAdmin struct {
	path     string
	resolved string
}

var (
	_ Admin       = (*FileAdmin)(nil)
	_ Coordinator = (*FileAdmin)(nil)
)

// OpenFileAdmin opens the file store at path (CHECKPOINT_FILE), creating
// its directory when missing.
func OpenFileAdmin(path string) (*FileAdmin, error) {
	if path == "" {
		return nil, errors.New("empty checkpoint file path")
	}
	resolved, err := prepare(path)
	if err != nil {
		return nil, err
	}
	return &FileAdmin{path: path, resolved: resolved}, nil
}

func (a *FileAdmin) where() string { return "checkpoint file " + a.path }

// Announce implements Coordinator: it holds the member's lock file until
// release, which removes it.
func (a *FileAdmin) Announce(_ context.Context, id string) (func(context.Context) error, error) {
	p := memberLockPath(a.resolved, id)
	f, holder, err := tryLock(p)
	if err != nil {
		return nil, fmt.Errorf("%s: announce member %s: %w", a.where(), id, err)
	}
	if f == nil {
		return nil, &lease.HeldError{Where: a.where(), Key: "member " + id, Holder: holder, Detail: "lock " + p}
	}
	writeHolder(f, id)
	return func(context.Context) error {
		err := os.Remove(p)
		return errors.Join(err, f.Close())
	}, nil
}

// Members implements Coordinator; it removes the lock files of members
// that died.
func (a *FileAdmin) Members(context.Context) ([]Member, error) {
	dir := a.resolved + ".members"
	names, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: members: %w", a.where(), err)
	}
	var members []Member
	for _, n := range names {
		p := filepath.Join(dir, n.Name())
		f, holder, err := tryLock(p)
		switch {
		case err != nil:
			return nil, fmt.Errorf("%s: member %s: %w", a.where(), p, err)
		case f != nil: // nobody holds it: that member died
			_ = os.Remove(p)
			_ = f.Close()
		default:
			members = append(members, Member{ID: holder})
		}
	}
	slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return members, nil
}

// holder returns who holds key ("" when free).
func (a *FileAdmin) holder(key string) (string, error) {
	p := keyLockPath(a.resolved, key)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	f, holder, err := tryLock(p)
	if f != nil {
		_ = f.Close()
	}
	if err != nil {
		return "", fmt.Errorf("%s: key %s: %w", a.where(), key, err)
	}
	return holder, nil
}

// Holders implements Coordinator.
func (a *FileAdmin) Holders(_ context.Context, keys []string) (map[string]Holding, error) {
	out := make(map[string]Holding, len(keys))
	for _, k := range keys {
		h, err := a.holder(k)
		if err != nil {
			return nil, err
		}
		out[k] = Holding{Holder: h}
	}
	return out, nil
}

// List implements Admin.
func (a *FileAdmin) List(context.Context) ([]Entry, error) {
	doc, err := readDoc(a.path, a.resolved)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(doc.Checkpoints))
	for k := range doc.Checkpoints {
		e, _, err := a.entry(doc, k)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// entry is the admin's view of key in doc.
func (a *FileAdmin) entry(doc fileDoc, key string) (Entry, bool, error) {
	raw, ok := doc.Checkpoints[key]
	if !ok {
		return Entry{}, false, nil
	}
	cp, err := parseEntry(a.path, key, raw)
	if err != nil {
		return Entry{}, false, err
	}
	e := Entry{Key: key, Checkpoint: cp, Found: true}
	if e.Holder, err = a.holder(key); err != nil {
		return Entry{}, false, err
	}
	if st, err := os.Stat(a.resolved); err == nil {
		e.Written = st.ModTime()
	}
	return e, true, nil
}

// Get implements Admin.
func (a *FileAdmin) Get(_ context.Context, key string) (Entry, bool, error) {
	doc, err := readDoc(a.path, a.resolved)
	if err != nil {
		return Entry{}, false, err
	}
	return a.entry(doc, key)
}

// Set implements Admin.
func (a *FileAdmin) Set(_ context.Context, key string, cp bridge.Checkpoint, force bool) error {
	entry, err := encodeEntry(cp)
	if err != nil {
		return err
	}
	return a.change(key, func(doc fileDoc) { doc.Checkpoints[key] = entry }, force)
}

// Delete implements Admin.
func (a *FileAdmin) Delete(_ context.Context, key string, force bool) error {
	return a.change(key, func(doc fileDoc) { delete(doc.Checkpoints, key) }, force)
}

// change applies edit to the file; unless force, it holds the key's lock
// meanwhile (a *lease.HeldError naming the holder when another store has
// it).
func (a *FileAdmin) change(key string, edit func(fileDoc), force bool) error {
	if key == "" {
		return errors.New("empty checkpoint key")
	}
	if !force {
		p := keyLockPath(a.resolved, key)
		f, holder, err := tryLock(p)
		if err != nil {
			return fmt.Errorf("%s: key %s: %w", a.where(), key, err)
		}
		if f == nil {
			return &lease.HeldError{Where: a.where(), Key: key, Holder: holder,
				Detail: "lock " + p + " is held by another bridge; stop that bridge first, or force the change"}
		}
		defer f.Close()
	}
	w := &File{path: a.path, real: a.resolved, syncFn: (*os.File).Sync}
	err := withFileLock(a.resolved, func() error {
		doc, err := readDoc(a.path, a.resolved)
		if err != nil {
			return err
		}
		edit(doc)
		return writeDoc(doc, w.replace)
	})
	if err != nil {
		return fmt.Errorf("%s: key %s: %w", a.where(), key, err)
	}
	return nil
}
