package main

// group runs a process's actors the way github.com/oklog/run's Group does:
// each actor is an (execute, interrupt) pair; run starts every execute, and
// when the first one returns it calls every interrupt with that error,
// waits for every execute to return, and returns the first error.
//
// An execute must return once its interrupt has been called; an interrupt
// must not block.
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
	for _, a := range g.actors {
		go func(a actor) { errs <- a.execute() }(a)
	}
	first := <-errs
	for _, a := range g.actors {
		a.interrupt(first)
	}
	for i := 1; i < len(g.actors); i++ {
		<-errs
	}
	return first
}
