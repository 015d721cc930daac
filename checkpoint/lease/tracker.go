package lease

import (
	"sync"
	"time"
)

// Tracker judges, on this host's clock only, whether the owners named in
// records (listener keys, member records) are alive, as an opening lease
// does: a record whose version has not changed for one TTL since this
// tracker first saw it, or last saw it change, names a dead owner. A new
// tracker therefore counts every record alive for its first TTL; call
// Observe at least every TTL for a steady view.
type Tracker struct {
	ttl time.Duration

	mu   sync.Mutex
	seen map[string]sighting
}

type sighting struct {
	version uint64
	changed time.Time
}

// NewTracker returns a tracker judging with ttl (CHECKPOINT_LEASE_TTL).
func NewTracker(ttl time.Duration) *Tracker {
	return &Tracker{ttl: ttl, seen: map[string]sighting{}}
}

// Observe records that the record id is at version now and reports
// whether its owner is alive, and by when its lease lapses if the owner
// stops writing now (the last change seen plus the TTL).
func (t *Tracker) Observe(id string, version uint64, now time.Time) (alive bool, lapsesBy time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.seen[id]
	if !ok || s.version != version {
		s = sighting{version: version, changed: now}
		t.seen[id] = s
	}
	lapsesBy = s.changed.Add(t.ttl)
	return now.Before(lapsesBy), lapsesBy
}

// Forget drops id: its record is gone or names no owner.
func (t *Tracker) Forget(id string) {
	t.mu.Lock()
	delete(t.seen, id)
	t.mu.Unlock()
}
