// Package containers runs the built aviso-bridge binary against real
// images with testcontainers-go: ECMWF's aviso-server (JetStream backend,
// configured by deploy/aviso-server/config.yaml), NATS with JetStream, and
// Kafka in KRaft mode. It covers the happy path and a broker restart for
// each sink, reading the sink back message by message.
//
// Opt-in: AVISO_BRIDGE_DOCKER_TESTS=1 and a reachable Docker engine;
// otherwise every test skips (CI never pulls images). See ../README.md.
package containers

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
	tckafka "github.com/testcontainers/testcontainers-go/modules/kafka"
	tcnats "github.com/testcontainers/testcontainers-go/modules/nats"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/aviso-bridge/aviso-bridge/integration/harness"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// optIn is the environment variable that turns these suites on.
const optIn = "AVISO_BRIDGE_DOCKER_TESTS"

// Images; each can be overridden by an environment variable of the same
// role (pin them in CI that runs these suites).
var (
	avisoImage = imageFromEnv("AVISO_BRIDGE_AVISO_IMAGE", "eccr.ecmwf.int/aviso/aviso_server:latest")
	natsImage  = imageFromEnv("AVISO_BRIDGE_NATS_IMAGE", "nats:2.11-alpine")
	kafkaImage = imageFromEnv("AVISO_BRIDGE_KAFKA_IMAGE", "confluentinc/confluent-local:7.5.0")
)

func imageFromEnv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

const (
	eventType  = "mars"
	identifier = `{"class":"od"}`
	streamName = "AVISO"
	subject    = "aviso.mars.od"
	kafkaTopic = "aviso.mars"
	waitLong   = 3 * time.Minute // image start-up and catch-up
)

var binary string

func TestMain(m *testing.M) {
	if os.Getenv(optIn) != "1" {
		os.Exit(m.Run()) // every test skips; no build needed
	}
	os.Exit(harness.Main("../..", &binary, m.Run))
}

// requireDocker skips unless the suites are opted in and a Docker engine
// answers.
func requireDocker(t *testing.T) {
	t.Helper()
	if os.Getenv(optIn) != "1" {
		t.Skipf("container suites are opt-in: set %s=1 (needs a Docker engine and the images)", optIn)
	}
	testcontainers.SkipIfProviderIsNotHealthy(t)
}

// freePort returns a host port that was free a moment ago; containers bind
// their broker port to it so that a stop/start keeps the address the bridge
// knows (and Kafka's advertised listener stays right).
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// fixedPort binds the container's port (e.g. "4222/tcp") to hostPort.
func fixedPort(port, hostPort string) testcontainers.CustomizeRequestOption {
	return testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
		if hc.PortBindings == nil {
			hc.PortBindings = network.PortMap{}
		}
		hc.PortBindings[network.MustParsePort(port)] = []network.PortBinding{{HostPort: hostPort}}
	})
}

// avisoStack is aviso-server with its NATS JetStream backend on a private
// network.
type avisoStack struct {
	url    string
	client *http.Client
}

// startAviso starts NATS (alias "nats", as deploy/aviso-server/config.yaml
// expects) and aviso-server with that configuration file copied in.
func startAviso(ctx context.Context, t *testing.T) *avisoStack {
	t.Helper()
	nw, err := tcnetwork.New(ctx)
	testcontainers.CleanupNetwork(t, nw)
	if err != nil {
		t.Fatalf("network: %v", err)
	}
	backend, err := tcnats.Run(ctx, natsImage, tcnetwork.WithNetwork([]string{"nats"}, nw))
	testcontainers.CleanupContainer(t, backend)
	if err != nil {
		t.Fatalf("aviso backend NATS: %v", err)
	}
	cfg, err := filepath.Abs(filepath.Join("..", "..", "deploy", "aviso-server", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	aviso, err := testcontainers.Run(ctx, avisoImage,
		tcnetwork.WithNetwork([]string{"aviso-server"}, nw),
		testcontainers.WithExposedPorts("8000/tcp"),
		testcontainers.WithFiles(testcontainers.ContainerFile{
			HostFilePath: cfg, ContainerFilePath: "/app/configuration/config.yaml", FileMode: 0o644,
		}),
		testcontainers.WithWaitStrategyAndDeadline(waitLong, wait.ForHTTP("/health").WithPort("8000/tcp")),
	)
	testcontainers.CleanupContainer(t, aviso)
	if err != nil {
		t.Fatalf("aviso-server (%s): %v", avisoImage, err)
	}
	endpoint, err := aviso.PortEndpoint(ctx, "8000/tcp", "http")
	if err != nil {
		t.Fatal(err)
	}
	return &avisoStack{url: endpoint, client: &http.Client{Timeout: 30 * time.Second}}
}

// publish publishes n notifications of mars (every key of the schema in
// deploy/aviso-server/config.yaml, step counting from first so that each has
// its own subject).
func (a *avisoStack) publish(t *testing.T, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		body := fmt.Sprintf(`{"event_type":"mars","identifier":{"class":"od","expver":"0001","domain":"g","date":"20261129","time":"0000","stream":"oper","step":"%d"},"payload":{"i":%d}}`, i, i)
		resp, err := a.client.Post(a.url+"/api/v1/notification", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("notify %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("notify %d: %s", i, resp.Status)
		}
	}
}

// sequences returns what aviso-server holds for the bridge's watch, by its
// own replay.
func (a *avisoStack) sequences(t *testing.T) []uint64 {
	t.Helper()
	var out []uint64
	for _, ev := range harness.Replay(t, a.client, a.url, eventType, identifier, 0) {
		out = append(out, ev.Sequence)
	}
	return out
}

func (a *avisoStack) bridgeEnv(dir string) harness.Env {
	return harness.Env{
		"AVISO_URL":        a.url,
		"AVISO_EVENT_TYPE": eventType,
		"AVISO_IDENTIFIER": identifier,
		"AVISO_FROM_ID":    "0",
		"CHECKPOINT_FILE":  filepath.Join(dir, "checkpoint.json"),
	}
}

// broker is a sink container the test can stop and start again.
type broker struct {
	ctr   testcontainers.Container
	env   harness.Env
	read  func() []uint64
	count func() int
}

// restart stops the broker, waits down for the outage, and starts it again
// (same container: same port binding, same data).
func (b *broker) restart(ctx context.Context, down time.Duration) error {
	stop := 10 * time.Second
	if err := b.ctr.Stop(ctx, &stop); err != nil {
		return fmt.Errorf("stop broker: %w", err)
	}
	<-time.After(down) // the outage lasts this long
	if err := b.ctr.Start(ctx); err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	return nil
}

// startNATS starts a NATS server with JetStream for the sink, its client port
// bound to a fixed host port.
func startNATS(ctx context.Context, t *testing.T) *broker {
	t.Helper()
	ctr, err := tcnats.Run(ctx, natsImage, fixedPort("4222/tcp", freePort(t)))
	testcontainers.CleanupContainer(t, ctr)
	if err != nil {
		t.Fatalf("sink NATS: %v", err)
	}
	url, err := ctr.ConnectionString(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// One reader connection for the whole test; it reconnects across the
	// broker restart.
	nc, err := natsgo.Connect(url, natsgo.RetryOnFailedConnect(true), natsgo.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	connect := func() jetstream.JetStream { return js }
	return &broker{
		ctr: ctr,
		env: harness.Env{"SINK": "jetstream", "NATS_URL": url, "NATS_SUBJECT": "aviso.{event_type}.{identifier.class}",
			"NATS_STREAM": streamName, "NATS_STREAM_CREATE": "true", "NATS_STREAM_SUBJECTS": "aviso.>"},
		read: func() []uint64 {
			var out []uint64
			for _, m := range natstest.ReadStream(t, connect(), streamName, subject) {
				id := m.Headers().Get(jetstream.MsgIDHeader)
				if ce := m.Headers().Get("ce-id"); ce != id {
					t.Fatalf("Nats-Msg-Id %q, ce-id %q", id, ce)
				}
				out = append(out, harness.SeqOfID(t, eventType, id))
			}
			return out
		},
		count: func() int {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			st, err := connect().Stream(cctx, streamName)
			if err != nil {
				return 0
			}
			info, err := st.Info(cctx)
			if err != nil {
				return 0
			}
			return int(info.State.Msgs)
		},
	}
}

// startKafka starts Kafka in KRaft mode with its client port bound to a
// fixed host port, and creates the topic (one partition).
func startKafka(ctx context.Context, t *testing.T) *broker {
	t.Helper()
	ctr, err := tckafka.Run(ctx, kafkaImage, tckafka.WithClusterID("aviso-bridge-e2e"), fixedPort("9093/tcp", freePort(t)))
	testcontainers.CleanupContainer(t, ctr)
	if err != nil {
		t.Fatalf("Kafka (%s): %v", kafkaImage, err)
	}
	brokers, err := ctr.Brokers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	created, err := kadm.NewClient(adm).CreateTopic(ctx, 1, 1, nil, kafkaTopic)
	if err == nil {
		err = created.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", kafkaTopic, err)
	}
	read := func() []uint64 {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		recs, err := kafkatest.ReadTopic(rctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, kafkaTopic)
		if err != nil {
			t.Fatalf("read %s: %v", kafkaTopic, err)
		}
		var out []uint64
		for _, r := range recs {
			id, ok := kafkatest.Header(r, "ce_id")
			if !ok {
				t.Fatalf("%s offset %d: no ce_id header", kafkaTopic, r.Offset)
			}
			out = append(out, harness.SeqOfID(t, eventType, id))
		}
		return out
	}
	return &broker{
		ctr:  ctr,
		env:  harness.Env{"SINK": "kafka", "KAFKA_BROKERS": strings.Join(brokers, ",")},
		read: read,
		count: func() int {
			c, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
			if err != nil {
				return 0
			}
			defer c.Close()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			ends, err := kadm.NewClient(c).ListEndOffsets(cctx, kafkaTopic)
			if err != nil {
				return 0
			}
			n := 0
			ends.Each(func(o kadm.ListedOffset) { n += int(o.Offset) })
			return n
		},
	}
}

// TestContainers: aviso-server (real image, JetStream backend) -> the
// aviso-bridge binary -> JetStream or Kafka (real images). Happy path: the
// history and the notifications published while the bridge runs all land,
// once, in order. Broker restart: the sink's broker is stopped for 5 s and
// started again (same port, same data) while notifications keep coming:
// nothing missing, order kept, no stored duplicate on JetStream, Kafka's
// duplicates (if any) bounded by the in-flight window; SIGTERM exits 0 with
// the checkpoint at the last notification.
func TestContainers(t *testing.T) {
	requireDocker(t)
	ctx := t.Context()
	aviso := startAviso(ctx, t)
	aviso.publish(t, 0, 200) // history before any bridge starts

	for _, tc := range []struct {
		name   string
		start  func(context.Context, *testing.T) *broker
		maxDup int
	}{
		{"jetstream", startNATS, 0},
		{"kafka", startKafka, 256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.start(ctx, t)
			dir := t.TempDir()
			e := aviso.bridgeEnv(dir)
			for k, v := range b.env {
				e = e.With(k, v)
			}
			p := harness.Start(t, binary, "bridge", dir, e)
			p.WaitReady(waitLong)

			// Happy path: history, then live.
			before := len(aviso.sequences(t))
			aviso.publish(t, 1000, 100)
			want := aviso.sequences(t)
			if len(want) != before+100 {
				t.Fatalf("aviso-server holds %d notifications, want %d", len(want), before+100)
			}
			if !harness.Eventually(waitLong, func() bool { return b.count() >= len(want) }) {
				t.Fatalf("sink holds %d of %d", b.count(), len(want))
			}
			harness.RequireComplete(t, tc.name+" happy path", b.read(), want, 0)

			// Broker restart while notifications are published.
			restarted := make(chan error, 1)
			go func() { restarted <- b.restart(ctx, 5*time.Second) }()
			aviso.publish(t, 2000, 300)
			if err := <-restarted; err != nil {
				t.Fatal(err)
			}
			want = aviso.sequences(t)
			last := want[len(want)-1]
			cp := filepath.Join(dir, "checkpoint.json")
			if !harness.Eventually(waitLong, func() bool { got, _ := harness.CheckpointSeq(t, cp); return got == last }) {
				got, _ := harness.CheckpointSeq(t, cp)
				t.Fatalf("checkpoint %d, want %d after the broker restart", got, last)
			}
			p.WaitReady(waitLong)
			p.Signal(syscall.SIGTERM)
			if code := p.Wait(time.Minute); code != 0 {
				t.Errorf("exit code %d after SIGTERM, want 0", code)
			}
			harness.RequireComplete(t, tc.name+" after the broker restart", b.read(), want, tc.maxDup)
		})
	}
}
