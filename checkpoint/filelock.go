package checkpoint

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

// Locks of the file store, beside the resolved path of the file:
//
//   - <file>.lock: the file-wide lock, held only for one read-modify-write
//     of the file (a commit, an admin change) and while temp files are
//     cleaned at open;
//   - <file>.keys/<hash>.lock: one per checkpoint key, held by the store of
//     that key from open to Close (the kernel drops it when the process
//     dies), its content naming the holder;
//   - <file>.members/<hash>.lock: one per fleet member (FileAdmin.Announce).
//
// <hash> is the first 32 hex digits of the SHA-256 of the key or id.
const (
	// fileLockWait bounds the wait for the file-wide lock.
	fileLockWait = 10 * time.Second
	// lockPoll is how often a waiting store tries a lock again.
	lockPoll = 20 * time.Millisecond
)

func hashName(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16]) + ".lock"
}

func keyLockPath(resolved, key string) string {
	return filepath.Join(resolved+".keys", hashName(key))
}

func memberLockPath(resolved, id string) string {
	return filepath.Join(resolved+".members", hashName(id))
}

// withFileLock runs fn holding the file-wide lock of the file at resolved.
func withFileLock(resolved string, fn func() error) error {
	lf, err := os.OpenFile(resolved+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open lock file: %w", err)
	}
	defer lf.Close() // closing the descriptor releases the flock
	deadline := time.Now().Add(fileLockWait)
	for {
		err := lockFile(lf)
		if err == nil {
			break
		}
		if !errors.Is(err, errLocked) {
			return fmt.Errorf("lock %s: %w", lf.Name(), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lock %s held for over %v (by an aviso-bridge older than per-key locks?)", lf.Name(), fileLockWait)
		}
		time.Sleep(lockPoll / 4) // polling a lock: flock has no timeout
	}
	return fn()
}

// tryLock opens (creating) the lock file at p and takes it without
// waiting: held reports another holder, whose record (the file's content)
// is returned; the caller closes the file to release the lock.
func tryLock(p string) (f *os.File, holder string, err error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, "", err
	}
	f, err = os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, "", err
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, readHolder(p), nil
		}
		return nil, "", err
	}
	return f, "", nil
}

// readHolder is the holder named in lock file p ("unknown" when empty).
func readHolder(p string) string {
	b, err := os.ReadFile(p)
	if h := string(bytes.TrimSpace(b)); err == nil && h != "" {
		return h
	}
	return "unknown"
}

// writeHolder records who holds lock file f; a failure is harmless (the
// record serves messages only).
func writeHolder(f *os.File, holder string) {
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(holder+"\n"), 0)
	}
}

// holderName is how a store names itself in its key's lock: the lease
// owner id when given, else the process id.
func holderName(owner string) string {
	if owner != "" {
		return owner
	}
	return "pid " + strconv.Itoa(os.Getpid())
}

// lockKey takes the lock of key in the file at resolved as lc.Mode says: at
// once or a *lease.HeldError (Probe, Try), or waiting until it is free
// (Standby; the kernel frees the lock of a process that dies).
func lockKey(ctx context.Context, path, resolved, key string, lc lease.Config) (*os.File, error) {
	p := keyLockPath(resolved, key)
	var t *time.Ticker
	for {
		f, holder, err := tryLock(p)
		if err != nil {
			return nil, fmt.Errorf("checkpoint file %s: lock %s: %w", path, p, err)
		}
		if f != nil {
			writeHolder(f, holderName(lc.Owner))
			return f, nil
		}
		if lc.Mode != lease.Standby {
			return nil, fileHeld(path, key, holder, p)
		}
		if t == nil {
			t = time.NewTicker(lockPoll)
			defer t.Stop()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("checkpoint file %s: checkpoint key %s: waiting for %s to release it: %w", path, key, holder, ctx.Err())
		case <-t.C:
		}
	}
}

func fileHeld(path, key, holder, lockPath string) error {
	return &lease.HeldError{Where: "checkpoint file " + path, Key: key, Holder: holder,
		Detail: "lock " + lockPath + " is held by another bridge"}
}
