package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// scanDepth is how many of the newest records per partition the start-up
// scan reads at least: KAFKA_DEDUPE_SCAN, never fewer than
// max(2 x MaxInFlight, 1024).
func (c Config) scanDepth() int {
	return max(c.DedupeScan, 2*c.MaxInFlight, MinDedupeScan)
}

// scanLimit is the most records per partition the scan reads while looking
// for the resume position: KAFKA_DEDUPE_SCAN_MAX, at least scanDepth.
func (c Config) scanLimit() int {
	return max(c.DedupeScanMax, c.scanDepth())
}

// scan reads back the newest records of the partitions this bridge writes
// to and remembers the ce_id of each record of its event type, so that
// re-publishing after a crash does not write them again.
func (s *Sink) scan(ctx context.Context) error {
	switch {
	case s.cfg.DedupeScan < 0:
		s.log.Info("sink.kafka.dedupe.disabled", "reason", "turned off by configuration (scan depth -1)")
		return nil
	case s.topic.perNotice:
		s.log.Warn("sink.kafka.dedupe.disabled", "reason",
			"the topic template renders a topic per notification ({sequence}, {id}, {identifier.*} or {listener}); duplicates after a crash are possible",
			"topic_template", s.cfg.Topic)
		return nil
	case s.cfg.EventType == "" && strings.Contains(s.cfg.Topic, "{event_type}"):
		s.log.Warn("sink.kafka.dedupe.disabled", "reason", "no event type configured to render the topic template", "topic_template", s.cfg.Topic)
		return nil
	}
	probe := &bridge.Notification{EventType: s.cfg.EventType}
	topic := s.topic.render(probe)
	nparts, err := s.partitions(ctx, topic)
	if errors.Is(err, kafkago.UnknownTopicOrPartition) {
		s.log.Info("sink.kafka.dedupe.scanned", "topic", topic, "reason", "topic does not exist yet", "records", 0)
		return nil
	}
	if err != nil {
		return fmt.Errorf("kafka start-up scan of topic %q (brokers %v): %w", topic, s.cfg.Brokers, err)
	}
	parts := make([]int, 0, nparts)
	if !s.key.perNotice {
		// One key for this bridge: only its partition can hold its records.
		parts = append(parts, hashPartition(s.hash, s.key.renderBytes(probe), nparts))
	} else {
		for p := range nparts {
			parts = append(parts, p)
		}
	}
	prefix := ""
	if s.cfg.EventType != "" {
		prefix = s.cfg.EventType + "@"
	}
	depth, limit := s.cfg.scanDepth(), s.cfg.scanLimit()
	start := time.Now()
	read, reachedAll := 0, true
	for _, p := range parts {
		n, reached, err := s.scanPartition(ctx, topic, p, prefix, depth, limit)
		read += n
		reachedAll = reachedAll && reached
		if err != nil {
			return fmt.Errorf("kafka start-up scan of topic %q partition %d: %w", topic, p, err)
		}
	}
	s.log.Info("sink.kafka.dedupe.scanned", "topic", topic, "partitions", len(parts), "records", read,
		"ids", len(s.scanned), "resume_after", s.cfg.ResumeAfter, "reached_resume_position", reachedAll,
		"depth", depth, "limit", limit, "duration", time.Since(start).String())
	if !reachedAll && s.cfg.ResumeAfter > 0 {
		s.log.Warn("sink.kafka.dedupe.incomplete", "topic", topic, "limit", limit, "resume_after", s.cfg.ResumeAfter,
			"hint", "records older than the scanned ones that the bridge re-publishes are written again (duplicates); raise the scan's record limit (limit)")
	}
	return nil
}

// scanPartition reads a partition backwards from its end, in growing
// chunks, remembering the ce_id of every record of this event type. It
// stops once it has read depth records and seen one of ours at or below
// ResumeAfter (everything older stays below the resume position and is not
// re-published), at the partition's start, or after limit records. reached
// reports whether it stopped for the first or second reason.
func (s *Sink) scanPartition(ctx context.Context, topic string, partition int, prefix string, depth, limit int) (read int, reached bool, err error) {
	first, last, err := offsets(ctx, s.client, topic, partition)
	if err != nil {
		return 0, false, err
	}
	resume := s.cfg.ResumeAfter
	passed := false
	hi, chunk := last, int64(depth)
	for hi > first {
		if read >= limit {
			return read, false, nil
		}
		lo := max(first, hi-chunk, hi-int64(limit-read))
		_, _, err := readRange(ctx, s.client, topic, partition, lo, hi, func(r *kafkago.Record) error {
			id := recordID(r)
			if id == "" || !strings.HasPrefix(id, prefix) {
				return nil
			}
			s.scanned[id] = location{topic: topic, partition: partition}
			if resume > 0 && prefix != "" {
				if seq, err := strconv.ParseUint(id[len(prefix):], 10, 64); err == nil && seq <= resume {
					passed = true
				}
			}
			return nil
		})
		read += int(hi - lo) // offsets covered, whether or not compaction left records there
		if err != nil {
			return read, false, err
		}
		hi = lo
		if passed && read >= depth {
			return read, true, nil
		}
		chunk *= 2
	}
	return read, true, nil
}

// recordID returns the CloudEvent id of a record: the ce_id header (binary
// mode) or the body's "id" (structured mode); "" when neither.
func recordID(r *kafkago.Record) string {
	for _, h := range r.Headers {
		if h.Key == HeaderID {
			return string(h.Value)
		}
	}
	if r.Value == nil {
		return ""
	}
	body, err := kafkago.ReadAll(r.Value)
	if err != nil || len(body) == 0 || body[0] != '{' {
		return ""
	}
	var ce struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(body, &ce) != nil {
		return ""
	}
	return ce.ID
}

// offsets returns the log start offset and the high watermark of a partition.
func offsets(ctx context.Context, c *kafkago.Client, topic string, partition int) (first, last int64, err error) {
	get := func(req kafkago.OffsetRequest) (kafkago.PartitionOffsets, error) {
		res, err := c.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: {req}}})
		if err != nil {
			return kafkago.PartitionOffsets{}, err
		}
		for _, po := range res.Topics[topic] {
			if po.Partition == partition {
				return po, po.Error
			}
		}
		return kafkago.PartitionOffsets{}, kafkago.UnknownTopicOrPartition
	}
	f, err := get(kafkago.FirstOffsetOf(partition))
	if err != nil {
		return 0, 0, err
	}
	l, err := get(kafkago.LastOffsetOf(partition))
	if err != nil {
		return 0, 0, err
	}
	return f.FirstOffset, l.LastOffset, nil
}

// readRange calls fn for each record of a partition at offsets [from, to),
// oldest first. It returns the offset after the last record it saw (at
// least from) and how many records it read.
func readRange(ctx context.Context, c *kafkago.Client, topic string, partition int, from, to int64, fn func(*kafkago.Record) error) (next int64, read int, err error) {
	offset := from
	for offset < to {
		res, err := c.Fetch(ctx, &kafkago.FetchRequest{
			Topic: topic, Partition: partition, Offset: offset,
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 250 * time.Millisecond,
		})
		if err != nil {
			return offset, read, err
		}
		if res.Error != nil {
			return offset, read, res.Error
		}
		progressed := false
		for {
			r, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				closeRecords(res.Records)
				return offset, read, err
			}
			if r.Offset < offset {
				continue // batches may start before the requested offset
			}
			if r.Offset >= to {
				break
			}
			offset, progressed = r.Offset+1, true
			read++
			if err := fn(r); err != nil {
				closeRecords(res.Records)
				return offset, read, err
			}
		}
		closeRecords(res.Records)
		if !progressed {
			// Nothing readable before the high watermark (compacted away or
			// control records): done.
			return to, read, nil
		}
	}
	return max(offset, from), read, nil
}

func closeRecords(r kafkago.RecordReader) {
	if c, ok := r.(io.Closer); ok {
		_ = c.Close()
	}
}
