package bridgetest

import (
	"context"
	"fmt"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// DriveConfig tunes Drive. The zero value of every field means its default.
type DriveConfig struct {
	// Window is the most publishes awaiting acknowledgement (default 256);
	// build the sink with at least this MaxInFlight.
	Window int
	// Backoff is the first pause before an ordered re-publish (default
	// 5ms); it doubles per failed round up to BackoffMax (default 200ms)
	// and starts again after a success.
	Backoff, BackoffMax time.Duration
	// OnReject decides about a notification the sink rejected permanently:
	// a nil error passes it (skipped or dead-lettered), an error stops
	// Drive. Nil: Drive returns the rejection.
	OnReject func(n *bridge.Notification, err error) error
	// OnRetry, when set, is called before each ordered re-publish with the
	// failed notification and its error.
	OnRetry func(n *bridge.Notification, err error)
	// OnAck, when set, is called after each successful acknowledgement
	// with the number acknowledged so far.
	OnAck func(acked int)
}

// DriveStats counts what Drive did.
type DriveStats struct {
	Publishes int // Publish calls, refused ones and re-publishes included
	Acked     int // notifications acknowledged successfully
	Rejected  int // permanent rejections OnReject passed
	Retries   int // ordered re-publish rounds after a retryable failure
}

// Drive plays the pipeline's part against sink as bridge.Sink's contract
// describes it: it publishes ns in order with at most Window outstanding,
// requires one acknowledgement per accepted publish, in publish order, and
// after a retryable failure waits for every outstanding acknowledgement,
// backs off, and re-publishes the failed notification and everything after
// it. It returns when every notification is acknowledged (or passed by
// OnReject), on the first contract violation or unpassed rejection, or
// when ctx is done. It does not close the sink.
func Drive(ctx context.Context, sink bridge.Sink, ns []*bridge.Notification, cfg DriveConfig) (DriveStats, error) {
	if cfg.Window <= 0 {
		cfg.Window = 256
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 5 * time.Millisecond
	}
	if cfg.BackoffMax < cfg.Backoff {
		cfg.BackoffMax = max(200*time.Millisecond, cfg.Backoff)
	}
	d := &driver{ctx: ctx, sink: sink, ns: ns, cfg: cfg, backoff: cfg.Backoff}
	err := d.run()
	return d.st, err
}

type driver struct {
	ctx     context.Context
	sink    bridge.Sink
	ns      []*bridge.Notification
	cfg     DriveConfig
	st      DriveStats
	next    int // next index to publish
	done    int // first index not yet resolved
	backoff time.Duration
}

func (d *driver) run() error {
	for d.done < len(d.ns) {
		if d.next == len(d.ns) || d.next-d.done >= d.cfg.Window {
			if err := d.readAck(); err != nil {
				return err
			}
			continue
		}
		err := d.sink.Publish(d.ctx, d.ns[d.next])
		d.st.Publishes++
		if err == nil {
			d.next++
			continue
		}
		// Not accepted, no Ack follows: resolve everything before it.
		at := d.next
		for d.done < at && d.next == at {
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
	}
	return nil
}

// readAck reads the Ack of ns[done] and acts on it.
func (d *driver) readAck() error {
	at := d.done
	a, err := d.waitAck(d.ns[at])
	if err != nil {
		return err
	}
	if a.Err != nil {
		return d.failed(at, a.Err)
	}
	d.st.Acked++
	d.done++
	d.backoff = d.cfg.Backoff
	if d.cfg.OnAck != nil {
		d.cfg.OnAck(d.st.Acked)
	}
	return nil
}

// failed handles the failure of ns[at], every Ack before it being read.
func (d *driver) failed(at int, err error) error {
	n := d.ns[at]
	if bridge.IsPermanent(err) {
		if d.cfg.OnReject == nil {
			return fmt.Errorf("bridgetest: %s rejected: %w", n.ID, err)
		}
		if rerr := d.cfg.OnReject(n, err); rerr != nil {
			return rerr
		}
		d.st.Rejected++
		d.done = at + 1
		d.next = max(d.next, at+1) // a Publish error did not advance next
		return nil
	}
	// Retryable: wait for every outstanding Ack, back off, rewind.
	for i := at + 1; i < d.next; i++ {
		if _, err := d.waitAck(d.ns[i]); err != nil {
			return err
		}
	}
	if d.cfg.OnRetry != nil {
		d.cfg.OnRetry(n, err)
	}
	t := time.NewTimer(d.backoff)
	defer t.Stop()
	select {
	case <-d.ctx.Done():
		return fmt.Errorf("bridgetest: retrying %s after %w: %w", n.ID, err, d.ctx.Err())
	case <-t.C:
	}
	d.backoff = min(2*d.backoff, d.cfg.BackoffMax)
	d.st.Retries++
	d.next, d.done = at, at
	return nil
}

// waitAck reads one Ack and checks that it belongs to n.
func (d *driver) waitAck(n *bridge.Notification) (bridge.Ack, error) {
	select {
	case <-d.ctx.Done():
		return bridge.Ack{}, fmt.Errorf("bridgetest: waiting for the ack of %s: %w", n.ID, d.ctx.Err())
	case a := <-d.sink.Acks():
		if a.Sequence != n.Sequence || a.ID != n.ID {
			return a, fmt.Errorf("%w: ack for %s (sequence %d), want %s", bridge.ErrSinkContract, a.ID, a.Sequence, n.ID)
		}
		return a, nil
	}
}
