package checkpoint

import (
	"context"
	"errors"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

func TestMemory(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	s, err := m.Open("k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Open("k"); !errors.Is(err, bridge.ErrKeyHeld) {
		t.Fatalf("second Open: %v", err)
	}
	other, err := m.Open("other") // other keys are independent
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, found := mustLoad(t, s); found {
		t.Fatal("found in empty memory")
	}
	for _, c := range []struct{ commit, want uint64 }{{3, 3}, {2, 3}, {3, 3}, {8, 8}} {
		if err := s.Commit(ctx, cpAt(c.commit)); err != nil {
			t.Fatal(err)
		}
		if cp, _ := mustLoad(t, s); cp.Sequence != c.want {
			t.Fatalf("after %d: %d", c.commit, cp.Sequence)
		}
	}
	// A crash: drop the store, reopen from the same backing.
	s.Close()
	if err := s.Commit(ctx, cpAt(100)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close: %v", err)
	}
	s2, err := m.Open("k")
	if err != nil {
		t.Fatal(err)
	}
	if cp, found := mustLoad(t, s2); !found || cp != cpAt(8) {
		t.Fatalf("reopened: %+v %v", cp, found)
	}
	if _, found := mustLoad(t, other); found {
		t.Fatal("other key sees k's checkpoint")
	}
	if cp, ok := m.Checkpoint("k"); !ok || cp.Sequence != 8 {
		t.Fatalf("Checkpoint: %+v %v", cp, ok)
	}
}
