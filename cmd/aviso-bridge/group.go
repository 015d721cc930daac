package main

import "sync"

// group runs a process's actors the way github.com/oklog/run's Group does:
// each actor is an (execute, interrupt) pair; run starts every execute, and
// when the first one returns it calls every interrupt with that error,
// waits for every execute to return, and returns the first error.
//
// An execute must return once its interrupt has been called; interrupts
// are called one after the other and should return promptly.
type group struct {
	actors []actor
}

type actor struct {
	execute   func() error
	interrupt func(error)
}

// add appends an actor.
func (g *group) add(execute func() error, interrupt func(error)) {
	g.actors = append(g.actors, actor{execute: execute, interrupt: interrupt})
}

// run runs the actors until all have returned; it returns the error of the
// first to return (nil when there are none).
func (g *group) run() error {
	if len(g.actors) == 0 {
		return nil
	}
	errs := make(chan error, len(g.actors))
	var wg sync.WaitGroup
	for _, a := range g.actors {
		wg.Go(func() { errs <- a.execute() })
	}
	first := <-errs
	for _, a := range g.actors {
		a.interrupt(first)
	}
	wg.Wait()
	return first
}
