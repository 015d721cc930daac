package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

const checkpointUsage = `Usage:
  aviso-bridge checkpoint list                 every stored position: listener, key, sequence, holder, lease expiry
  aviso-bridge checkpoint get NAME             one listener's stored position (JSON)
  aviso-bridge checkpoint set NAME SEQ [--force]   store SEQ as the listener's position (the next run resumes after it)
  aviso-bridge checkpoint delete NAME [--force]    remove the listener's position (the next run starts from AVISO_FROM_*)

NAME is a listener name of the configuration (AVISO_LISTENER_NAME or the event type, or a name in
AVISO_LISTENERS_FILE) or a 64-hex checkpoint key. set and delete refuse (exit 1, naming the holder)
while a live bridge holds the listener; --force changes it anyway (stop that bridge first: its next
commit or refresh would write its own position again).
`

// checkpointTimeout bounds one checkpoint command (reaching the store, and
// outwaiting a dead holder's lease).
const checkpointTimeout = time.Minute

// cmdCheckpoint runs `aviso-bridge checkpoint ...` against the configured
// store: 0 done, 1 refused or failed, 2 configuration or usage error.
func cmdCheckpoint(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) int {
	force := slices.Contains(args, "--force") || slices.Contains(args, "-force")
	args = slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "--force" || a == "-force" })
	if len(args) == 0 || !validCheckpointArgs(args) {
		fmt.Fprint(stderr, checkpointUsage)
		return exitConfig
	}
	cfg, err := loadConfig(ctx, env)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	log := newLogger(stderr, "warn", cfg.LogFormat, cfg.secretValues())
	ctx, cancel := context.WithTimeout(ctx, checkpointTimeout+cfg.Checkpoint.LeaseTTL)
	defer cancel()
	cl := newClients(cfg, log)
	defer cl.close()
	// The admin's own owner id: never a bridge's, so that it cannot take
	// a live bridge's key as its own (BRIDGE_INSTANCE_ID may be set).
	admin, err := openAdmin(ctx, cfg, lease.Config{TTL: cfg.Checkpoint.LeaseTTL, Owner: "admin/" + lease.OwnerID()}, log, cl)
	if err != nil {
		return checkpointFailed(stderr, err)
	}
	c := checkpointCmd{cfg: cfg, admin: admin, out: stdout, force: force}
	switch args[0] {
	case "list":
		err = c.list(ctx)
	case "get":
		err = c.get(ctx, args[1])
	case "set":
		err = c.set(ctx, args[1], args[2])
	case "delete":
		err = c.delete(ctx, args[1])
	}
	return checkpointFailed(stderr, err)
}

// validCheckpointArgs checks the sub-command and its argument count.
func validCheckpointArgs(args []string) bool {
	n := map[string]int{"list": 1, "get": 2, "set": 3, "delete": 2}[args[0]]
	return n > 0 && len(args) == n
}

// checkpointFailed prints err and returns the exit code.
func checkpointFailed(stderr io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "aviso-bridge checkpoint:", err)
	var ce *ConfigError
	if errors.As(err, &ce) {
		return exitConfig
	}
	return exitRuntime
}

// checkpointCmd is one checkpoint command.
type checkpointCmd struct {
	cfg   *Config
	admin checkpoint.Admin
	out   io.Writer
	force bool
}

// key maps NAME to its listener and checkpoint key.
func (c checkpointCmd) key(name string) (listenerSpec, error) {
	for _, l := range c.cfg.listeners {
		if l.Name == name || l.Key == name {
			return l, nil
		}
	}
	if isHexKey(name) {
		return listenerSpec{Key: name}, nil
	}
	return listenerSpec{}, &ConfigError{Err: fmt.Errorf("no listener %q in the configuration (listeners: %v); give a listener name or a 64-hex checkpoint key", name, c.cfg.listenerNames())}
}

// list prints every stored key, and the configured listeners without one.
func (c checkpointCmd) list(ctx context.Context) error {
	entries, err := c.admin.List(ctx)
	if err != nil {
		return err
	}
	names := map[string]string{}
	for _, l := range c.cfg.listeners {
		names[l.Key] = l.Name
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LISTENER\tKEY\tSEQUENCE\tUPDATED\tHOLDER\tLEASE_EXPIRES")
	stored := map[string]bool{}
	for _, e := range entries {
		stored[e.Key] = true
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", orDash(names[e.Key]), e.Key, entrySequence(e), timeOrDash(e.Checkpoint.UpdatedAt),
			orDash(e.Holder), timeOrDash(e.LeaseExpires))
	}
	for _, l := range c.cfg.listeners {
		if !stored[l.Key] {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\n", l.Name, l.Key)
		}
	}
	return tw.Flush()
}

// entryJSON is `checkpoint get`'s output.
type entryJSON struct {
	Listener     string     `json:"listener,omitempty"`
	Key          string     `json:"key"`
	Found        bool       `json:"found"`
	Sequence     *uint64    `json:"sequence"`
	EventID      string     `json:"event_id,omitempty"`
	UpdatedAt    *time.Time `json:"updated_at,omitempty"`
	Holder       string     `json:"holder"`
	LeaseExpires *time.Time `json:"lease_expires,omitempty"`
}

func (c checkpointCmd) get(ctx context.Context, name string) error {
	l, err := c.key(name)
	if err != nil {
		return err
	}
	e, found, err := c.admin.Get(ctx, l.Key)
	if err != nil {
		return err
	}
	out := entryJSON{Listener: l.Name, Key: l.Key, Found: found && e.Found, Holder: e.Holder}
	if out.Found {
		out.Sequence, out.EventID = &e.Checkpoint.Sequence, e.Checkpoint.EventID
		if !e.Checkpoint.UpdatedAt.IsZero() {
			out.UpdatedAt = &e.Checkpoint.UpdatedAt
		}
	}
	if !e.LeaseExpires.IsZero() {
		out.LeaseExpires = &e.LeaseExpires
	}
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func (c checkpointCmd) set(ctx context.Context, name, seqArg string) error {
	l, err := c.key(name)
	if err != nil {
		return err
	}
	seq, err := strconv.ParseUint(seqArg, 10, 64)
	if err != nil {
		return &ConfigError{Err: fmt.Errorf("SEQ %q is not a non-negative integer sequence", seqArg)}
	}
	cp := bridge.Checkpoint{Sequence: seq, UpdatedAt: time.Now().UTC()}
	if l.EventType != "" {
		cp.EventID = l.EventType + "@" + seqArg
	}
	if err := c.admin.Set(ctx, l.Key, cp, c.force); err != nil {
		return c.refused("set", l, err)
	}
	fmt.Fprintf(c.out, "listener %s (key %s): position set to %d; the next run resumes from %v\n", orDash(l.Name), l.Key, seq, resumeFromID(seq))
	return nil
}

func (c checkpointCmd) delete(ctx context.Context, name string) error {
	l, err := c.key(name)
	if err != nil {
		return err
	}
	if err := c.admin.Delete(ctx, l.Key, c.force); err != nil {
		return c.refused("delete", l, err)
	}
	fmt.Fprintf(c.out, "listener %s (key %s): position deleted; the next run starts from AVISO_FROM_* (or live)\n", orDash(l.Name), l.Key)
	return nil
}

// refused names the holder of a change refused because a live bridge
// holds the key.
func (c checkpointCmd) refused(op string, l listenerSpec, err error) error {
	var held *lease.HeldError
	if !errors.As(err, &held) {
		return fmt.Errorf("%s listener %s (key %s): %w", op, orDash(l.Name), l.Key, err)
	}
	return fmt.Errorf("%s refused: listener %s (key %s) is held by the live bridge %s; stop it first, or use --force: %w", op, orDash(l.Name), l.Key, held.Holder, err)
}

func entrySequence(e checkpoint.Entry) string {
	if !e.Found {
		return "-"
	}
	return strconv.FormatUint(e.Checkpoint.Sequence, 10)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
