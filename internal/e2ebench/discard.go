package e2ebench

import (
	"context"
	"fmt"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Discard measures the bridge into a sink that acknowledges every
// notification at once: avisotest -> aviso -> supervisor -> pipeline with
// no broker at all. It is the ceiling the source side (SSE reading,
// decoding, the supervisor and the pipeline) sets on any sink.
func Discard(ctx context.Context, cfg ThroughputConfig) (Throughput, error) {
	cfg = cfg.withDefaults()
	var res Throughput
	dir, cleanup, err := scratch(cfg.Dir)
	if err != nil {
		return res, err
	}
	defer cleanup()
	sizes := chunks(cfg.N, cfg.Rounds)
	pad, err := replayPad(ctx, sizes[0], cfg.FrameSize)
	if err != nil {
		return res, err
	}
	open := func(context.Context, *bridge.Metrics) (bridge.Sink, error) {
		return &discardSink{acks: make(chan bridge.Ack, cfg.Window)}, nil
	}
	for r, size := range sizes {
		et := roundEventType(r)
		src, _, err := roundSource(ctx, et, size, pad)
		if err != nil {
			return res, err
		}
		t, err := runReplay(ctx, src.URL, et, size, cfg.Window, dir, cfg.Logger, open)
		src.Close()
		if err != nil {
			return res, fmt.Errorf("bridge into a discarding sink, round %d: %w", r, err)
		}
		res.add(t)
	}
	return res, nil
}

// discardSink acknowledges every publish at once. Its Acks buffer holds the
// pipeline's window, so Publish never blocks.
type discardSink struct{ acks chan bridge.Ack }

func (s *discardSink) Publish(_ context.Context, n *bridge.Notification) error {
	s.acks <- bridge.Ack{Sequence: n.Sequence, ID: n.ID}
	return nil
}

func (s *discardSink) Acks() <-chan bridge.Ack { return s.acks }

func (s *discardSink) DeadLetter(context.Context, bridge.DeadLetter) error { return nil }

func (s *discardSink) Close(context.Context) error { return nil }
