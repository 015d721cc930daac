package kafka_test

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
)

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newSink starts a sink on cl with cfg (Brokers and EventType filled in) and
// closes it in t.Cleanup.
func newSink(t *testing.T, cl *kafkatest.Cluster, cfg kafka.Config) *kafka.Sink {
	t.Helper()
	cfg.Brokers = []string{cl.Addr}
	if cfg.EventType == "" {
		cfg.EventType = "mars"
	}
	s, err := kafka.NewSink(testContext(t, 20*time.Second), cfg, kafka.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func readTopic(t *testing.T, cl *kafkatest.Cluster, topic string) []*kgo.Record {
	t.Helper()
	recs, err := cl.Records(testContext(t, 30*time.Second), topic)
	if err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	return recs
}

// seqOf returns the aviso sequence of a record from its ce_id header or,
// in structured mode, its body.
func seqOf(t *testing.T, r *kgo.Record) uint64 {
	t.Helper()
	id, ok := kafkatest.Header(r, kafka.HeaderID)
	if !ok {
		i := strings.Index(string(r.Value), `"id":"`)
		if i < 0 {
			t.Fatalf("record at offset %d has no id", r.Offset)
		}
		rest := string(r.Value[i+6:])
		id = rest[:strings.IndexByte(rest, '"')]
	}
	_, s, _ := strings.Cut(id, "@")
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("record at offset %d: id %q: %v", r.Offset, id, err)
	}
	return n
}

// checkOrdered checks that every sequence in want is stored and that, per
// partition, the first occurrences appear in increasing order. It returns
// the number of duplicate records.
func checkOrdered(t *testing.T, recs []*kgo.Record, want []uint64) int {
	t.Helper()
	type tp struct {
		topic     string
		partition int32
	}
	seen := map[uint64]bool{}
	last := map[tp]uint64{}
	dups := 0
	for _, r := range recs {
		s := seqOf(t, r)
		if seen[s] {
			dups++
			continue
		}
		seen[s] = true
		at := tp{r.Topic, r.Partition}
		if prev, ok := last[at]; ok && s <= prev {
			t.Fatalf("%s partition %d: sequence %d stored after %d (offset %d)", r.Topic, r.Partition, s, prev, r.Offset)
		}
		last[at] = s
	}
	for _, s := range want {
		if !seen[s] {
			t.Fatalf("sequence %d is missing (%d records read)", s, len(recs))
		}
	}
	return dups
}

func seqs(first uint64, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = first + uint64(i)
	}
	return out
}

func drive(t *testing.T, s bridge.Sink, notes []*bridge.Notification, cfg bridgetest.DriveConfig) bridgetest.DriveStats {
	t.Helper()
	res, err := bridgetest.Drive(testContext(t, 60*time.Second), s, notes, cfg)
	if err != nil {
		t.Fatalf("Drive: %v (result %+v)", err, res)
	}
	return res
}

func TestRecordFormat(t *testing.T) {
	cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
	for _, format := range []string{kafka.FormatBinary, kafka.FormatStructured} {
		t.Run(format, func(t *testing.T) {
			topic := "fmt-" + format
			s := newSink(t, cl, kafka.Config{Topic: topic, Format: format})
			notes := bridgetest.Notifications(1, 10)
			notes[3] = bridgetest.Notification(4, bridgetest.NoDataSchema())
			notes[5].Time = time.Time{} // unparseable time: the record carries the receipt time
			drive(t, s, notes, bridgetest.DriveConfig{})

			recs := readTopic(t, cl, topic)
			if len(recs) != len(notes) {
				t.Fatalf("got %d records, want %d", len(recs), len(notes))
			}
			for i, r := range recs {
				n := notes[i]
				if string(r.Key) != "mars" {
					t.Errorf("record %d: key %q, want mars", i, r.Key)
				}
				wantTime := n.Time
				if wantTime.IsZero() {
					wantTime = n.Received
				}
				if !r.Timestamp.Equal(wantTime.Truncate(time.Millisecond)) {
					t.Errorf("record %d: timestamp %v, want %v", i, r.Timestamp, wantTime)
				}
				got := map[string]string{}
				for _, h := range r.Headers {
					if _, dup := got[h.Key]; dup {
						t.Errorf("record %d: header %s twice", i, h.Key)
					}
					got[h.Key] = string(h.Value)
				}
				var want map[string]string
				var body []byte
				if format == kafka.FormatBinary {
					want = map[string]string{
						"ce_specversion": "1.0", "ce_id": n.ID, "ce_source": n.Source, "ce_type": n.Type,
						"ce_time": n.TimeRaw, "content-type": "application/json",
					}
					if n.DataSchema != "" {
						want["ce_dataschema"] = n.DataSchema
					}
					body = n.Data
				} else {
					want = map[string]string{"content-type": "application/cloudevents+json"}
					body = n.CloudEvent
				}
				if !mapsEqual(got, want) {
					t.Errorf("record %d: headers %v, want %v", i, got, want)
				}
				if string(r.Value) != string(body) {
					t.Errorf("record %d: body\n%s\nwant\n%s", i, r.Value, body)
				}
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestOrderPerPartition(t *testing.T) {
	cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4))
	s := newSink(t, cl, kafka.Config{Topic: "ordered", Key: "{event_type}-{identifier.step}", BatchSize: 7})
	notes := bridgetest.Notifications(1, 2000)
	drive(t, s, notes, bridgetest.DriveConfig{Window: 64})
	recs := readTopic(t, cl, "ordered")
	if dups := checkOrdered(t, recs, seqs(1, 2000)); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
	parts := map[int32]bool{}
	for _, r := range recs {
		parts[r.Partition] = true
		if want := "mars-" + strconv.FormatUint(seqOf(t, r)%4, 10); string(r.Key) != want {
			t.Fatalf("offset %d: key %q, want %q", r.Offset, r.Key, want)
		}
	}
	if len(parts) < 2 {
		t.Fatalf("all records in %d partition(s); the test needs several", len(parts))
	}
}

// TestRerunWritesNoDuplicates restarts the sink and re-publishes an
// overlapping range, as a bridge does after a crash before its checkpoint
// caught up.
func TestRerunWritesNoDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format string
		key    string
	}{
		{"binary", kafka.FormatBinary, ""},
		{"structured", kafka.FormatStructured, ""},
		{"key-per-step", kafka.FormatBinary, "{identifier.step}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
			cfg := kafka.Config{Topic: "rerun", Format: tc.format, Key: tc.key, MaxInFlight: 100}
			first := newSink(t, cl, cfg)
			drive(t, first, bridgetest.Notifications(1, 500), bridgetest.DriveConfig{Window: 100})
			if err := first.Close(testContext(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			// Another event type in the same topic is not ours to skip.
			other := newSink(t, cl, kafka.Config{Topic: "rerun", Format: tc.format, Key: tc.key, EventType: "diss"})
			drive(t, other, bridgetest.Notifications(300, 10, bridgetest.EventType("diss")), bridgetest.DriveConfig{})

			second := newSink(t, cl, cfg)
			drive(t, second, bridgetest.Notifications(301, 400), bridgetest.DriveConfig{Window: 100})
			if got := second.DuplicatesSkipped(); got != 200 {
				t.Errorf("DuplicatesSkipped = %d, want 200", got)
			}
			var mars []*kgo.Record
			for _, r := range readTopic(t, cl, "rerun") {
				if id, _ := kafkatest.Header(r, kafka.HeaderID); strings.HasPrefix(id, "diss@") || strings.Contains(string(r.Value), `"id":"diss@`) {
					continue
				}
				mars = append(mars, r)
			}
			if len(mars) != 700 {
				t.Errorf("%d mars records, want 700", len(mars))
			}
			if dups := checkOrdered(t, mars, seqs(1, 700)); dups != 0 {
				t.Fatalf("%d duplicates", dups)
			}
		})
	}
}

// TestRerunScansBackToTheCheckpoint: a crash long after the last commit
// re-publishes more than the default scan depth; the scan reads back until
// it passes the resume position (or KAFKA_DEDUPE_SCAN_MAX records).
func TestRerunScansBackToTheCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		name        string
		resumeAfter uint64
		scanMax     int
		skipped     int64
	}{
		{"to the checkpoint", 500, 0, 2500},
		{"no checkpoint: up to the limit", 0, 0, 2500},
		{"limit", 0, 1500, 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
			cfg := kafka.Config{Topic: "deep", MaxInFlight: 100, DedupeScanMax: tc.scanMax}
			first := newSink(t, cl, cfg)
			drive(t, first, bridgetest.Notifications(1, 3000), bridgetest.DriveConfig{Window: 100})
			if err := first.Close(testContext(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			cfg.ResumeAfter = tc.resumeAfter
			second := newSink(t, cl, cfg)
			drive(t, second, bridgetest.Notifications(501, 3000), bridgetest.DriveConfig{Window: 100})
			if got := second.DuplicatesSkipped(); got != tc.skipped {
				t.Errorf("DuplicatesSkipped = %d, want %d", got, tc.skipped)
			}
			dups := checkOrdered(t, readTopic(t, cl, "deep"), seqs(1, 3500))
			if want := 2500 - int(tc.skipped); dups != want {
				t.Errorf("%d duplicates, want %d", dups, want)
			}
		})
	}
}

// TestScanSkippedForPerNotificationTopic: a topic per sequence cannot be
// scanned; the sink starts anyway and writes.
func TestScanSkippedForPerNotificationTopic(t *testing.T) {
	cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	s := newSink(t, cl, kafka.Config{Topic: "per.{identifier.step}"})
	drive(t, s, bridgetest.Notifications(1, 8), bridgetest.DriveConfig{})
	for step := range 4 {
		recs := readTopic(t, cl, "per."+strconv.Itoa(step))
		if len(recs) != 2 {
			t.Fatalf("topic per.%d: %d records, want 2", step, len(recs))
		}
	}
}

// TestBrokerRestartMidStream stops the broker while notifications flow and
// starts it again on the same port: nothing is lost and order per partition
// holds.
func TestBrokerRestartMidStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  string
	}{
		{"one-partition", ""},
		{"four-partitions", "{identifier.step}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := kafkatest.NewRestartableCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4))
			s := newSink(t, cl, kafka.Config{Topic: "restart", Key: tc.key, BatchSize: 20, MaxInFlight: 128,
				WriteTimeout: 2 * time.Second, DialTimeout: time.Second})
			const total = 3000
			notes := bridgetest.Notifications(1, total, bridgetest.Size(600))
			halfway := make(chan struct{})
			var once atomic.Bool
			var retries atomic.Int64
			done := make(chan error, 1)
			go func() {
				_, err := bridgetest.Drive(testContext(t, 90*time.Second), s, notes, bridgetest.DriveConfig{
					Window: 128, BackoffMax: 100 * time.Millisecond,
					OnAck: func(acked int) {
						if acked >= total/3 && !once.Swap(true) {
							close(halfway)
						}
					},
					OnRetry: func(*bridge.Notification, error) { retries.Add(1) },
				})
				done <- err
			}()
			select {
			case <-halfway:
			case err := <-done:
				t.Fatalf("Drive ended before the restart: %v", err)
			}
			cl.Stop()
			bridgetest.Eventually(t, 20*time.Second, "the sink to report the outage", func() bool { return s.Healthy() != nil })
			// Stay down through several ordered re-publishes.
			down := retries.Load()
			bridgetest.Eventually(t, 20*time.Second, "re-publishes during the outage", func() bool { return retries.Load() >= down+3 })
			cl.Start()
			if err := <-done; err != nil {
				t.Fatalf("Drive: %v", err)
			}
			if retries.Load() == 0 {
				t.Fatal("no ordered re-publish happened: the outage was not exercised")
			}
			if err := s.Healthy(); err != nil {
				t.Errorf("Healthy after recovery: %v", err)
			}
			dups := checkOrdered(t, readTopic(t, cl, "restart"), seqs(1, total))
			t.Logf("retries %d, duplicate records %d (lost produce responses)", retries.Load(), dups)
		})
	}
}

// TestFailedBatchDoesNotOvertake injects produce failures that outlast
// kafka-go's own attempts: the partition's next batch must not be stored
// before the failed one is re-sent.
func TestFailedBatchDoesNotOvertake(t *testing.T) {
	cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
	s := newSink(t, cl, kafka.Config{Topic: "overtake", Key: "{identifier.step}", BatchSize: 10, MaxAttempts: 2})
	var calls atomic.Int64
	// Fail every 7th produce request (both attempts of a batch when they
	// line up), many times over the run.
	fault := cl.Kfake().Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotLeaderForPartition, Count: -1,
		When: func(kmsg.Request) bool { return calls.Add(1)%7 < 2 },
	})
	t.Cleanup(fault.Remove)
	var retries atomic.Int64
	notes := bridgetest.Notifications(1, 3000)
	drive(t, s, notes, bridgetest.DriveConfig{Window: 200, BackoffMax: 20 * time.Millisecond,
		OnRetry: func(*bridge.Notification, error) { retries.Add(1) }})
	if retries.Load() == 0 {
		t.Fatal("no batch failed after all attempts: the test did not exercise the ordering rule")
	}
	recs := readTopic(t, cl, "overtake")
	if dups := checkOrdered(t, recs, seqs(1, 3000)); dups != 0 {
		t.Fatalf("%d duplicates: rejected produce requests store nothing, and records stored after a failure must not be written again", dups)
	}
	t.Logf("%d ordered re-publishes, %d produce requests", retries.Load(), calls.Load())
}

func TestPermanentErrors(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	t.Run("unknown-topic", func(t *testing.T) {
		cl := kafkatest.NewCluster(t) // no auto-creation
		s := newSink(t, cl, kafka.Config{Topic: "missing"})
		err := s.Publish(ctx, bridgetest.Notification(1))
		if !bridge.IsPermanent(err) || !strings.Contains(err.Error(), `"missing"`) {
			t.Fatalf("Publish = %v, want a permanent error naming the topic", err)
		}
	})
	t.Run("record-too-large-for-broker", func(t *testing.T) {
		cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1),
			kfake.BrokerConfigs(map[string]string{"message.max.bytes": "4000"}))
		s := newSink(t, cl, kafka.Config{Topic: "big", BatchSize: 50})
		notes := bridgetest.Notifications(1, 60, bridgetest.Size(600))
		notes[29] = bridgetest.Notification(30, bridgetest.Size(10000))
		var rejected []string
		drive(t, s, notes, bridgetest.DriveConfig{
			OnReject: func(n *bridge.Notification, err error) error {
				if !strings.Contains(err.Error(), `"big"`) {
					t.Errorf("error does not name the topic: %v", err)
				}
				rejected = append(rejected, n.ID)
				return nil
			},
		})
		if !slices.Equal(rejected, []string{"mars@30"}) {
			t.Fatalf("rejected %v, want [mars@30]", rejected)
		}
		want := append(seqs(1, 29), seqs(31, 30)...)
		recs := readTopic(t, cl, "big")
		if dups := checkOrdered(t, recs, want); dups != 0 || len(recs) != 59 {
			t.Fatalf("%d records with %d duplicates, want 59 without", len(recs), dups)
		}
	})
	t.Run("record-larger-than-batch-bytes", func(t *testing.T) {
		cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation())
		s := newSink(t, cl, kafka.Config{Topic: "local", BatchBytes: 2000})
		err := s.Publish(ctx, bridgetest.Notification(1, bridgetest.Size(5000)))
		if !bridge.IsPermanent(err) || !strings.Contains(err.Error(), `"local"`) {
			t.Fatalf("Publish = %v, want a permanent error naming the topic", err)
		}
	})
	t.Run("topic-authorization", func(t *testing.T) {
		cl := kafkatest.NewCluster(t, kfake.SeedTopics(1, "denied"))
		s := newSink(t, cl, kafka.Config{Topic: "denied"})
		f := cl.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "denied", Err: kerr.TopicAuthorizationFailed, Count: -1})
		t.Cleanup(f.Remove)
		if err := s.Publish(ctx, bridgetest.Notification(1)); err != nil {
			t.Fatal(err)
		}
		ack := <-s.Acks()
		if !bridge.IsPermanent(ack.Err) || !strings.Contains(ack.Err.Error(), `"denied"`) {
			t.Fatalf("ack error %v, want a permanent error naming the topic", ack.Err)
		}
		if err := s.Healthy(); err != nil {
			t.Errorf("Healthy = %v; a permanent rejection is not an outage", err)
		}
	})
	t.Run("retryable-leader-change", func(t *testing.T) {
		cl := kafkatest.NewCluster(t, kfake.SeedTopics(1, "flaky"))
		s := newSink(t, cl, kafka.Config{Topic: "flaky", MaxAttempts: 2})
		f := cl.Kfake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotLeaderForPartition, Count: -1})
		if err := s.Publish(ctx, bridgetest.Notification(1)); err != nil {
			t.Fatal(err)
		}
		ack := <-s.Acks()
		if ack.Err == nil || bridge.IsPermanent(ack.Err) || !strings.Contains(ack.Err.Error(), `"flaky"`) {
			t.Fatalf("ack error %v, want a retryable error naming the topic", ack.Err)
		}
		if s.Healthy() == nil {
			t.Error("Healthy = nil during a retryable failure")
		}
		// Held back until the failed notification is re-published.
		if err := s.Publish(ctx, bridgetest.Notification(2)); err != nil {
			t.Fatal(err)
		}
		if ack := <-s.Acks(); ack.Err == nil || bridge.IsPermanent(ack.Err) {
			t.Fatalf("publish after a failure: ack %v, want held back", ack.Err)
		}
		f.Remove()
		drive(t, s, bridgetest.Notifications(1, 2), bridgetest.DriveConfig{})
		if err := s.Healthy(); err != nil {
			t.Errorf("Healthy after recovery: %v", err)
		}
		if recs := readTopic(t, cl, "flaky"); len(recs) != 2 {
			t.Fatalf("%d records, want 2", len(recs))
		}
	})
}

func TestDeadLetter(t *testing.T) {
	cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	s := newSink(t, cl, kafka.Config{Topic: "main", DLQTopic: "dlq.{event_type}"})
	ctx := testContext(t, 20*time.Second)
	n := bridgetest.Notification(7)
	if err := s.DeadLetter(ctx, bridge.DeadLetter{Kind: bridge.DeadLetterRejected, Notification: n, Raw: n.CloudEvent, Reason: "too large"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ctx, bridge.DeadLetter{Kind: bridge.DeadLetterMalformed, Raw: []byte("{not json"), Event: "notify", Reason: "invalid JSON"}); err != nil {
		t.Fatal(err)
	}
	recs := readTopic(t, cl, "dlq.mars")
	if len(recs) != 2 {
		t.Fatalf("%d dead letters, want 2", len(recs))
	}
	headers := func(r *kgo.Record) map[string]string {
		m := map[string]string{}
		for _, h := range r.Headers {
			m[h.Key] = string(h.Value)
		}
		return m
	}
	rej, mal := recs[0], recs[1]
	if string(rej.Value) != string(n.CloudEvent) || string(rej.Key) != "mars" {
		t.Errorf("rejected: key %q value %s", rej.Key, rej.Value)
	}
	h := headers(rej)
	for k, v := range map[string]string{"ce_id": "mars@7", "ce_specversion": "1.0", "ce_type": n.Type, "ce_source": n.Source,
		"aviso_bridge_dlq_kind": "rejected", "aviso_bridge_dlq_reason": "too large"} {
		if h[k] != v {
			t.Errorf("rejected: header %s = %q, want %q", k, h[k], v)
		}
	}
	if string(mal.Value) != "{not json" || mal.Key != nil {
		t.Errorf("malformed: key %q value %q", mal.Key, mal.Value)
	}
	h = headers(mal)
	for k, v := range map[string]string{"aviso_bridge_dlq_kind": "malformed", "aviso_bridge_dlq_reason": "invalid JSON", "aviso_bridge_dlq_event": "notify"} {
		if h[k] != v {
			t.Errorf("malformed: header %s = %q, want %q", k, h[k], v)
		}
	}
	if _, ok := h["ce_id"]; ok {
		t.Error("malformed frame carries ce_id")
	}
}

func TestPublishAfterClose(t *testing.T) {
	cl := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation())
	s := newSink(t, cl, kafka.Config{})
	ctx := testContext(t, 10*time.Second)
	if err := s.Publish(ctx, bridgetest.Notification(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case ack := <-s.Acks():
		if ack.Err != nil {
			t.Fatalf("ack after Close: %v", ack.Err)
		}
	default:
		t.Fatal("Close returned before the outstanding ack")
	}
	if err := s.Publish(ctx, bridgetest.Notification(2)); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
}

func TestNewSinkFailsWithoutBrokers(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	addr := cl.Addr
	cl.Stop()
	_, err := kafka.NewSink(testContext(t, 20*time.Second), kafka.Config{Brokers: []string{addr}, EventType: "mars", DialTimeout: time.Second},
		kafka.Options{})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("NewSink = %v, want an error naming the brokers", err)
	}
}
