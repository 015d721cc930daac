package lease

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

func TestHeldError(t *testing.T) {
	err := fmt.Errorf("open: %w", &HeldError{Where: `nats-kv bucket "b"`, Key: "k1", Holder: "host/1/ab"})
	var held *HeldError
	if !errors.Is(err, bridge.ErrKeyHeld) || !errors.As(err, &held) || held.Holder != "host/1/ab" {
		t.Fatalf("%v: want errors.Is ErrKeyHeld and As *HeldError naming the holder", err)
	}
	for _, part := range []string{`nats-kv bucket "b"`, "k1", "host/1/ab", "a different checkpoint key"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("%q lacks %q", err, part)
		}
	}
}

func TestConfig(t *testing.T) {
	for _, tt := range []struct {
		ttl     time.Duration
		refresh time.Duration
		bad     bool
	}{
		{0, DefaultTTL / 3, false},
		{300 * time.Millisecond, 100 * time.Millisecond, false},
		{-time.Second, 0, true},
		{time.Millisecond, 0, true},
	} {
		c := Config{TTL: tt.ttl}
		if err := c.Validate(); (err != nil) != tt.bad {
			t.Errorf("TTL %v: Validate = %v", tt.ttl, err)
		}
		if !tt.bad && c.refresh() != tt.refresh {
			t.Errorf("TTL %v: refresh %v, want %v", tt.ttl, c.refresh(), tt.refresh)
		}
	}
	if a, b := (Config{}).WithDefaults().Owner, (Config{}).WithDefaults().Owner; a == b || a == "" {
		t.Errorf("owner ids %q and %q: want new, non-empty ids", a, b)
	}
}

// The tracker judges liveness on its own clock: alive until a record is
// unchanged for one TTL since first seen or last changed.
func TestTracker(t *testing.T) {
	ttl := time.Second
	tr := NewTracker(ttl)
	t0 := time.Unix(1000, 0)
	for _, step := range []struct {
		at      time.Duration
		version uint64
		alive   bool
		lapses  time.Duration
	}{
		{0, 1, true, ttl},                                           // first seen: alive for one TTL
		{900 * time.Millisecond, 1, true, ttl},                      // unchanged, within the TTL
		{time.Second, 1, false, ttl},                                // unchanged for the TTL: dead
		{1500 * time.Millisecond, 2, true, 2500 * time.Millisecond}, // written again: alive
	} {
		alive, by := tr.Observe("k", step.version, t0.Add(step.at))
		if alive != step.alive || !by.Equal(t0.Add(step.lapses)) {
			t.Errorf("at %v version %d: alive %v lapses %v; want %v, %v", step.at, step.version, alive, by.Sub(t0), step.alive, step.lapses)
		}
	}
	tr.Forget("k")
	if alive, by := tr.Observe("k", 2, t0.Add(5*time.Second)); !alive || !by.Equal(t0.Add(6*time.Second)) {
		t.Errorf("after Forget: %v %v, want a fresh sighting", alive, by)
	}
	if err := (Config{Mode: Standby + 1}).Validate(); err == nil {
		t.Error("an unknown Mode validated")
	}
}
