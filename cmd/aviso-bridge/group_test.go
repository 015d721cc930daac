package main

import (
	"errors"
	"sync"
	"testing"
)

// The first actor to return stops the others (each interrupt gets its
// error), run waits for all, and returns the first error.
func TestGroupFirstReturnInterruptsAll(t *testing.T) {
	first := errors.New("first")
	var g group
	var mu sync.Mutex
	var interrupted []error
	var returned int
	for i := 0; i < 3; i++ {
		stop := make(chan struct{})
		g.add(func() error {
			<-stop
			mu.Lock()
			returned++
			mu.Unlock()
			return errors.New("later")
		}, func(err error) {
			mu.Lock()
			interrupted = append(interrupted, err)
			mu.Unlock()
			close(stop)
		})
	}
	g.add(func() error { return first }, func(err error) {
		mu.Lock()
		interrupted = append(interrupted, err)
		mu.Unlock()
	})
	if err := g.run(); !errors.Is(err, first) {
		t.Fatalf("run = %v, want the first actor's error", err)
	}
	if returned != 3 {
		t.Errorf("run returned with %d of 3 blocked actors returned", returned)
	}
	if len(interrupted) != 4 {
		t.Fatalf("%d interrupts, want 4", len(interrupted))
	}
	for _, err := range interrupted {
		if !errors.Is(err, first) {
			t.Errorf("interrupt got %v, want the first error", err)
		}
	}
}

func TestGroupEmptyAndNil(t *testing.T) {
	var g group
	if err := g.run(); err != nil {
		t.Errorf("empty group: %v", err)
	}
	g.add(func() error { return nil }, func(error) {})
	if err := g.run(); err != nil {
		t.Errorf("one actor returning nil: %v", err)
	}
}
