package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

const (
	eventType   = "mars"
	streamName  = "AVISO"
	subject     = "aviso.mars"
	kafkaTopic  = "aviso.mars"
	startupWait = 30 * time.Second // start-up and ready of one bridge on a busy 2-core machine
)

// avisoEnv is the source side of a bridge configuration: avisotest, the
// event type, history from sequence 1, a checkpoint file in dir.
func avisoEnv(srv *avisotest.Server, dir string) env {
	return env{
		"AVISO_URL":        srv.URL,
		"AVISO_EVENT_TYPE": eventType,
		"AVISO_FROM_ID":    "1",
		"CHECKPOINT_FILE":  filepath.Join(dir, "checkpoint.json"),
	}
}

// jetStreamEnv adds a JetStream sink (stream AVISO created by the bridge).
func jetStreamEnv(e env, ns *natstest.Server) env {
	return e.with("SINK", "jetstream", "NATS_URL", ns.URL, "NATS_STREAM", streamName, "NATS_STREAM_CREATE", "true",
		"NATS_STREAM_SUBJECTS", "aviso.>")
}

// kafkaEnv adds a Kafka sink.
func kafkaEnv(e env, cl *kafkatest.Cluster) env {
	return e.with("SINK", "kafka", "KAFKA_BROKERS", cl.Addr)
}

// newKafka starts a kfake broker that keeps its data across Stop/Start and
// creates topics on first use (3 partitions: the default key keeps one event
// type in one of them).
func newKafka(t testing.TB) *kafkatest.Cluster {
	return kafkatest.NewRestartableCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
}

// identifier is the identifier of notification i.
func identifier(i int) map[string]string {
	return map[string]string{"class": "od", "date": "20261129", "step": strconv.Itoa(i % 240)}
}

// publish publishes n notifications and returns their sequences.
func publish(srv *avisotest.Server, n int) []uint64 {
	out := make([]uint64, 0, n)
	for i := range n {
		out = append(out, srv.Publish(eventType, identifier(i), map[string]any{"i": i, "note": "data is ready"}))
	}
	return out
}

// publisher publishes n notifications at about rate per second in a
// goroutine; done is closed after the last one. The sequences are in seqs
// once done is closed.
type publisher struct {
	done chan struct{}
	seqs []uint64
}

func publishAt(ctx context.Context, srv *avisotest.Server, n, rate int) *publisher {
	p := &publisher{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		const tick = 10 * time.Millisecond
		per := max(1, rate*int(tick)/int(time.Second))
		tk := time.NewTicker(tick) // pacing, not synchronisation
		defer tk.Stop()
		for i := 0; i < n; {
			for j := 0; j < per && i < n; j, i = j+1, i+1 {
				p.seqs = append(p.seqs, srv.Publish(eventType, identifier(i), map[string]any{"i": i}))
			}
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	return p
}

// seqOfID splits a CloudEvent id "<event_type>@<sequence>".
func seqOfID(t testing.TB, id string) uint64 {
	t.Helper()
	i := strings.LastIndexByte(id, '@')
	if i < 0 || id[:i] != eventType {
		t.Fatalf("id %q is not %s@<sequence>", id, eventType)
	}
	s, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil {
		t.Fatalf("id %q: %v", id, err)
	}
	return s
}

// readJetStream reads stream AVISO back, in stream order, and returns the
// sequence of each message from its Nats-Msg-Id header (checked against
// ce-id).
func readJetStream(t testing.TB, ns *natstest.Server) []uint64 {
	t.Helper()
	return readJetStreamSubject(t, ns, subject)
}

func readJetStreamSubject(t testing.TB, ns *natstest.Server, filter string) []uint64 {
	t.Helper()
	js := ns.JetStream(t)
	msgs := natstest.ReadStream(t, js, streamName, filter)
	out := make([]uint64, 0, len(msgs))
	for _, m := range msgs {
		id := m.Headers().Get(jetstream.MsgIDHeader)
		if ce := m.Headers().Get("ce-id"); ce != id {
			t.Fatalf("JetStream message on %s: Nats-Msg-Id %q, ce-id %q", m.Subject(), id, ce)
		}
		out = append(out, seqOfID(t, id))
	}
	return out
}

// jetStreamCount returns how many messages stream AVISO holds (0 when it does
// not exist yet).
func jetStreamCount(t testing.TB, js jetstream.JetStream) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, streamName)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// readKafka reads topic back and returns the sequence of each record from its
// ce_id header, in offset order (every record of one event type is in one
// partition with the default key).
func readKafka(t testing.TB, cl *kafkatest.Cluster, topic string) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs, err := cl.Records(ctx, topic)
	if err != nil {
		t.Fatalf("read Kafka topic %s: %v", topic, err)
	}
	out := make([]uint64, 0, len(recs))
	part := int32(-1)
	for _, r := range recs {
		if part >= 0 && r.Partition != part {
			t.Fatalf("topic %s: records of one event type in partitions %d and %d (KAFKA_KEY={event_type} keeps one)", topic, part, r.Partition)
		}
		part = r.Partition
		id, ok := kafkatest.Header(r, "ce_id")
		if !ok {
			t.Fatalf("topic %s offset %d: no ce_id header", topic, r.Offset)
		}
		out = append(out, seqOfID(t, id))
	}
	return out
}

// kafkaCount returns how many records topic holds (0 when unknown).
func kafkaCount(cl *kafkatest.Cluster, topic string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := cl.Records(ctx, topic)
	if err != nil {
		return 0
	}
	return len(recs)
}

// tally is what a sink read back holds compared with what was published.
type tally struct {
	Records    int      // messages read back
	Missing    []uint64 // published, never read back
	Duplicates int      // messages whose id was read back before
	Unexpected []uint64 // read back, never published
	// OutOfOrder lists first occurrences that are not above the previous
	// first occurrence (order is judged on first deliveries: a re-send after
	// a crash repeats an earlier id by design).
	OutOfOrder []string
	// MaxRun is the longest run of consecutive duplicate records.
	MaxRun int
}

func (tl tally) String() string {
	return fmt.Sprintf("records=%d missing=%d duplicates=%d unexpected=%d out_of_order=%d max_duplicate_run=%d",
		tl.Records, len(tl.Missing), tl.Duplicates, len(tl.Unexpected), len(tl.OutOfOrder), tl.MaxRun)
}

func count(got, want []uint64) tally {
	tl := tally{Records: len(got)}
	published := make(map[uint64]bool, len(want))
	for _, s := range want {
		published[s] = true
	}
	seen := make(map[uint64]bool, len(got))
	var last uint64
	run := 0
	for i, s := range got {
		if seen[s] {
			tl.Duplicates++
			run++
			tl.MaxRun = max(tl.MaxRun, run)
			continue
		}
		run = 0
		seen[s] = true
		if !published[s] {
			tl.Unexpected = append(tl.Unexpected, s)
		}
		if s <= last && len(tl.OutOfOrder) < 20 {
			tl.OutOfOrder = append(tl.OutOfOrder, fmt.Sprintf("record %d: sequence %d after %d", i, s, last))
		}
		last = max(last, s)
	}
	for _, s := range want {
		if !seen[s] {
			tl.Missing = append(tl.Missing, s)
		}
	}
	return tl
}

// requireComplete fails unless got holds every sequence of want, in order,
// nothing else, and at most maxDup duplicates.
func requireComplete(t testing.TB, what string, got, want []uint64, maxDup int) tally {
	t.Helper()
	tl := count(got, want)
	t.Logf("%s: %v", what, tl)
	if len(tl.Missing) > 0 {
		t.Errorf("%s: %d of %d published notifications missing, first %v", what, len(tl.Missing), len(want), tl.Missing[:min(10, len(tl.Missing))])
	}
	if len(tl.OutOfOrder) > 0 {
		t.Errorf("%s: order broken: %v", what, tl.OutOfOrder)
	}
	if len(tl.Unexpected) > 0 {
		t.Errorf("%s: sequences never published: %v", what, tl.Unexpected[:min(10, len(tl.Unexpected))])
	}
	if tl.Duplicates > maxDup {
		t.Errorf("%s: %d duplicates, want at most %d", what, tl.Duplicates, maxDup)
	}
	return tl
}

// seqRange returns first, first+1, ..., last.
func seqRange(first, last uint64) []uint64 {
	out := make([]uint64, 0, last-first+1)
	for s := first; s <= last; s++ {
		out = append(out, s)
	}
	return out
}

// without returns seqs minus drop.
func without(seqs []uint64, drop ...uint64) []uint64 {
	return slices.DeleteFunc(slices.Clone(seqs), func(s uint64) bool { return slices.Contains(drop, s) })
}

// cloudEvents fetches every notification from sequence 1 from srv through a
// plain /api/v1/replay request and returns the CloudEvent JSON of each, as
// the server writes it, by sequence.
func cloudEvents(t testing.TB, srv *avisotest.Server) map[uint64][]byte {
	t.Helper()
	body := fmt.Sprintf(`{"event_type":%q,"identifier":{},"from_id":"1"}`, eventType)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/api/v1/replay", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("replay: %s", resp.Status)
	}
	out := map[uint64][]byte{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	event := ""
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("event: ")):
			event = string(line[len("event: "):])
		case bytes.HasPrefix(line, []byte("data: ")) && event == "replay":
			data := bytes.Clone(line[len("data: "):])
			var ce struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(data, &ce); err != nil {
				t.Fatalf("replay frame %q: %v", data, err)
			}
			out[seqOfID(t, ce.ID)] = data
		}
	}
	return out
}

// checkpointSeq reads the committed sequence of the only key in a checkpoint
// file (false when the file or the key is not there yet).
func checkpointSeq(t testing.TB, path string) (uint64, bool) {
	t.Helper()
	b, err := readFileIfExists(path)
	if err != nil || b == nil {
		return 0, false
	}
	var doc struct {
		Checkpoints map[string]struct {
			Seq *uint64 `json:"last_committed_sequence"`
		} `json:"checkpoints"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("checkpoint file %s: %v\n%s", path, err, b)
	}
	if len(doc.Checkpoints) > 1 {
		t.Fatalf("checkpoint file %s holds %d keys, want 1", path, len(doc.Checkpoints))
	}
	for _, c := range doc.Checkpoints {
		if c.Seq != nil {
			return *c.Seq, true
		}
	}
	return 0, false
}
