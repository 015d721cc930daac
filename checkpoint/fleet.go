package checkpoint

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

// MemberPrefix starts the key of a member record (member.<instance id>)
// in the nats-kv bucket and the Kafka checkpoint topic; checkpoint keys
// never start with it, and Admin.List skips it.
const MemberPrefix = "member."

// Member is a live bridge of a fleet, as announced in the store.
type Member struct {
	// ID is the bridge's instance id (BRIDGE_INSTANCE_ID).
	ID string
	// LapsesBy is, on this host's clock, when the member counts as dead
	// if it stops refreshing its record now; zero where liveness is not
	// judged by a lease (the file store: a lock held by a live process).
	LapsesBy time.Time
}

// Holding is who holds a checkpoint key.
type Holding struct {
	// Holder is the owner id holding the key (the lease owner, which in a
	// fleet is BRIDGE_INSTANCE_ID); empty when the key is free: absent,
	// released, or named by an owner whose lease lapsed.
	Holder string
	// LapsesBy is, on this host's clock, the latest the holder's lease
	// lapses if it stops refreshing now; zero when free or unknown.
	LapsesBy time.Time
}

// Coordinator is a store's half of a fleet (BRIDGE_STANDBY): bridges
// sharing the store announce themselves, and each can list the live
// members and who holds each listener's key. Liveness is judged as the
// lease does, on the local clock: a record unchanged for one TTL names a
// dead owner, so a new Coordinator counts every recorded member alive for
// its first TTL (call Members and Holders at least every TTL). Implemented
// by natskv.Bucket, kafkatopic.Topic and checkpoint.FileAdmin.
type Coordinator interface {
	// Announce records id as a member, refreshed every third of the TTL
	// until release, which removes it at once (a graceful stop). A
	// second Announce of an id that is alive elsewhere fails with an
	// error wrapping bridge.ErrKeyHeld.
	Announce(ctx context.Context, id string) (release func(context.Context) error, err error)
	// Members lists the live members, sorted by id.
	Members(ctx context.Context) ([]Member, error)
	// Holders reports who holds each of keys (every key is in the map;
	// a free key has the zero Holding).
	Holders(ctx context.Context, keys []string) (map[string]Holding, error)
}

// Entry is one stored checkpoint key, as `aviso-bridge checkpoint list`
// shows it.
type Entry struct {
	// Key is the checkpoint key.
	Key string
	// Checkpoint is the stored position when Found.
	Checkpoint bridge.Checkpoint
	Found      bool
	// Holder is the owner id written in the key ("" when released or
	// never held); it may name a bridge that died (see LeaseExpires).
	Holder string
	// Written is when the key was last written, by the store's clock
	// (nats-kv: the server's; kafka: the writer's record time; file: the
	// file's modification time); zero when unknown.
	Written time.Time
	// LeaseExpires is Written plus the TTL when Holder is set: when the
	// lease lapses unless the holder refreshes it. An estimate for
	// display; Set and Delete decide liveness by watching the key.
	LeaseExpires time.Time
}

// Admin reads and changes stored positions (`aviso-bridge checkpoint
// list|get|set|delete`; the anchor is Kafka Connect's offset management).
// Set and Delete refuse with a *lease.HeldError naming the holder
// (errors.Is bridge.ErrKeyHeld) while a live bridge holds the key, unless
// force: a key that names an owner is watched for up to one TTL, and a
// write by that owner means it is alive. A forced change of a live key is
// overwritten by its holder's next commit or refresh: stop it first.
// Implemented by natskv.Bucket, kafkatopic.Topic and checkpoint.FileAdmin.
type Admin interface {
	// List returns every stored checkpoint key, sorted by key.
	List(ctx context.Context) ([]Entry, error)
	// Get returns the entry of key; found is false when nothing is stored.
	Get(ctx context.Context, key string) (e Entry, found bool, err error)
	// Set stores cp as the position of key (backwards too) and leaves the
	// key released.
	Set(ctx context.Context, key string, cp bridge.Checkpoint, force bool) error
	// Delete removes key (position and lease); deleting an absent key
	// succeeds.
	Delete(ctx context.Context, key string, force bool) error
}

// ChangeLeased is the admin's change of a key in a leased store: open
// takes the key's lease with lc in mode lease.Probe (a live holder fails
// it with a *lease.HeldError, which gets the admin's hint; a dead one is
// outwaited for one TTL), change runs on the open store, which is closed
// after. For store implementations (natskv, kafkatopic).
func ChangeLeased[S io.Closer](open func(lease.Config) (S, error), lc lease.Config, change func(S) error) error {
	lc.Mode = lease.Probe
	st, err := open(lc)
	if err != nil {
		var held *lease.HeldError
		if errors.As(err, &held) {
			held.Detail = "stop that bridge first, or force the change"
		}
		return err
	}
	defer func() { _ = st.Close() }()
	return change(st)
}
