package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/aviso-bridge/aviso-bridge/listeners"
)

// listenerSpec is one configured listener and its checkpoint key.
type listenerSpec struct {
	listeners.Listener
	// Key is the listener's checkpoint key: CHECKPOINT_KEY for the single
	// form when set, else derived from AVISO_URL, the event type and the
	// identifiers (the single form's key is unchanged by the listener
	// name, so existing deployments keep their position).
	Key string
	// FromFile: the listener comes from AVISO_LISTENERS_FILE.
	FromFile bool
}

// validateListenersFile checks the settings that do not go together with
// AVISO_LISTENERS_FILE.
func (c *Config) validateListenersFile() []error {
	var p problems
	if c.Aviso.EventType != "" {
		p.add("AVISO_LISTENERS_FILE and AVISO_EVENT_TYPE are both set; put every listener in the file, or use AVISO_EVENT_TYPE alone")
	}
	if strings.TrimSpace(c.Aviso.Identifier) != "{}" {
		p.add("AVISO_IDENTIFIER applies only to AVISO_EVENT_TYPE; with AVISO_LISTENERS_FILE each listener sets its identifiers")
	}
	if c.Aviso.ListenerName != "" {
		p.add("AVISO_LISTENER_NAME applies only to AVISO_EVENT_TYPE; with AVISO_LISTENERS_FILE each listener sets its name")
	}
	if c.Checkpoint.Key != "" {
		p.add("CHECKPOINT_KEY applies only to the single listener of AVISO_EVENT_TYPE; with AVISO_LISTENERS_FILE each listener's key is derived from AVISO_URL, its event and its identifiers")
	}
	return p
}

// maxInstanceID bounds BRIDGE_INSTANCE_ID (it is part of store keys).
const maxInstanceID = 128

// validateFleet checks BRIDGE_STANDBY and BRIDGE_INSTANCE_ID.
func (c *Config) validateFleet() []error {
	var p problems
	if c.Bridge.Standby && c.Checkpoint.Store == storeNone {
		p.add("BRIDGE_STANDBY=true needs a checkpoint store the bridges share (CHECKPOINT_STORE=nats-kv, kafka, or file on one host); CHECKPOINT_STORE=none keeps nothing to share")
	}
	id := c.Bridge.InstanceID
	if len(id) > maxInstanceID || strings.IndexFunc(id, func(r rune) bool { return !instanceIDRune(r) }) >= 0 {
		p.add("BRIDGE_INSTANCE_ID: %q must be at most %d characters of A-Z a-z 0-9 . _ - (it names this bridge in the store)", id, maxInstanceID)
	}
	return p
}

func instanceIDRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// defaultInstanceID is the host name (reduced to the characters an
// instance id may hold) and a random suffix.
func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "bridge"
	}
	host = strings.Map(func(r rune) rune {
		if instanceIDRune(r) {
			return r
		}
		return '-'
	}, host)
	if len(host) > maxInstanceID-7 {
		host = host[:maxInstanceID-7]
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// loadListeners reads the listeners (the file, or the single form) and
// derives their checkpoint keys.
func (c *Config) loadListeners() []error {
	defaults := listeners.Start{FromID: c.Aviso.FromID.ptr(), FromDate: strings.TrimSpace(c.Aviso.FromDate)}
	if c.Aviso.ListenersFile == "" {
		l := listeners.Single(c.Aviso.ListenerName, c.Aviso.EventType, json.RawMessage(c.Aviso.Identifier), defaults)
		key, err := checkpointKey(c)
		if err != nil {
			return []error{err}
		}
		c.listeners = []listenerSpec{{Listener: l, Key: key}}
		return nil
	}
	ls, warn, err := listeners.ParseFile(c.Aviso.ListenersFile, defaults)
	if err != nil {
		return nameEach("AVISO_LISTENERS_FILE", err)
	}
	var errs []error
	c.listenerWarnings = warn
	for _, l := range ls {
		key, err := l.CheckpointKey(c.Aviso.URL)
		if err != nil {
			errs = append(errs, fmt.Errorf("AVISO_LISTENERS_FILE: listener %q: checkpoint key: %w", l.Name, err))
			continue
		}
		c.listeners = append(c.listeners, listenerSpec{Listener: l, Key: key, FromFile: true})
	}
	return errs
}

// nameEach prefixes every error joined in err with the variable.
func nameEach(variable string, err error) []error {
	var joined interface{ Unwrap() []error }
	parts := []error{err}
	if errors.As(err, &joined) {
		parts = joined.Unwrap()
	}
	out := make([]error, len(parts))
	for i, e := range parts {
		out[i] = nameSetting(variable, e)
	}
	return out
}

// listenerNames are the configured listener names, in configuration order.
func (c *Config) listenerNames() []string {
	out := make([]string, len(c.listeners))
	for i, l := range c.listeners {
		out[i] = l.Name
	}
	return out
}

// listenerLines are the configured listeners as `config` prints them after
// the variables: one comment line each, with the checkpoint key.
func (c *Config) listenerLines() string {
	var b strings.Builder
	for _, l := range c.listeners {
		fmt.Fprintf(&b, "# listener %s: event_type=%s identifier=%s checkpoint_key=%s\n", l.Name, l.EventType, l.Identifier, l.Key)
	}
	return b.String()
}
