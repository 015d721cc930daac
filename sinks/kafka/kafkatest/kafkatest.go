// Package kafkatest holds test and benchmark helpers for the Kafka side of
// aviso-bridge, in the manner of net/http/httptest: an in-process kfake
// cluster that can be stopped and restarted on the same port, a reader that
// returns every record of a topic, a generator of aviso-shaped
// notifications, and a minimal ordered driver that plays the pipeline's part
// against any bridge.Sink.
package kafkatest

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Cluster is an in-process kfake cluster of one broker on 127.0.0.1. With
// kfake.DataDir among its options, Stop and Start keep the data across a
// restart on the same port.
type Cluster struct {
	// Addr is the broker's host:port.
	Addr string

	tb   testing.TB
	opts []kfake.Opt

	mu sync.Mutex
	c  *kfake.Cluster
}

// NewCluster starts a one-broker kfake cluster with opts (after
// kfake.NumBrokers(1), so opts may override it) and closes it in
// tb.Cleanup.
func NewCluster(tb testing.TB, opts ...kfake.Opt) *Cluster {
	tb.Helper()
	all := append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		tb.Fatalf("kafkatest: start kfake: %v", err)
	}
	cl := &Cluster{Addr: c.ListenAddrs()[0], tb: tb, opts: all, c: c}
	tb.Cleanup(cl.Stop)
	return cl
}

// NewRestartableCluster is NewCluster with kfake.DataDir(tb.TempDir()), so
// that Stop and Start keep every record.
func NewRestartableCluster(tb testing.TB, opts ...kfake.Opt) *Cluster {
	tb.Helper()
	return NewCluster(tb, append([]kfake.Opt{kfake.DataDir(tb.TempDir())}, opts...)...)
}

// Kfake returns the running kfake cluster (nil while stopped).
func (cl *Cluster) Kfake() *kfake.Cluster {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.c
}

// Stop closes the cluster; clients see refused connections until Start.
func (cl *Cluster) Stop() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.c != nil {
		cl.c.Close()
		cl.c = nil
	}
}

// Start starts the cluster again on the same port with the same options.
func (cl *Cluster) Start() {
	cl.tb.Helper()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.c != nil {
		return
	}
	_, portText, _ := strings.Cut(cl.Addr, ":")
	port, _ := strconv.Atoi(portText)
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		cl.c, err = kfake.NewCluster(append(cl.opts, kfake.Ports(port))...)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the port may linger briefly after Close
	}
	if err != nil {
		cl.tb.Fatalf("kafkatest: restart kfake on port %d: %v", port, err)
	}
}

// Client returns a franz-go client for the cluster, closed in tb.Cleanup.
func (cl *Cluster) Client(opts ...kgo.Opt) *kgo.Client {
	cl.tb.Helper()
	c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cl.Addr)}, opts...)...)
	if err != nil {
		cl.tb.Fatalf("kafkatest: kgo client: %v", err)
	}
	cl.tb.Cleanup(c.Close)
	return c
}

// Records returns every record of topic, partition by partition in offset
// order. opts are extra kgo options (for example SASL or TLS dialing).
func (cl *Cluster) Records(ctx context.Context, topic string, opts ...kgo.Opt) ([]*kgo.Record, error) {
	return ReadTopic(ctx, append([]kgo.Opt{kgo.SeedBrokers(cl.Addr)}, opts...), topic)
}

// ReadTopic reads every record of topic up to the high watermarks current
// when it starts, with a kgo client built from opts (which must name the
// seed brokers). The result is sorted by partition, then offset.
func ReadTopic(ctx context.Context, opts []kgo.Opt, topic string) ([]*kgo.Record, error) {
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, topic)
	admin.Close()
	if err != nil {
		return nil, err
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("end offsets of %q: %w", topic, err)
	}
	want := map[int32]int64{}
	start := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			start[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(want) == 0 {
		return nil, nil
	}
	c, err := kgo.NewClient(append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
		kgo.FetchMaxWait(100*time.Millisecond))...)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var out []*kgo.Record
	next := map[int32]int64{}
	for done := 0; done < len(want); {
		f := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("reading %q: %w (have %d records)", topic, err, len(out))
		}
		var ferr error
		f.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("fetch %s/%d: %w", t, p, err) })
		if ferr != nil {
			return out, ferr
		}
		f.EachRecord(func(r *kgo.Record) {
			end := want[r.Partition]
			if r.Offset >= end {
				return
			}
			out = append(out, r)
			next[r.Partition] = r.Offset + 1
			if r.Offset+1 == end {
				done++
			}
		})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out, nil
}

// Header returns the value of header key of r, and whether it is present.
func Header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}
