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
	for _, part := range []string{`nats-kv bucket "b"`, "k1", "host/1/ab", "CHECKPOINT_KEY"} {
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
