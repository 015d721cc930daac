package natstest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// DriveConfig tunes Drive.
type DriveConfig struct {
	// Window is the most publishes outstanding (default 256).
	Window int
	// Backoff is the pause before re-publishing after a retryable failure
	// (default 20ms).
	Backoff time.Duration
	// OnReject is called for a permanent failure; a nil error skips the
	// notification, an error stops Drive. Nil: Drive returns the error.
	OnReject func(n *bridge.Notification, err error) error
	// OnRetry, when set, is called before each re-publish round with the
	// failure that caused it.
	OnRetry func(n *bridge.Notification, err error)
}

// DriveStats counts what Drive did.
type DriveStats struct {
	Publishes int // Publish calls, including refused ones
	Retries   int // re-publish rounds
	Rejected  int // permanent failures skipped by OnReject
}

// ErrContract is wrapped when a sink acknowledges out of order.
var ErrContract = errors.New("natstest: sink broke the acknowledgement contract")

type driveEntry struct {
	idx  int
	sync bool  // Publish refused; err stands in for the Ack
	err  error // for sync entries
}

// Drive publishes ns through sink in order with at most cfg.Window
// outstanding, following the bridge.Sink contract the way the pipeline
// does: results are taken in publish order; after a retryable failure it
// stops publishing, waits for every outstanding Ack, backs off, and
// re-publishes from the failed notification on. It returns once every
// notification is acknowledged (or rejected through OnReject), or when ctx
// is done.
func Drive(ctx context.Context, sink bridge.Sink, ns []*bridge.Notification, cfg DriveConfig) (DriveStats, error) {
	if cfg.Window <= 0 {
		cfg.Window = 256
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 20 * time.Millisecond
	}
	var st DriveStats
	resolved, next, failIdx := 0, 0, -1
	var failErr error
	syncPending := false
	inflight := make([]driveEntry, 0, cfg.Window+1)
	acks := sink.Acks()
	for resolved < len(ns) {
		for failIdx < 0 && !syncPending && next < len(ns) && len(inflight) < cfg.Window {
			err := sink.Publish(ctx, ns[next])
			st.Publishes++
			if err != nil {
				inflight = append(inflight, driveEntry{idx: next, sync: true, err: err})
				syncPending = true
			} else {
				inflight = append(inflight, driveEntry{idx: next})
			}
			next++
		}
		if len(inflight) == 0 {
			if failIdx < 0 {
				return st, fmt.Errorf("natstest: drive stuck at %d of %d", resolved, len(ns))
			}
			if cfg.OnRetry != nil {
				cfg.OnRetry(ns[failIdx], failErr)
			}
			t := time.NewTimer(cfg.Backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return st, fmt.Errorf("natstest: drive at %s: %w (last error: %v)", ns[failIdx].ID, ctx.Err(), failErr)
			}
			next, failIdx = failIdx, -1
			st.Retries++
			continue
		}
		e := inflight[0]
		var err error
		if e.sync {
			err, syncPending = e.err, false
		} else {
			select {
			case a := <-acks:
				if a.ID != ns[e.idx].ID || a.Sequence != ns[e.idx].Sequence {
					return st, fmt.Errorf("%w: ack for %s, expected %s", ErrContract, a.ID, ns[e.idx].ID)
				}
				err = a.Err
			case <-ctx.Done():
				return st, fmt.Errorf("natstest: drive waiting for %s: %w", ns[e.idx].ID, ctx.Err())
			}
		}
		inflight = inflight[1:]
		switch {
		case failIdx >= 0 && e.idx >= failIdx:
			// Part of a failed round: published again whatever the outcome.
		case err == nil:
			resolved = e.idx + 1
		case bridge.IsPermanent(err):
			if cfg.OnReject == nil {
				return st, err
			}
			if rerr := cfg.OnReject(ns[e.idx], err); rerr != nil {
				return st, rerr
			}
			st.Rejected++
			resolved = e.idx + 1
		default:
			failIdx, failErr = e.idx, err
		}
		if len(inflight) == 0 {
			inflight = inflight[:0:cap(inflight)]
		}
	}
	return st, nil
}

// Notifications returns count notifications of event type et with
// sequences first, first+1, ...; the CloudEvent data member of each is
// exactly dataSize bytes (at least about 80).
func Notifications(et string, first uint64, count, dataSize int) []*bridge.Notification {
	out := make([]*bridge.Notification, count)
	t0 := time.Date(2026, 3, 4, 10, 0, 0, 123456789, time.UTC)
	for i := range out {
		seq := first + uint64(i)
		id := bridge.EventID(et, seq)
		ident := `{"class":"od","date":"20260304","step":"` + strconv.FormatUint(seq%240, 10) + `"}`
		head := `{"identifier":` + ident + `,"payload":"`
		pad := max(0, dataSize-len(head)-2)
		data := head + strings.Repeat("x", pad) + `"}`
		ts := t0.Add(time.Duration(i) * time.Millisecond)
		timeRaw := ts.Format(time.RFC3339Nano)
		ce := `{"data":` + data + `,"datacontenttype":"application/json","dataschema":"http://localhost:8000/schema/` + et +
			`","id":"` + id + `","source":"http://localhost:8000","specversion":"1.0","time":"` + timeRaw +
			`","type":"int.ecmwf.aviso.` + et + `"}`
		out[i] = &bridge.Notification{
			EventType:       et,
			Sequence:        seq,
			ID:              id,
			Source:          "http://localhost:8000",
			Type:            "int.ecmwf.aviso." + et,
			DataSchema:      "http://localhost:8000/schema/" + et,
			DataContentType: "application/json",
			TimeRaw:         timeRaw,
			Time:            ts,
			Identifier:      []byte(ident),
			Data:            []byte(data),
			CloudEvent:      []byte(ce),
			Received:        time.Now(),
		}
	}
	return out
}

// BareMessages returns the binary-mode messages of ns on subject, with the
// same headers the sinks send: the baseline of a sink benchmark.
func BareMessages(ns []*bridge.Notification, subject string) []*natsgo.Msg {
	out := make([]*natsgo.Msg, len(ns))
	for i, n := range ns {
		h := natsgo.Header{
			"Nats-Msg-Id":        {n.ID},
			"ce-specversion":     {"1.0"},
			"ce-id":              {n.ID},
			"ce-source":          {n.Source},
			"ce-type":            {n.Type},
			"ce-time":            {n.TimeRaw},
			"ce-dataschema":      {n.DataSchema},
			"ce-datacontenttype": {"application/json"},
			"Content-Type":       {"application/json"},
		}
		out[i] = &natsgo.Msg{Subject: subject, Header: h, Data: n.Data}
	}
	return out
}

// BarePublishAsync publishes msgs with js.PublishMsgAsync (js bounds the
// pending window) and waits until every ack is in. Failed futures are not
// inspected: check the stream's message count.
func BarePublishAsync(ctx context.Context, js jetstream.JetStream, msgs []*natsgo.Msg) error {
	for _, m := range msgs {
		if _, err := js.PublishMsgAsync(m); err != nil {
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// BareRate measures the baseline of a JetStream sink benchmark: a bare
// PublishMsgAsync loop over the binary-mode messages of ns on subject, on
// its own connection to url, with window publishes pending at most. It
// returns messages per second (waiting until every ack is in).
func BareRate(ctx context.Context, url, subject string, ns []*bridge.Notification, window int) (float64, error) {
	nc, err := natsgo.Connect(url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(window))
	if err != nil {
		return 0, err
	}
	msgs := BareMessages(ns, subject)
	start := time.Now()
	if err := BarePublishAsync(ctx, js, msgs); err != nil {
		return 0, err
	}
	return float64(len(msgs)) / time.Since(start).Seconds(), nil
}
