package supervisor_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// recordSink acknowledges every publish at once and records the sequences.
type recordSink struct {
	mu   sync.Mutex
	seqs []uint64
	acks chan bridge.Ack
	got  chan struct{}
}

func newRecordSink() *recordSink {
	return &recordSink{acks: make(chan bridge.Ack, 1024), got: make(chan struct{}, 1)}
}

func (s *recordSink) Publish(_ context.Context, n *bridge.Notification) error {
	s.mu.Lock()
	s.seqs = append(s.seqs, n.Sequence)
	s.mu.Unlock()
	s.acks <- bridge.Ack{Sequence: n.Sequence, ID: n.ID}
	select {
	case s.got <- struct{}{}:
	default:
	}
	return nil
}
func (s *recordSink) Acks() <-chan bridge.Ack                             { return s.acks }
func (s *recordSink) DeadLetter(context.Context, bridge.DeadLetter) error { return nil }
func (s *recordSink) Close(context.Context) error                         { return nil }
func (s *recordSink) sequences() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.seqs...)
}

func TestSmokeWatchFromID(t *testing.T) {
	srv := avisotest.NewServer(t, avisotest.WithHeartbeat(time.Second))
	for i := 0; i < 10; i++ {
		srv.Publish("mars", map[string]string{"class": "od"}, map[string]any{"i": i})
	}
	sink := newRecordSink()
	store, _ := checkpoint.NewMemory().Open("k")
	p, err := bridge.NewPipeline(sink, store, bridge.PipelineConfig{MaxInFlight: 16, CheckpointInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	from := uint64(1)
	sup, err := supervisor.New(supervisor.Config{
		Client:     &aviso.Client{BaseURL: srv.URL, HTTPClient: srv.Client()},
		Mode:       aviso.Watch,
		EventType:  "mars",
		Identifier: json.RawMessage(`{}`),
		Start:      supervisor.Start{FromID: &from},
		Pipeline:   p,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(ctx) }()
	sdone := make(chan error, 1)
	go func() { sdone <- sup.Run(ctx) }()
	deadline := time.After(10 * time.Second)
	for len(sink.sequences()) < 10 {
		select {
		case <-sink.got:
		case <-deadline:
			t.Fatalf("got %v", sink.sequences())
		}
	}
	cancel()
	<-sdone
	if err := <-pdone; err != nil {
		t.Fatal(err)
	}
	got := sink.sequences()
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("got %v", got)
		}
	}
}
