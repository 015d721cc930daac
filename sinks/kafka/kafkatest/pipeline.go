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

// DriverConfig configures Drive.
type DriverConfig struct {
	// MaxInFlight bounds the publishes awaiting acknowledgement (default 256).
	MaxInFlight int
	// BackoffMin and BackoffMax bound the pause before an ordered
	// re-publish (default 5ms and 200ms).
	BackoffMin, BackoffMax time.Duration
	// OnPermanent decides about a notification the sink rejected
	// permanently: a nil error advances past it (skipped or dead-lettered),
	// an error stops Drive. Nil means stop.
	OnPermanent func(ctx context.Context, n *bridge.Notification, err error) error
	// OnRetry, when set, is called before each ordered re-publish with the
	// failed notification and the error.
	OnRetry func(n *bridge.Notification, err error)
	// OnAck, when set, is called after each successful acknowledgement with
	// the number acknowledged so far.
	OnAck func(acked int)
}

// DriveResult counts what happened in Drive.
type DriveResult struct {
	Acked    int // notifications acknowledged successfully
	Rejected int // permanent rejections OnPermanent let pass
	Retries  int // ordered re-publishes after a retryable failure
}

// Drive plays the pipeline's part against sink, as bridge.Sink's contract
// describes it: it publishes notes in order with at most MaxInFlight
// outstanding, checks that acknowledgements arrive in publish order, and
// after a retryable failure waits for every outstanding ack, backs off, and
// re-publishes the failed notification and everything after it. It returns
// when every notification is acknowledged (or passed by OnPermanent), or on
// the first error.
func Drive(ctx context.Context, sink bridge.Sink, notes []*bridge.Notification, cfg DriverConfig) (DriveResult, error) {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 256
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 5 * time.Millisecond
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(200*time.Millisecond, cfg.BackoffMin)
	}
	d := &driver{ctx: ctx, sink: sink, notes: notes, cfg: cfg, backoff: cfg.BackoffMin}
	err := d.run()
	return d.res, err
}

type driver struct {
	ctx     context.Context
	sink    bridge.Sink
	notes   []*bridge.Notification
	cfg     DriverConfig
	res     DriveResult
	next    int // next index to publish
	acked   int // first index not yet resolved
	backoff time.Duration
}

func (d *driver) run() error {
	for d.acked < len(d.notes) {
		if d.next < len(d.notes) && d.next-d.acked < d.cfg.MaxInFlight {
			err := d.sink.Publish(d.ctx, d.notes[d.next])
			if err == nil {
				d.next++
				continue
			}
			// Not accepted, no ack follows: resolve everything before it.
			at := d.next
			for d.acked < at && d.next == at {
				if err := d.readAck(); err != nil {
					return err
				}
			}
			if d.next != at {
				continue // an earlier failure rewound the window
			}
			if err := d.failed(at, err); err != nil {
				return err
			}
			continue
		}
		if err := d.readAck(); err != nil {
			return err
		}
	}
	return nil
}

// readAck reads the ack of notes[acked] and acts on it.
func (d *driver) readAck() error {
	at := d.acked
	ack, err := d.waitAck(d.notes[at])
	if err != nil {
		return err
	}
	if ack.Err == nil {
		d.res.Acked++
		d.acked++
		d.backoff = d.cfg.BackoffMin
		if d.cfg.OnAck != nil {
			d.cfg.OnAck(d.res.Acked)
		}
		return nil
	}
	return d.failed(at, ack.Err)
}

// failed handles the failure of notes[at], every ack before it being read.
func (d *driver) failed(at int, err error) error {
	if bridge.IsPermanent(err) {
		if d.cfg.OnPermanent == nil {
			return fmt.Errorf("%s rejected: %w", d.notes[at].ID, err)
		}
		if perr := d.cfg.OnPermanent(d.ctx, d.notes[at], err); perr != nil {
			return perr
		}
		d.res.Rejected++
		d.acked = at + 1
		if d.next == at { // it was a Publish error
			d.next = at + 1
		}
		return nil
	}
	// Retryable: wait for every outstanding ack, back off, rewind.
	for i := at + 1; i < d.next; i++ {
		if _, err := d.waitAck(d.notes[i]); err != nil {
			return err
		}
	}
	if d.cfg.OnRetry != nil {
		d.cfg.OnRetry(d.notes[at], err)
	}
	t := time.NewTimer(d.backoff)
	defer t.Stop()
	select {
	case <-d.ctx.Done():
		return fmt.Errorf("retrying %s after %v: %w", d.notes[at].ID, err, d.ctx.Err())
	case <-t.C:
	}
	d.backoff = min(2*d.backoff, d.cfg.BackoffMax)
	d.res.Retries++
	d.next, d.acked = at, at
	return nil
}

// waitAck reads one ack and checks that it belongs to n.
func (d *driver) waitAck(n *bridge.Notification) (bridge.Ack, error) {
	select {
	case <-d.ctx.Done():
		return bridge.Ack{}, fmt.Errorf("waiting for the ack of %s: %w", n.ID, d.ctx.Err())
	case ack := <-d.sink.Acks():
		if ack.Sequence != n.Sequence || ack.ID != n.ID {
			return ack, fmt.Errorf("ack out of order: got %s (sequence %d), want %s", ack.ID, ack.Sequence, n.ID)
		}
		return ack, nil
	}
}

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
			<-done
			return bridge.Checkpoint{}, fmt.Errorf("submit %s: %w", n.ID, err)
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
