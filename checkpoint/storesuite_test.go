package checkpoint_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
	"github.com/aviso-bridge/aviso-bridge/checkpoint"
	"github.com/aviso-bridge/aviso-bridge/checkpoint/lease"
)

func TestStoreSuite(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "checkpoint.json")
		bridgetest.StoreSuite(t, bridgetest.StoreSuiteConfig{
			Open: func(_ context.Context, key string, _ lease.Config) (bridge.Store, error) {
				return checkpoint.OpenFile(path, key)
			},
		})
	})
	t.Run("memory", func(t *testing.T) {
		m := checkpoint.NewMemory()
		bridgetest.StoreSuite(t, bridgetest.StoreSuiteConfig{
			Open: func(_ context.Context, key string, _ lease.Config) (bridge.Store, error) { return m.Open(key) },
		})
	})
}
