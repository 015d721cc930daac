package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Memory is the shared backing of memory stores: what a file or a KV bucket
// would hold, kept in memory. Stores opened from one Memory see each other's
// commits, so a test can simulate a crash by dropping a pipeline and opening
// a new store from the same Memory. The zero value is not usable; use
// NewMemory.
type Memory struct {
	mu   sync.Mutex
	cps  map[string]bridge.Checkpoint
	held map[string]*MemoryStore
}

// NewMemory returns an empty backing.
func NewMemory() *Memory {
	return &Memory{cps: map[string]bridge.Checkpoint{}, held: map[string]*MemoryStore{}}
}

// Open returns the store of key. Like the file store, a key is held by one
// open store at a time: a second Open fails with an error wrapping
// bridge.ErrKeyHeld until the first is closed.
func (m *Memory) Open(key string) (*MemoryStore, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.held[key] != nil {
		return nil, fmt.Errorf("memory checkpoint store: key %s: %w", key, bridge.ErrKeyHeld)
	}
	s := &MemoryStore{m: m, key: key}
	m.held[key] = s
	return s, nil
}

// Checkpoint returns what is stored for key, for inspection.
func (m *Memory) Checkpoint(key string) (bridge.Checkpoint, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cp, ok := m.cps[key]
	return cp, ok
}

// MemoryStore is a bridge.Store over a Memory.
type MemoryStore struct {
	m      *Memory
	key    string
	closed bool // guarded by m.mu
}

var _ bridge.Store = (*MemoryStore)(nil)

// ErrClosed is returned by a store used after Close.
var ErrClosed = errors.New("checkpoint store is closed")

// Load returns the stored checkpoint of the store's key.
func (s *MemoryStore) Load(context.Context) (bridge.Checkpoint, bool, error) {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if s.closed {
		return bridge.Checkpoint{}, false, ErrClosed
	}
	cp, ok := s.m.cps[s.key]
	return cp, ok, nil
}

// Commit stores cp unless a checkpoint at or above cp.Sequence is stored.
func (s *MemoryStore) Commit(_ context.Context, cp bridge.Checkpoint) error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if cur, ok := s.m.cps[s.key]; ok && cp.Sequence <= cur.Sequence {
		return nil
	}
	s.m.cps[s.key] = cp
	return nil
}

// Close releases the key. Idempotent.
func (s *MemoryStore) Close() error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if !s.closed {
		s.closed = true
		if s.m.held[s.key] == s {
			delete(s.m.held, s.key)
		}
	}
	return nil
}
