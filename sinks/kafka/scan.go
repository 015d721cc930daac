package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// scanDepth is how many of the newest records per partition the start-up
// scan reads: KAFKA_DEDUPE_SCAN, never fewer than max(2 x MaxInFlight, 1024).
func (c Config) scanDepth() int {
	return max(c.DedupeScan, 2*c.MaxInFlight, MinDedupeScan)
}

// scan reads back the newest records of the partitions this bridge writes
// to and remembers the ce_id of each record of its event type, so that
// re-publishing after a crash does not write them again.
func (s *Sink) scan(ctx context.Context) error {
	switch {
	case s.cfg.DedupeScan < 0:
		s.log.Info("kafka.dedupe.disabled", "reason", "KAFKA_DEDUPE_SCAN=-1")
		return nil
	case s.topic.perNotice:
		s.log.Warn("kafka.dedupe.disabled", "reason",
			"KAFKA_TOPIC renders a topic per notification ({sequence}, {id} or {identifier.*}); duplicates after a crash are possible",
			"topic_template", s.cfg.Topic)
		return nil
	case s.cfg.EventType == "" && strings.Contains(s.cfg.Topic, "{event_type}"):
		s.log.Warn("kafka.dedupe.disabled", "reason", "no event type configured to render KAFKA_TOPIC", "topic_template", s.cfg.Topic)
		return nil
	}
	probe := &bridge.Notification{EventType: s.cfg.EventType}
	topic := s.topic.render(probe)
	nparts, err := s.partitions(ctx, topic)
	if errors.Is(err, kafkago.UnknownTopicOrPartition) {
		s.log.Info("kafka.dedupe.scanned", "topic", topic, "reason", "topic does not exist yet", "records", 0)
		return nil
	}
	if err != nil {
		return fmt.Errorf("kafka start-up scan of topic %q (KAFKA_BROKERS=%v): %w", topic, s.cfg.Brokers, err)
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
	depth := s.cfg.scanDepth()
	start := time.Now()
	read := 0
	for _, p := range parts {
		n, err := readNewest(ctx, s.client, topic, p, depth, func(r *kafkago.Record) error {
			id := recordID(r)
			if id != "" && strings.HasPrefix(id, prefix) {
				s.scanned[id] = location{topic: topic, partition: p}
			}
			return nil
		})
		read += n
		if err != nil {
			return fmt.Errorf("kafka start-up scan of topic %q partition %d: %w", topic, p, err)
		}
	}
	s.log.Info("kafka.dedupe.scanned", "topic", topic, "partitions", len(parts), "depth", depth,
		"records", read, "ids", len(s.scanned), "duration", time.Since(start).String())
	return nil
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

// readNewest calls fn for each of the newest depth records of a partition
// (all of them when depth <= 0), oldest first, and returns how many it read.
func readNewest(ctx context.Context, c *kafkago.Client, topic string, partition, depth int, fn func(*kafkago.Record) error) (int, error) {
	first, last, err := offsets(ctx, c, topic, partition)
	if err != nil {
		return 0, err
	}
	from := first
	if depth > 0 {
		from = max(first, last-int64(depth))
	}
	_, read, err := readRange(ctx, c, topic, partition, from, last, fn)
	return read, err
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
