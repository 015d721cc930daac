package kafkatopic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

// bounded limits one request-and-answer step to the store's timeout.
func (st *Store) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, st.timeout)
}

// ensureTopic creates the compacted topic when it does not exist.
func (st *Store) ensureTopic(ctx context.Context, replication int) error {
	ctx, cancel := st.bounded(ctx)
	defer cancel()
	md, err := st.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{st.topic}})
	if err != nil {
		return fmt.Errorf("KAFKA_CHECKPOINT_TOPIC %q: metadata: %w", st.topic, err)
	}
	for _, t := range md.Topics {
		if t.Name == st.topic && t.Error == nil && len(t.Partitions) > 0 {
			return nil
		}
	}
	if replication == 0 {
		replication = -1
	}
	res, err := st.client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{
		Topic:             st.topic,
		NumPartitions:     1,
		ReplicationFactor: replication,
		ConfigEntries: []kafkago.ConfigEntry{
			{ConfigName: "cleanup.policy", ConfigValue: "compact"},
			// Roll segments hourly so compaction can reach old commits
			// (the active segment is never compacted; the broker default
			// is 7 days) and Load reads little.
			{ConfigName: "segment.ms", ConfigValue: "3600000"},
		},
	}}})
	if err == nil {
		err = res.Errors[st.topic]
	}
	if err != nil && !errors.Is(err, kafkago.TopicAlreadyExists) {
		return fmt.Errorf("KAFKA_CHECKPOINT_TOPIC %q: create: %w", st.topic, err)
	}
	st.log.Info("checkpoint.kafka.topic_created", "topic", st.topic, "cleanup_policy", "compact", "partitions", 1)
	return nil
}

// findPartition is where the key's records live (kafka.Hash, as a Writer
// would pick).
func (st *Store) findPartition(ctx context.Context) (int, error) {
	ctx, cancel := st.bounded(ctx)
	defer cancel()
	md, err := st.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{st.topic}})
	if err != nil {
		return 0, err
	}
	for _, t := range md.Topics {
		if t.Name != st.topic {
			continue
		}
		if t.Error != nil {
			return 0, t.Error
		}
		parts := make([]int, len(t.Partitions))
		for i := range parts {
			parts[i] = i
		}
		if len(parts) > 0 {
			return (&kafkago.Hash{}).Balance(kafkago.Message{Key: []byte(st.key)}, parts...), nil
		}
	}
	return 0, kafkago.UnknownTopicOrPartition
}

// catchUp reads what was written to the partition since the last look,
// within the store's timeout, and applies the key's records. Once the key
// is ours, a winning claim by another owner is a *lease.HeldError, which
// every later catchUp returns. A failed read makes the store unhealthy
// unless ctx itself ended (Close stopping the refresher, a caller giving
// up). Called with opMu held.
func (st *Store) catchUp(ctx context.Context) error {
	rctx, cancel := st.bounded(ctx)
	defer cancel()
	err := st.readNew(rctx)
	if err != nil {
		if ctx.Err() == nil {
			st.setHealth(err)
		}
		return err
	}
	if st.lostTo.owner != "" {
		return &lease.HeldError{Where: st.where(), Key: st.key, Holder: st.lostTo.owner,
			Detail: fmt.Sprintf("claimed at offset %d: it took the key over", st.lostTo.offset)}
	}
	st.setHealth(nil)
	return nil
}

// readNew reads the partition from readOffset to its end.
func (st *Store) readNew(ctx context.Context) error {
	first, last, err := st.bounds(ctx)
	if err != nil {
		return fmt.Errorf("%s partition %d: %w", st.where(), st.partition, err)
	}
	st.readOffset = max(st.readOffset, first)
	for st.readOffset < last {
		n, err := st.fetch(ctx, last, 250*time.Millisecond)
		if err != nil {
			return fmt.Errorf("%s partition %d: read: %w", st.where(), st.partition, err)
		}
		if n == 0 {
			// Nothing readable before the high watermark (compacted away
			// or control records).
			st.readOffset = last
		}
	}
	return nil
}

// AwaitChange implements lease.Watcher: one long poll of the partition
// from where the store last read, which the broker answers as soon as
// anything is written (or after d, at most half the store's timeout).
func (b *backend) AwaitChange(ctx context.Context, d time.Duration) error {
	st := (*Store)(b)
	st.opMu.Lock()
	defer st.opMu.Unlock()
	d = min(d, st.timeout/2)
	rctx, cancel := st.bounded(ctx)
	defer cancel()
	if _, err := st.fetch(rctx, math.MaxInt64, d); err != nil {
		return fmt.Errorf("%s partition %d: wait for a change: %w", st.where(), st.partition, err)
	}
	return nil
}

// bounds returns the partition's log start offset and high watermark.
func (st *Store) bounds(ctx context.Context) (first, last int64, err error) {
	if first, err = st.offset(ctx, kafkago.FirstOffsetOf(st.partition)); err != nil {
		return 0, 0, err
	}
	last, err = st.offset(ctx, kafkago.LastOffsetOf(st.partition))
	return first, last, err
}

// offset answers one offset request for the key's partition.
func (st *Store) offset(ctx context.Context, req kafkago.OffsetRequest) (int64, error) {
	topics := map[string][]kafkago.OffsetRequest{st.topic: {req}}
	res, err := st.client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: topics})
	if err != nil {
		return 0, err
	}
	for _, po := range res.Topics[st.topic] {
		switch {
		case po.Partition != st.partition:
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

// fetch reads one batch from readOffset, applying the key's records below
// end, and returns how many records it applied or skipped.
func (st *Store) fetch(ctx context.Context, end int64, wait time.Duration) (int, error) {
	res, err := st.client.Fetch(ctx, &kafkago.FetchRequest{
		Topic: st.topic, Partition: st.partition, Offset: st.readOffset,
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
		r, err := res.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if r.Offset < st.readOffset { // batches may start before the requested offset
			continue
		}
		if r.Offset >= end {
			return n, nil
		}
		st.readOffset = r.Offset + 1
		n++
		if v, ok, err := st.value(r); err != nil {
			return n, err
		} else if ok {
			st.apply(r.Offset, v)
		}
	}
}

// value returns the value of r when its key is ours (ok), nil for a
// tombstone.
func (st *Store) value(r *kafkago.Record) (v []byte, ok bool, err error) {
	if r.Key == nil {
		return nil, false, nil
	}
	k, err := kafkago.ReadAll(r.Key)
	if err != nil || !bytes.Equal(k, []byte(st.key)) {
		return nil, false, err
	}
	if r.Value == nil {
		return nil, true, nil
	}
	v, err = kafkago.ReadAll(r.Value)
	return v, err == nil, err
}

// apply folds the key's record at offset off (value v, nil for a
// tombstone) into the store's view. Called with opMu held.
func (st *Store) apply(off int64, v []byte) {
	if v == nil { // tombstone: the key was deleted
		st.newest, st.holder = newestRecord{}, ""
		return
	}
	var rec record
	if err := json.Unmarshal(v, &rec); err != nil {
		st.newest = newestRecord{err: fmt.Errorf("%s key %s offset %d: unreadable checkpoint: %w", st.where(), st.key, off, err)}
		return
	}
	if rec.Owner != "" && rec.Owner != st.owner {
		st.foreign = ownerMark{rec.Owner, off}
	}
	if !st.applyOwner(off, rec) {
		return // a lost claim changes nothing, not even the checkpoint
	}
	st.newest = newestRecord{}
	if rec.Sequence == nil {
		return
	}
	st.newest.cp, st.newest.found = bridge.Checkpoint{Sequence: *rec.Sequence, EventID: rec.EventID, UpdatedAt: rec.UpdatedAt}, true
	if st.claimed && (!st.have || *rec.Sequence > st.cp.Sequence) {
		if rec.Owner != st.owner {
			st.log.Warn("checkpoint.kafka.foreign_commit", "topic", st.topic, "key", st.key,
				"owner", rec.Owner, "sequence", *rec.Sequence, "offset", off)
		}
		st.cp, st.have = st.newest.cp, true
	}
}

// applyOwner folds the owner of the record at off into the holder; false
// for a claim that lost.
func (st *Store) applyOwner(off int64, rec record) bool {
	switch {
	case rec.Owner == "":
		// A release (or a value written by hand): the key is free unless
		// it names someone else than the holder as the releaser, a bridge
		// that lost the key without noticing yet.
		if rec.ReleasedBy == "" || rec.ReleasedBy == st.holder {
			st.holder = ""
		}
	case rec.Claim:
		other := st.lastOther(rec.Owner)
		won := rec.Basis == nil || other.owner == "" || other.offset < *rec.Basis
		st.mark(rec.Owner, off)
		if !won {
			return false
		}
		if st.claimed && rec.Owner != st.owner && st.lostTo.owner == "" {
			st.lostTo = ownerMark{rec.Owner, off}
		}
		st.holder = rec.Owner
	default: // a refresh or a commit
		st.mark(rec.Owner, off)
		if st.holder == "" {
			st.holder = rec.Owner
		}
	}
	return true
}

// mark notes that owner wrote the key at offset off.
func (st *Store) mark(owner string, off int64) {
	if st.recent[0].owner != owner {
		st.recent[1] = st.recent[0]
	}
	st.recent[0] = ownerMark{owner: owner, offset: off}
}

// lastOther is the newest record with an owner other than owner (zero
// when there is none).
func (st *Store) lastOther(owner string) ownerMark {
	for _, m := range st.recent {
		if m.owner != "" && m.owner != owner {
			return m
		}
	}
	return ownerMark{}
}

// write produces rec under the key with acks=all and returns its offset.
func (st *Store) write(ctx context.Context, rec record) (int64, error) {
	body, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	ctx, cancel := st.bounded(ctx)
	defer cancel()
	res, err := st.client.Produce(ctx, &kafkago.ProduceRequest{
		Topic:        st.topic,
		Partition:    st.partition,
		RequiredAcks: kafkago.RequireAll,
		Records:      kafkago.NewRecordReader(kafkago.Record{Time: time.Now(), Key: kafkago.NewBytes([]byte(st.key)), Value: kafkago.NewBytes(body)}),
	})
	if err != nil {
		return 0, err
	}
	if res.Error != nil {
		return 0, res.Error
	}
	return res.BaseOffset, nil
}
