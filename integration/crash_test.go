package integration

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/sinks/kafka/kafkatest"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// crashTarget is a sink for the crash test, with cheap probes of its state.
type crashTarget struct {
	name string
	// start starts the destination; the probes are: how many messages it
	// stores (duplicates included), the sequence of the last one, and
	// every message in order.
	start func(t *testing.T, e env) (env, crashProbes)
	// storedDuplicates: Kafka may store duplicates after a crash (bounded);
	// JetStream must not (Nats-Msg-Id deduplication).
	storedDuplicates bool
}

type crashProbes struct {
	count func() int
	last  func() (uint64, bool)
	read  func() []uint64
}

var crashTargets = []crashTarget{
	{
		name: "jetstream",
		start: func(t *testing.T, e env) (env, crashProbes) {
			ns := natstest.NewServer(t)
			js := ns.JetStream(t)
			return jetStreamEnv(e, ns), crashProbes{
				count: func() int { return int(jetStreamCount(t, js)) },
				last:  func() (uint64, bool) { return jetStreamLast(t, js) },
				read:  func() []uint64 { return readJetStream(t, ns) },
			}
		},
	},
	{
		name: "kafka",
		start: func(t *testing.T, e env) (env, crashProbes) {
			cl := newKafka(t)
			return kafkaEnv(e, cl), crashProbes{
				count: func() int { n, _ := kafkaEnd(t, cl); return int(n) },
				last:  func() (uint64, bool) { return kafkaLast(t, cl) },
				read:  func() []uint64 { return readKafka(t, cl, kafkaTopic) },
			}
		},
		storedDuplicates: true,
	},
}

// jetStreamLast returns the sequence of the last message on the subject.
func jetStreamLast(t testing.TB, js jetstream.JetStream) (uint64, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, streamName)
	if err != nil {
		return 0, false
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return 0, false
	}
	return seqOfID(t, m.Header.Get(jetstream.MsgIDHeader)), true
}

// kafkaEnd returns the end offset of the (one) partition of the topic that
// holds records, and that partition.
func kafkaEnd(t testing.TB, cl *kafkatest.Cluster) (int64, int32) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := kgo.NewClient(kgo.SeedBrokers(cl.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ends, err := kadm.NewClient(c).ListEndOffsets(ctx, kafkaTopic)
	if err != nil || ends.Error() != nil {
		return 0, -1
	}
	var end int64
	part := int32(-1)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			end, part = o.Offset, o.Partition
		}
	})
	return end, part
}

// kafkaLast returns the sequence of the newest record of the topic.
func kafkaLast(t testing.TB, cl *kafkatest.Cluster) (uint64, bool) {
	end, part := kafkaEnd(t, cl)
	if end == 0 {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := kgo.NewClient(kgo.SeedBrokers(cl.Addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{kafkaTopic: {part: kgo.NewOffset().At(end - 1)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for ctx.Err() == nil {
		var last *kgo.Record
		c.PollFetches(ctx).EachRecord(func(r *kgo.Record) { last = r })
		if last != nil {
			id, _ := kafkatest.Header(last, "ce_id")
			return seqOfID(t, id), true
		}
	}
	t.Fatalf("kafka: no record at offset %d", end-1)
	return 0, false
}

// crashPlan is the size of a crash test run.
type crashPlan struct {
	notifications int           // published while the bridge runs
	rate          int           // per second
	kills         int           // at least this many SIGKILLs
	minUp, maxUp  time.Duration // each bridge lives a random time in [minUp, maxUp)
}

func crashPlanFor() crashPlan {
	if long() {
		return crashPlan{notifications: 200000, rate: 1500, kills: 100, minUp: 100 * time.Millisecond, maxUp: 2 * time.Second}
	}
	return crashPlan{notifications: 50000, rate: 2000, kills: 20, minUp: 100 * time.Millisecond, maxUp: 1500 * time.Millisecond}
}

// crashSeed is the random seed of the kill moments: AVISO_BRIDGE_CRASH_SEED,
// or a fixed default, logged so that a failure can be replayed.
func crashSeed(t *testing.T) uint64 {
	seed := uint64(20261129)
	if s := os.Getenv("AVISO_BRIDGE_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("AVISO_BRIDGE_CRASH_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("kill moments from seed %d (set AVISO_BRIDGE_CRASH_SEED to change)", seed)
	return seed
}

// life is one bridge process of the crash test and what the destination
// held when it died.
type life struct {
	up         time.Duration
	endCount   int    // messages stored when it was killed
	checkpoint uint64 // committed when it was killed
	lastStored uint64 // newest stored sequence when it was killed
}

// TestCrashKill9: aviso-bridge is killed with SIGKILL at random moments (at
// least 20 times; fixed, logged seed) while avisotest publishes 50 000
// notifications, and restarted each time with the same configuration and
// checkpoint file. Read back message by message: nothing is missing, the
// order is kept, JetStream stores no duplicate (Nats-Msg-Id), Kafka's
// duplicates are counted and each crash duplicates at most the in-flight
// window; after every kill the checkpoint has not moved backwards and does
// not pass the newest stored notification.
func TestCrashKill9(t *testing.T) {
	for _, target := range crashTargets {
		t.Run(target.name, func(t *testing.T) {
			plan := crashPlanFor()
			rng := rand.New(rand.NewPCG(crashSeed(t), uint64(len(target.name))))
			aviso := avisotest.NewServer(t)
			dir := t.TempDir()
			cpFile := filepath.Join(dir, "checkpoint.json")
			e, probe := target.start(t, avisoEnv(aviso, dir).With("BRIDGE_MAX_IN_FLIGHT", strconv.Itoa(maxInFlight)))

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			pub := publishAt(ctx, aviso, plan.notifications, plan.rate)
			started := time.Now()
			var lives []life
			var prevCP uint64
			killsDuringPublish := 0
			var prev *proc
			for i := 0; len(lives) < plan.kills; i++ {
				up := plan.minUp + time.Duration(rng.Int64N(int64(plan.maxUp-plan.minUp)))
				p := startBridge(t, "bridge-"+strconv.Itoa(i), dir, e)
				select {
				case <-time.After(up): // a random kill moment, not synchronisation
				case <-p.Done:
					t.Fatalf("bridge %d exited by itself with %v", i, p.State())
				}
				p.Kill9()
				if i > 0 {
					prev.Quiet = true // keep the log of the last killed bridge only
				}
				prev = p
				select {
				case <-pub.done:
				default:
					killsDuringPublish++
				}
				l := life{up: up, endCount: probe.count()}
				l.checkpoint, _ = checkpointSeq(t, cpFile)
				l.lastStored, _ = probe.last()
				if l.checkpoint < prevCP {
					t.Errorf("kill %d: checkpoint moved backwards from %d to %d", i, prevCP, l.checkpoint)
				}
				if l.checkpoint > l.lastStored {
					t.Errorf("kill %d: checkpoint %d passes the newest stored notification %d", i, l.checkpoint, l.lastStored)
				}
				prevCP = l.checkpoint
				lives = append(lives, l)
			}
			t.Logf("%d kills in %v (%d while notifications were being published); checkpoint %d, %d stored",
				len(lives), time.Since(started).Round(time.Millisecond), killsDuringPublish, prevCP, lives[len(lives)-1].endCount)
			if killsDuringPublish < plan.kills {
				t.Logf("note: only %d kills happened while the publisher ran (machine slower than planned)", killsDuringPublish)
			}

			// The last bridge runs until everything is stored, then stops.
			final := startBridge(t, "bridge-final", dir, e)
			<-pub.done
			want := pub.seqs
			if len(want) != plan.notifications {
				t.Fatalf("published %d of %d", len(want), plan.notifications)
			}
			lastWant := want[len(want)-1]
			if !eventually(3*time.Minute, func() bool { s, _ := probe.last(); return s == lastWant || final.Exited() }) || final.Exited() {
				s, _ := probe.last()
				t.Fatalf("newest stored %d, want %d (final bridge exited: %v)", s, lastWant, final.Exited())
			}
			if !eventually(startupWait, func() bool { cp, _ := checkpointSeq(t, cpFile); return cp == lastWant }) {
				cp, _ := checkpointSeq(t, cpFile)
				t.Errorf("final checkpoint %d, want %d", cp, lastWant)
			}
			final.Signal(syscall.SIGTERM)
			if code := final.Wait(startupWait); code != 0 {
				t.Errorf("final bridge: exit code %d after SIGTERM, want 0", code)
			}

			got := probe.read()
			maxDup := 0
			if target.storedDuplicates {
				maxDup = plan.kills * maxInFlight
			}
			tl := requireComplete(t, target.name, got, want, maxDup)
			if target.storedDuplicates {
				perCrash := duplicatesPerLife(got, lives)
				worst := 0
				for i, d := range perCrash {
					worst = max(worst, d)
					if d > maxInFlight {
						t.Errorf("restart after kill %d: %d duplicates, more than the in-flight window %d", i, d, maxInFlight)
					}
				}
				t.Logf("Kafka duplicates: %d in total over %d crashes (worst restart %d, in-flight window %d); per restart: %v",
					tl.Duplicates, len(lives), worst, maxInFlight, perCrash)
			}
		})
	}
}

// duplicatesPerLife attributes each duplicate record to the bridge that wrote
// it: the records appended after kill i (up to the end of the next life) are
// the restart after kill i. Counts at a kill are read right after it, so a
// request the broker was still processing may shift a few records into the
// next life.
func duplicatesPerLife(got []uint64, lives []life) []int {
	out := make([]int, len(lives))
	seen := map[uint64]bool{}
	life := -1 // records before the first kill belong to the first bridge
	for i, s := range got {
		for life+1 < len(lives) && i >= lives[life+1].endCount {
			life++
		}
		if seen[s] && life >= 0 {
			out[life]++
		}
		seen[s] = true
	}
	return out
}

// TestKill9BeforeFirstCommit is the deterministic form of the crash test:
// the bridge stores a 5 000-notification backlog, is killed with SIGKILL
// before it commits anything (CHECKPOINT_INTERVAL longer than the run), and
// is restarted. The restart must not lose anything, JetStream must store no
// duplicate, and Kafka may duplicate at most the in-flight window
// (interface.md section 6: "after a crash at most the unacknowledged
// window").
func TestKill9BeforeFirstCommit(t *testing.T) {
	for _, target := range crashTargets {
		t.Run(target.name, func(t *testing.T) {
			t.Parallel()
			aviso := avisotest.NewServer(t)
			dir := t.TempDir()
			e, probe := target.start(t, avisoEnv(aviso, dir).With("BRIDGE_MAX_IN_FLIGHT", strconv.Itoa(maxInFlight), "CHECKPOINT_INTERVAL", "10m"))
			want := publish(aviso, 5000)
			last := want[len(want)-1]
			p := startBridge(t, "first", dir, e)
			if !eventually(startupWait, func() bool { s, _ := probe.last(); return s == last }) {
				s, _ := probe.last()
				t.Fatalf("newest stored %d, want %d", s, last)
			}
			p.Kill9()
			if cp, ok := checkpointSeq(t, filepath.Join(dir, "checkpoint.json")); ok {
				t.Fatalf("checkpoint %d committed before the kill: the test needs none", cp)
			}
			stored := probe.count()
			p = startBridge(t, "restart", dir, e)
			// The restart has forwarded everything once its replay is
			// complete; SIGTERM then drains and commits (the only commit).
			p.WaitEvent(startupWait, "aviso.replay.completed")
			p.Signal(syscall.SIGTERM)
			if code := p.Wait(startupWait); code != 0 {
				t.Fatalf("exit code %d after SIGTERM, want 0", code)
			}
			if cp, _ := checkpointSeq(t, filepath.Join(dir, "checkpoint.json")); cp != last {
				t.Errorf("checkpoint %d after the drain, want %d", cp, last)
			}
			maxDup := 0
			if target.storedDuplicates {
				maxDup = maxInFlight
			}
			tl := requireComplete(t, target.name, probe.read(), want, maxDup)
			t.Logf("stored before the kill: %d; duplicates written by the restart: %d (in-flight window %d)", stored, tl.Duplicates, maxInFlight)
		})
	}
}
