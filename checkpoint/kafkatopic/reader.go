package kafkatopic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// applyFunc folds one record read from a partition: its offset, key,
// value (nil for a tombstone) and time.
type applyFunc func(off int64, key, value []byte, at time.Time) error

// partReader reads one partition of the topic from where it last stopped.
type partReader struct {
	client    *kafkago.Client
	topic     string
	partition int
	timeout   time.Duration
	next      int64 // next offset to read
}

// readNew reads the partition from next to its end, within the timeout.
func (r *partReader) readNew(ctx context.Context, apply applyFunc) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	first, last, err := r.bounds(ctx)
	if err != nil {
		return fmt.Errorf("partition %d: %w", r.partition, err)
	}
	r.next = max(r.next, first)
	for r.next < last {
		n, err := r.fetch(ctx, last, 250*time.Millisecond, apply)
		if err != nil {
			return fmt.Errorf("partition %d: read: %w", r.partition, err)
		}
		if n == 0 {
			// Nothing readable before the high watermark (compacted away
			// or control records).
			r.next = last
		}
	}
	return nil
}

// await is one long poll from next, which the broker answers as soon as
// anything is written (or after d, at most half the timeout).
func (r *partReader) await(ctx context.Context, d time.Duration, apply applyFunc) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if _, err := r.fetch(ctx, math.MaxInt64, min(d, r.timeout/2), apply); err != nil {
		return fmt.Errorf("partition %d: wait for a change: %w", r.partition, err)
	}
	return nil
}

// bounds returns the partition's log start offset and high watermark.
func (r *partReader) bounds(ctx context.Context) (first, last int64, err error) {
	if first, err = r.offset(ctx, kafkago.FirstOffsetOf(r.partition)); err != nil {
		return 0, 0, err
	}
	last, err = r.offset(ctx, kafkago.LastOffsetOf(r.partition))
	return first, last, err
}

// offset answers one offset request for the partition.
func (r *partReader) offset(ctx context.Context, req kafkago.OffsetRequest) (int64, error) {
	topics := map[string][]kafkago.OffsetRequest{r.topic: {req}}
	res, err := r.client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: topics})
	if err != nil {
		return 0, err
	}
	for _, po := range res.Topics[r.topic] {
		switch {
		case po.Partition != r.partition:
		case po.Error != nil:
			return 0, po.Error
		case req.Timestamp == kafkago.FirstOffset:
			return po.FirstOffset, nil
		default:
			return po.LastOffset, nil
		}
	}
	return 0, kafkago.UnknownTopicOrPartition
}

// fetch reads one batch from next, applying the records below end, and
// returns how many records it applied or skipped.
func (r *partReader) fetch(ctx context.Context, end int64, wait time.Duration, apply applyFunc) (int, error) {
	res, err := r.client.Fetch(ctx, &kafkago.FetchRequest{
		Topic: r.topic, Partition: r.partition, Offset: r.next,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: wait,
	})
	if err != nil {
		return 0, err
	}
	if res.Error != nil {
		return 0, res.Error
	}
	defer func() {
		if c, ok := res.Records.(io.Closer); ok {
			_ = c.Close()
		}
	}()
	n := 0
	for {
		rec, err := res.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if rec.Offset < r.next { // batches may start before the requested offset
			continue
		}
		if rec.Offset >= end {
			return n, nil
		}
		r.next = rec.Offset + 1
		n++
		if err := applyRecord(rec, apply); err != nil {
			return n, err
		}
	}
}

// applyRecord reads rec's key and value and applies them; a record
// without a key is skipped.
func applyRecord(rec *kafkago.Record, apply applyFunc) error {
	if rec.Key == nil {
		return nil
	}
	k, err := kafkago.ReadAll(rec.Key)
	if err != nil {
		return err
	}
	var v []byte
	if rec.Value != nil {
		if v, err = kafkago.ReadAll(rec.Value); err != nil {
			return err
		}
	}
	return apply(rec.Offset, k, v, rec.Time)
}

// produce writes body (nil: a tombstone) under key to the partition with
// acks=all and returns its offset.
func (r *partReader) produce(ctx context.Context, key string, body []byte) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	res, err := r.client.Produce(ctx, &kafkago.ProduceRequest{
		Topic:        r.topic,
		Partition:    r.partition,
		RequiredAcks: kafkago.RequireAll,
		Records:      kafkago.NewRecordReader(kafkago.Record{Time: time.Now(), Key: kafkago.NewBytes([]byte(key)), Value: kafkago.NewBytes(body)}),
	})
	if err != nil {
		return 0, err
	}
	if res.Error != nil {
		return 0, res.Error
	}
	return res.BaseOffset, nil
}
