package kafkatopic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
		return fmt.Errorf("%s: metadata: %w", st.where(), err)
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
		return fmt.Errorf("%s: create: %w", st.where(), err)
	}
	st.log.Info("checkpoint.kafka.topic_created", "topic", st.topic, "cleanup_policy", "compact", "partitions", 1)
	return nil
}

// findPartition is where the key's records live (kafka.Hash, as a Writer
// would pick).
func (st *Store) findPartition(ctx context.Context) (int, error) {
	parts, err := partitions(ctx, st.client, st.topic, st.timeout)
	if err != nil {
		return 0, err
	}
	return partitionOf(st.key, parts), nil
}

// partitionOf is the partition of key's records among parts.
func partitionOf(key string, parts []int) int {
	return (&kafkago.Hash{}).Balance(kafkago.Message{Key: []byte(key)}, parts...)
}

// partitions lists the topic's partitions.
func partitions(ctx context.Context, client *kafkago.Client, topic string, timeout time.Duration) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	md, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, t.Error
		}
		parts := make([]int, len(t.Partitions))
		for i := range parts {
			parts[i] = i
		}
		if len(parts) > 0 {
			return parts, nil
		}
	}
	return nil, kafkago.UnknownTopicOrPartition
}

// catchUp reads what was written to the partition since the last look,
// within the store's timeout, and applies the key's records. Once the key
// is ours, a winning claim by another owner is a *lease.HeldError, which
// every later catchUp returns. A failed read makes the store unhealthy
// unless ctx itself ended (Close stopping the refresher, a caller giving
// up). Called with opMu held.
func (st *Store) catchUp(ctx context.Context) error {
	if err := st.reader.readNew(ctx, st.applyRecord); err != nil {
		err = fmt.Errorf("%s %w", st.where(), err)
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

// AwaitChange implements lease.Watcher: one long poll of the partition
// from where the store last read (see partReader.await).
func (b *backend) AwaitChange(ctx context.Context, d time.Duration) error {
	st := (*Store)(b)
	st.opMu.Lock()
	defer st.opMu.Unlock()
	if err := st.reader.await(ctx, d, st.applyRecord); err != nil {
		return fmt.Errorf("%s %w", st.where(), err)
	}
	return nil
}

// applyRecord applies a record of the partition when it is the key's.
func (st *Store) applyRecord(off int64, key, value []byte, _ time.Time) error {
	if bytes.Equal(key, []byte(st.key)) {
		st.apply(off, value)
	}
	return nil
}

// apply folds the key's record at offset off (value v, nil for a
// tombstone) into the store's view. Called with opMu held.
func (st *Store) apply(off int64, v []byte) {
	if v == nil { // tombstone: the key was deleted
		st.newest, st.own.holder = newestRecord{}, ""
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
	if !st.own.apply(off, rec) {
		return // a lost claim changes nothing, not even the checkpoint
	}
	if rec.Claim && st.claimed && rec.Owner != st.owner && st.lostTo.owner == "" {
		st.lostTo = ownerMark{rec.Owner, off}
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

// write produces rec under the key with acks=all and returns its offset.
func (st *Store) write(ctx context.Context, rec record) (int64, error) {
	body, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	return st.reader.produce(ctx, st.key, body)
}
