package main

import (
	"context"
	"fmt"
	"log/slog"

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
	owner string // this process's owner id in checkpoint leases

	nc *natsgo.Conn
	kt *kafkago.Transport
}

func newClients(cfg *Config, log *slog.Logger) *clients {
	return &clients{cfg: cfg, log: log, owner: lease.OwnerID()}
}

// nats returns the NATS connection, connecting (and waiting for a server
// that is still starting) on first use.
func (c *clients) nats(ctx context.Context) (*natsgo.Conn, error) {
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

// close closes what was opened.
func (c *clients) close() {
	if c.nc != nil {
		c.nc.Close()
	}
	if c.kt != nil {
		c.kt.CloseIdleConnections()
	}
}

// leaseConfig is the lease of every remote store: CHECKPOINT_LEASE_TTL
// and one owner id for every attempt, so that a retried open whose claim
// was written but not answered takes the key at once.
func (c *clients) leaseConfig() lease.Config {
	return lease.Config{TTL: c.cfg.Checkpoint.LeaseTTL, Owner: c.owner}
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

// openStore opens the configured checkpoint store for key, on the shared
// connections of cl.
func openStore(ctx context.Context, cfg *Config, key string, log *slog.Logger, cl *clients) (bridge.Store, error) {
	nkc, kkc := storeConfigs(cfg, key)
	switch cfg.Checkpoint.Store {
	case "file":
		s, err := checkpoint.OpenFile(cfg.Checkpoint.File, key)
		if err != nil {
			return nil, nameSetting("CHECKPOINT_FILE", err)
		}
		return s, nil
	case "nats-kv":
		nc, err := cl.nats(ctx)
		if err != nil {
			return nil, err
		}
		nkc.Lease = cl.leaseConfig()
		return retryStart(ctx, log, "nats-kv checkpoint store", func() (bridge.Store, error) {
			return natskv.Open(ctx, nc, nkc, log)
		})
	case "kafka":
		kt, err := cl.kafka()
		if err != nil {
			return nil, err
		}
		kc, _ := kafkaConfig(cfg) // validated by cl.kafka
		timeout := kkc.Timeout
		if timeout == 0 {
			timeout = kafkatopic.DefaultTimeout
		}
		client := &kafkago.Client{Addr: kafkago.TCP(kc.Brokers...), Transport: kt, Timeout: timeout}
		kkc.Lease = cl.leaseConfig()
		return retryStart(ctx, log, "kafka checkpoint store", func() (bridge.Store, error) {
			return kafkatopic.Open(ctx, client, kkc, log)
		})
	case "none":
		log.Warn("bridge.checkpoint.none", "hint", "CHECKPOINT_STORE=none keeps no position: a restart starts again from AVISO_FROM_* or live; for trials only")
		return checkpoint.NewMemory().Open(key)
	}
	return nil, &ConfigError{Err: fmt.Errorf("CHECKPOINT_STORE: %q is not supported", cfg.Checkpoint.Store)}
}
