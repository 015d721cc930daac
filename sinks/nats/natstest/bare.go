package natstest

import (
	"context"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

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
