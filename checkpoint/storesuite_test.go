package checkpoint_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

func fileSuite(path string) bridgetest.StoreSuiteConfig {
	return bridgetest.StoreSuiteConfig{
		Open: func(ctx context.Context, key string, lc lease.Config) (bridge.Store, error) {
			return checkpoint.OpenFileLease(ctx, path, key, lc)
		},
		Abandon: func(s bridge.Store) { checkpoint.AbandonFile(s.(*checkpoint.File)) },
		Standby: true,
	}
}

func TestStoreSuite(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		bridgetest.StoreSuite(t, fileSuite(filepath.Join(t.TempDir(), "checkpoint.json")))
	})
	t.Run("memory", func(t *testing.T) {
		m := checkpoint.NewMemory()
		bridgetest.StoreSuite(t, bridgetest.StoreSuiteConfig{
			Open: func(_ context.Context, key string, _ lease.Config) (bridge.Store, error) { return m.Open(key) },
		})
	})
}

func TestFleetSuite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoint.json")
	bridgetest.FleetSuite(t, bridgetest.FleetSuiteConfig{
		StoreSuiteConfig: fileSuite(path),
		OpenFleet: func(context.Context, time.Duration) (bridgetest.FleetStore, error) {
			return checkpoint.OpenFileAdmin(path)
		},
		AnnounceDead: func(_ context.Context, id string) error {
			// A lock file nobody holds: its process died.
			a, err := checkpoint.OpenFileAdmin(path)
			if err != nil {
				return err
			}
			release, err := a.Announce(context.Background(), id)
			if err != nil {
				return err
			}
			return rewriteAfter(release, path, id)
		},
	})
}

// rewriteAfter releases a member, then puts its lock file back unheld.
func rewriteAfter(release func(context.Context) error, path, id string) error {
	p := checkpoint.MemberLockPath(path, id)
	if err := release(context.Background()); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(id+"\n"), 0o644)
}
