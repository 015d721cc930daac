package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	natsgo "github.com/nats-io/nats.go"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/kafkatopic"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/natskv"
	kafkasink "github.com/aviso-bridge/aviso-bridge/sinks/kafka"
	natssink "github.com/aviso-bridge/aviso-bridge/sinks/nats"
)

// clients are the connections the sink and the checkpoint store share:
// one NATS connection and one Kafka transport, opened on first use and
// closed by close, after both.
type clients struct {
	cfg   *Config
	log   *slog.Logger
	owner string // this process's owner id in checkpoint leases: BRIDGE_INSTANCE_ID

	// mu guards the connections: the listeners open them concurrently,
	// the first one connects.
	mu sync.Mutex
	nc *natsgo.Conn
	kt *kafkago.Transport
}

func newClients(cfg *Config, log *slog.Logger) *clients {
	owner := fleetOwner(cfg)
	if owner == "" {
		owner = lease.OwnerID()
	}
	return &clients{cfg: cfg, log: log, owner: owner}
}

// fleetOwner is the owner id of this process's leases in a fleet:
// BRIDGE_INSTANCE_ID with BRIDGE_STANDBY, so that the coordinator reports
// holders by instance id; "" otherwise, where a lease names the process
// (host/pid/random, the file store's lock "pid N") as it always did.
func fleetOwner(cfg *Config) string {
	if cfg.Bridge.Standby {
		return cfg.Bridge.InstanceID
	}
	return ""
}

// nats returns the NATS connection, connecting (and waiting for a server
// that is still starting) on first use.
func (c *clients) nats(ctx context.Context) (*natsgo.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nc != nil {
		return c.nc, nil
	}
	// The connection's events are the sink's when the sink is NATS.
	events := "checkpoint.nats_kv"
	if c.cfg.Sink == "nats" || c.cfg.Sink == "jetstream" {
		events = "sink.nats"
	}
	nc, err := retryStart(ctx, c.log, "NATS connection", func() (*natsgo.Conn, error) {
		return natssink.Connect(ctx, natsConn(c.cfg), natssink.ConnectOptions{Logger: c.log, Events: events})
	})
	if err != nil {
		return nil, err
	}
	c.nc = nc
	return nc, nil
}

// kafka returns the Kafka transport, built on first use.
func (c *clients) kafka() (*kafkago.Transport, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kt != nil {
		return c.kt, nil
	}
	kc, err := kafkaConfig(c.cfg)
	if err != nil {
		return nil, err
	}
	kt, err := kafkasink.NewTransport(kc)
	if err != nil {
		return nil, &ConfigError{Err: libraryError(libKafka, err)}
	}
	c.kt = kt
	return kt, nil
}

// kafkaClient is a kafka-go client on the shared transport, for the
// checkpoint topic.
func (c *clients) kafkaClient() (*kafkago.Client, error) {
	kt, err := c.kafka()
	if err != nil {
		return nil, err
	}
	kc, _ := kafkaConfig(c.cfg) // validated by c.kafka
	timeout := c.cfg.Kafka.WriteTimeout
	if timeout == 0 {
		timeout = kafkatopic.DefaultTimeout
	}
	return &kafkago.Client{Addr: kafkago.TCP(kc.Brokers...), Transport: kt, Timeout: timeout}, nil
}

// close closes what was opened.
func (c *clients) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nc != nil {
		c.nc.Close()
	}
	if c.kt != nil {
		c.kt.CloseIdleConnections()
	}
}

// leaseConfig is the lease of every store: CHECKPOINT_LEASE_TTL, the
// acquisition mode, and one owner id for every attempt, so that a retried
// open whose claim was written but not answered takes the key at once.
func (c *clients) leaseConfig(mode lease.Mode) lease.Config {
	return lease.Config{TTL: c.cfg.Checkpoint.LeaseTTL, Owner: c.owner, Mode: mode}
}

// storeConfigs are the remote stores' configurations for key.
func storeConfigs(cfg *Config, key string) (natskv.Config, kafkatopic.Config) {
	l := lease.Config{TTL: cfg.Checkpoint.LeaseTTL}
	return natskv.Config{Bucket: cfg.NATS.KVBucket, Key: key, Lease: l},
		kafkatopic.Config{Topic: cfg.Kafka.CheckpointTopic, Key: key, Timeout: cfg.Kafka.WriteTimeout, Lease: l}
}

// validateStore checks the configured remote store's settings for key.
func validateStore(cfg *Config, key string) error {
	if cfg.Checkpoint.LeaseTTL <= 0 {
		return fmt.Errorf("CHECKPOINT_LEASE_TTL: %v must be positive", cfg.Checkpoint.LeaseTTL)
	}
	if err := (lease.Config{TTL: cfg.Checkpoint.LeaseTTL}).Validate(); err != nil {
		return fmt.Errorf("CHECKPOINT_LEASE_TTL: %w", err)
	}
	nc, kc := storeConfigs(cfg, key)
	switch cfg.Checkpoint.Store {
	case "nats-kv":
		return nc.Validate()
	case "kafka":
		return kc.Validate()
	}
	return nil
}

// openStore opens the configured checkpoint store for key, taking its
// lease in mode, on the shared connections of cl.
func openStore(ctx context.Context, cfg *Config, key string, mode lease.Mode, log *slog.Logger, cl *clients) (bridge.Store, error) {
	nkc, kkc := storeConfigs(cfg, key)
	switch cfg.Checkpoint.Store {
	case storeFile:
		return openFileStore(ctx, cfg, key, mode)
	case storeNATSKV:
		nc, err := cl.nats(ctx)
		if err != nil {
			return nil, err
		}
		nkc.Lease = cl.leaseConfig(mode)
		return retryStart(ctx, log, "nats-kv checkpoint store", func() (bridge.Store, error) {
			return natskv.Open(ctx, nc, nkc, log)
		})
	case storeKafka:
		client, err := cl.kafkaClient()
		if err != nil {
			return nil, err
		}
		kkc.Lease = cl.leaseConfig(mode)
		return retryStart(ctx, log, "kafka checkpoint store", func() (bridge.Store, error) {
			return kafkatopic.Open(ctx, client, kkc, log)
		})
	case storeNone:
		log.Warn("bridge.checkpoint.none", "hint", "CHECKPOINT_STORE=none keeps no position: a restart starts again from AVISO_FROM_* or live; for trials only")
		return checkpoint.NewMemory().Open(key)
	}
	return nil, &ConfigError{Err: fmt.Errorf("CHECKPOINT_STORE: %q is not supported", cfg.Checkpoint.Store)}
}

// openFileStore opens key in CHECKPOINT_FILE (its lock naming the fleet
// owner): at once (held: an error), or, in lease.Standby, waiting for the
// key's lock.
func openFileStore(ctx context.Context, cfg *Config, key string, mode lease.Mode) (bridge.Store, error) {
	s, err := checkpoint.OpenFileLease(ctx, cfg.Checkpoint.File, key, lease.Config{Owner: fleetOwner(cfg), Mode: mode})
	if err != nil {
		return nil, nameSetting("CHECKPOINT_FILE", err)
	}
	return s, nil
}

// storeAdmin is the configured store as a whole: the checkpoint admin and
// the coordinator of a fleet.
type storeAdmin interface {
	checkpoint.Admin
	checkpoint.Coordinator
}

// openAdmin opens the configured store as a whole, on the shared
// connections of cl; lc is the admin's lease (TTL and owner) when it takes
// a key to change it. CHECKPOINT_STORE=none has none.
func openAdmin(ctx context.Context, cfg *Config, lc lease.Config, log *slog.Logger, cl *clients) (storeAdmin, error) {
	switch cfg.Checkpoint.Store {
	case storeFile:
		a, err := checkpoint.OpenFileAdmin(cfg.Checkpoint.File)
		if err != nil {
			return nil, nameSetting("CHECKPOINT_FILE", err)
		}
		return a, nil
	case storeNATSKV:
		nc, err := cl.nats(ctx)
		if err != nil {
			return nil, err
		}
		return retryStart(ctx, log, "nats-kv checkpoint bucket", func() (storeAdmin, error) {
			return natskv.OpenBucket(ctx, nc, natskv.BucketConfig{Bucket: cfg.NATS.KVBucket, Lease: lc}, log)
		})
	case storeKafka:
		client, err := cl.kafkaClient()
		if err != nil {
			return nil, err
		}
		tc := kafkatopic.TopicConfig{Topic: cfg.Kafka.CheckpointTopic, Timeout: cfg.Kafka.WriteTimeout, Lease: lc}
		return retryStart(ctx, log, "kafka checkpoint topic", func() (storeAdmin, error) {
			return kafkatopic.OpenTopic(ctx, client, tc, log)
		})
	}
	return nil, &ConfigError{Err: fmt.Errorf("CHECKPOINT_STORE=%s keeps no positions to share or change; use file, nats-kv or kafka", cfg.Checkpoint.Store)}
}
