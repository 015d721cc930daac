package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
)

// RunPipeline runs bridge.NewPipeline over sink and a memory checkpoint
// store: it submits notes in order, closes the input, and returns Run's
// error and the committed checkpoint. onSubmit, when set, is called after
// each Submit with its index (a test can stop a broker there).
func RunPipeline(ctx context.Context, sink bridge.Sink, notes []*bridge.Notification, cfg bridge.PipelineConfig, onSubmit func(i int)) (bridge.Checkpoint, error) {
	mem := checkpoint.NewMemory()
	store, err := mem.Open("kafkatest")
	if err != nil {
		return bridge.Checkpoint{}, err
	}
	p, err := bridge.NewPipeline(sink, store, cfg)
	if err != nil {
		return bridge.Checkpoint{}, err
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for i, n := range notes {
		if err := p.Submit(ctx, n); err != nil {
			if errors.Is(err, bridge.ErrStopped) {
				break
			}
			p.CloseInput()
			runErr := <-done
			return bridge.Checkpoint{}, fmt.Errorf("submit %s: %w (run: %v)", n.ID, err, runErr) //nolint:errorlint // the submit error is the one to match
		}
		if onSubmit != nil {
			onSubmit(i)
		}
	}
	p.CloseInput()
	runErr := <-done
	cp, _ := mem.Checkpoint("kafkatest")
	return cp, runErr
}

// WriteBare writes msgs with w as the sink would, one WriteMessages call per
// record, in asynchronous mode (it sets w.Async and w.Completion), with at
// most maxInFlight records awaiting completion (0: no limit), waits for
// every completion and closes w. It returns the time from the first write
// to the last completion. It is the baseline the sink's benchmark compares
// against.
func WriteBare(ctx context.Context, w *kafkago.Writer, msgs []kafkago.Message, maxInFlight int) (time.Duration, error) {
	if maxInFlight <= 0 {
		maxInFlight = len(msgs)
	}
	var (
		mu          sync.Mutex
		freed       = sync.NewCond(&mu)
		outstanding int
		firstErr    error
	)
	w.Async = true
	w.Completion = func(ms []kafkago.Message, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		outstanding -= len(ms)
		freed.Broadcast()
	}
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		freed.Broadcast()
	})
	defer stop()
	wait := func(limit int) error {
		mu.Lock()
		defer mu.Unlock()
		for outstanding > limit && ctx.Err() == nil {
			freed.Wait()
		}
		return ctx.Err()
	}
	start := time.Now()
	for i := range msgs {
		if err := wait(maxInFlight - 1); err != nil {
			_ = w.Close()
			return 0, err
		}
		mu.Lock()
		outstanding++
		mu.Unlock()
		if err := w.WriteMessages(ctx, msgs[i]); err != nil {
			_ = w.Close()
			return 0, err
		}
	}
	if err := wait(0); err != nil {
		_ = w.Close()
		return 0, err
	}
	elapsed := time.Since(start)
	mu.Lock()
	err := firstErr
	mu.Unlock()
	return elapsed, errors.Join(err, w.Close())
}
