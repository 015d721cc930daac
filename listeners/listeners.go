// Package listeners reads what a bridge watches: the listener file of the
// official aviso CLI (AVISO_LISTENERS_FILE) or the single listener of
// AVISO_EVENT_TYPE and AVISO_IDENTIFIER. It sits before the data flow: each
// Listener becomes one aviso watch with its own supervisor, window and
// checkpoint key. The package reads no environment; the caller passes the
// file path and the AVISO_FROM_* defaults in.
//
// # The file
//
// One top-level key, listeners, holding a list of mappings with the keys
// name, event, identifiers, from_id, from_date and triggers, exactly as the
// aviso CLI 2.x reads them (its ListenerSpec, deny_unknown_fields):
//
//	listeners:
//	  - name: mars-od
//	    event: mars
//	    identifiers: {class: od, step: {in: [0, 6, 12]}}
//	    from_id: 1000
//	    triggers:
//	      - type: echo
//
// Scalars resolve as the CLI's YAML library (serde_yaml) resolves them, so a
// file means the same to both: YAML 1.2 core schema (true/false, null/~,
// decimal, 0x, 0o and 0b integers, floats), a number written with a leading
// zero (expver: 0001) stays the string "0001", yes/no/on/off and unquoted
// dates stay strings, quoted scalars are always strings.
//
// Where this reader is stricter than the CLI (each an error naming the file,
// line, listener and key, never a silent guess): a key given twice in one
// mapping, two listeners with the same name or with the same event and
// identifiers (the CLI only warns), a missing or empty event, YAML merge keys
// (<<) and non-core tags, .inf/.nan in identifiers (the CLI turns them into
// null), a file without listeners. Where it is more lenient: from_id may also
// be a quoted decimal string ("42"), and a null identifiers or triggers is an
// empty one.
//
// # Start position
//
// from_id and from_date mean what AVISO_FROM_ID and AVISO_FROM_DATE mean: the
// start when no checkpoint exists, from_id the first sequence delivered
// (inclusive, as aviso-server's from_id). Note: the aviso CLI 2.x sends a
// listener file's from_id N as "after N" (its first delivery is N+1); this
// bridge delivers N as well, one notification more and never one fewer.
// A listener that sets neither field takes the defaults passed to ParseFile.
//
// # Checkpoint key
//
// A listener's checkpoint key is bridge.CheckpointKey over the URL, the event
// and the canonical (RFC 8785) JSON of its identifiers. A watch moved from
// AVISO_EVENT_TYPE/AVISO_IDENTIFIER into a file keeps its key, and with it its
// position, when the event is the same string and the identifiers are the same
// JSON value: key order, layout, flow or block style, quoting of what is a
// string anyway (class: od, class: "od" and {"class":"od"} are the same) and
// the spelling of a number (5, 5.0, +5, 0x5, 5e0) do not matter; the type
// does (expver: 1 is the number 1, not {"expver":"1"}; write expver: "1").
package listeners

import (
	"bytes"
	"encoding/json"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Start is where a listener begins when no checkpoint exists: at most one of
// FromID (first sequence delivered, inclusive) and FromDate (any aviso
// from_date form, sent verbatim). Neither set: live from now.
type Start struct {
	FromID   *uint64
	FromDate string
}

// IsZero reports whether neither start field is set.
func (s Start) IsZero() bool { return s.FromID == nil && s.FromDate == "" }

// Listener is one aviso watch.
type Listener struct {
	// Name labels the listener in logs, metrics, /status and the {listener}
	// placeholder. From the file: its name, or <event>-<position> when it has
	// none; single form: AVISO_LISTENER_NAME, or the event type.
	Name string
	// EventType is the aviso event type (the file's event).
	EventType string
	// Identifier is the identifier filter as a JSON object, sent to
	// aviso-server as it is: for a file listener compact JSON with keys
	// sorted and numbers in decimal, exactly as resolved (a large integer is
	// not rounded); for the single form AVISO_IDENTIFIER as given. The
	// checkpoint key canonicalises it (RFC 8785).
	Identifier json.RawMessage
	// Start is where the listener begins when no checkpoint exists.
	Start
	// DefaultStart is true when the listener set neither from_id nor
	// from_date and Start holds the defaults passed in.
	DefaultStart bool
	// Position is the 1-based place in the file's list (0: single form).
	Position int
	// Line is the line of the listener's entry in the file (0: single form).
	Line int
}

// CheckpointKey is the listener's checkpoint key under the aviso base URL:
// bridge.CheckpointKey(baseURL, EventType, Identifier).
func (l Listener) CheckpointKey(baseURL string) (string, error) {
	return bridge.CheckpointKey(baseURL, l.EventType, l.Identifier)
}

// Single is the listener of the single-listener form (AVISO_EVENT_TYPE,
// AVISO_IDENTIFIER, AVISO_LISTENER_NAME, AVISO_FROM_*). An empty name becomes
// the event type; an empty identifier becomes {}. The identifier is kept as
// given (the caller has checked it is a JSON object), so the checkpoint key
// stays what it has always been.
func Single(name, eventType string, identifier json.RawMessage, start Start) Listener {
	if name == "" {
		name = eventType
	}
	if len(bytes.TrimSpace(identifier)) == 0 {
		identifier = json.RawMessage("{}")
	}
	return Listener{Name: name, EventType: eventType, Identifier: identifier, Start: start, DefaultStart: true}
}

// Warnings are the things a valid file holds that the bridge does not do.
type Warnings struct {
	// Triggers is how many trigger entries the file holds in all, and
	// TriggerListeners how many listeners have any. The sink replaces
	// triggers; the caller logs one warning naming both counts when
	// Triggers > 0 (e.g. event bridge.listeners.triggers_ignored).
	Triggers         int
	TriggerListeners int
}
