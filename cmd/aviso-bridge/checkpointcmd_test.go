package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/natskv"
	"github.com/aviso-bridge/aviso-bridge/sinks/nats/natstest"
)

// checkpointRun runs `aviso-bridge checkpoint args...` with env.
func checkpointRun(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cmdCheckpoint(context.Background(), args, envconfig.MapLookuper(env), &out, &errOut)
	return code, out.String(), errOut.String()
}

// getEntry is `checkpoint get NAME` decoded.
func getEntry(t *testing.T, env map[string]string, name string) entryJSON {
	t.Helper()
	code, out, errOut := checkpointRun(t, env, "get", name)
	var e entryJSON
	if code != 0 || json.Unmarshal([]byte(out), &e) != nil {
		t.Fatalf("get %s: %d %s %s", name, code, out, errOut)
	}
	return e
}

// The checkpoint command against the file store and a NATS KV bucket:
// list names the listeners, get shows a position, set and delete change
// it, both refuse (exit 1, naming the holder) while a live bridge holds
// the key, unless --force; usage and configuration errors exit 2.
func TestCheckpointCommand(t *testing.T) {
	file := writeListeners(t, "listeners:\n  - name: a\n    event: mars\n  - name: b\n    event: venus\n")
	ns := natstest.NewServer(t)
	base := map[string]string{"AVISO_URL": "http://127.0.0.1:8000/", "AVISO_LISTENERS_FILE": file, "CHECKPOINT_LEASE_TTL": "600ms"}
	for _, store := range []struct {
		name string
		env  map[string]string
		hold func(t *testing.T, key string) (holder string, release func())
	}{
		{"file", map[string]string{"CHECKPOINT_STORE": "file", "CHECKPOINT_FILE": filepath.Join(t.TempDir(), "cp.json")}, nil},
		{"nats-kv", map[string]string{"CHECKPOINT_STORE": "nats-kv", "NATS_URL": ns.URL}, func(t *testing.T, key string) (string, func()) {
			s, err := natskv.Open(context.Background(), ns.Conn(t), natskv.Config{Key: key, Lease: lease.Config{TTL: 600 * time.Millisecond, Owner: "live-bridge"}}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			return "live-bridge", func() { s.Close() }
		}},
	} {
		t.Run(store.name, func(t *testing.T) {
			env := map[string]string{}
			for _, m := range []map[string]string{base, store.env} {
				for k, v := range m {
					env[k] = v
				}
			}
			cfg, err := load(t, env)
			if err != nil {
				t.Fatal(err)
			}
			keyA := cfg.listeners[0].Key
			hold := store.hold
			if hold == nil {
				hold = func(t *testing.T, key string) (string, func()) {
					f, err := checkpoint.OpenFileLease(context.Background(), env["CHECKPOINT_FILE"], key, lease.Config{Owner: "live-bridge"})
					if err != nil {
						t.Fatal(err)
					}
					return "live-bridge", func() { f.Close() }
				}
			}
			checkCheckpointCommand(t, env, keyA, hold)
		})
	}
}

func checkCheckpointCommand(t *testing.T, env map[string]string, keyA string, hold func(*testing.T, string) (string, func())) {
	if code, out, errOut := checkpointRun(t, env, "set", "a", "41"); code != 0 || !strings.Contains(out, "resumes from 42") {
		t.Fatalf("set a 41: %d %s %s", code, out, errOut)
	}
	if e := getEntry(t, env, "a"); !e.Found || e.Sequence == nil || *e.Sequence != 41 || e.Key != keyA || e.EventID != "mars@41" || e.Holder != "" {
		t.Errorf("get a: %+v", e)
	}
	code, out, _ := checkpointRun(t, env, "list")
	if code != 0 || !strings.Contains(out, "LISTENER") || !regexpLine(out, "a", keyA, "41") || !regexpLine(out, "b", "-") {
		t.Errorf("list: %d\n%s", code, out)
	}
	holder, release := hold(t, keyA)
	for _, args := range [][]string{{"set", "a", "7"}, {"delete", "a"}} {
		code, _, errOut := checkpointRun(t, env, args...)
		if code != 1 || !strings.Contains(errOut, holder) || !strings.Contains(errOut, "--force") {
			t.Errorf("%v while held: %d %s", args, code, errOut)
		}
	}
	if e := getEntry(t, env, "a"); e.Holder != holder && !strings.Contains(e.Holder, holder) {
		t.Errorf("get while held: holder %q, want %q", e.Holder, holder)
	}
	if code, _, errOut := checkpointRun(t, env, "set", "a", "7", "--force"); code != 0 {
		t.Errorf("set --force while held: %d %s", code, errOut)
	}
	release()
	if e := getEntry(t, env, "a"); e.Sequence == nil || *e.Sequence < 7 {
		t.Errorf("after set --force: %+v", e)
	}
	if code, _, errOut := checkpointRun(t, env, "delete", "a"); code != 0 {
		t.Errorf("delete: %d %s", code, errOut)
	}
	if e := getEntry(t, env, "a"); e.Found {
		t.Errorf("after delete: %+v", e)
	}
	for _, args := range [][]string{{"get", "nope"}, {"set", "a", "x"}, {"set", "a"}, {"frobnicate"}, {}} {
		if code, _, errOut := checkpointRun(t, env, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, errOut)
		}
	}
}

// regexpLine reports whether a line of out holds every field, in order,
// as whole words.
func regexpLine(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		words := strings.Fields(line)
		i := 0
		for _, w := range words {
			if i < len(fields) && w == fields[i] {
				i++
			}
		}
		if i == len(fields) {
			return true
		}
	}
	return false
}

// CHECKPOINT_STORE=none keeps nothing: the command is a configuration
// error.
func TestCheckpointCommandWithoutStore(t *testing.T) {
	code, _, errOut := checkpointRun(t, minimal(map[string]string{"CHECKPOINT_STORE": "none"}), "list")
	if code != 2 || !strings.Contains(errOut, "CHECKPOINT_STORE") {
		t.Errorf("list with none: %d %s", code, errOut)
	}
}
