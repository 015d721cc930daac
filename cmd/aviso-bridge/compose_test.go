package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
	"go.yaml.in/yaml/v3"
)

// composeService is the part of a compose service these tests read.
type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Volumes     []string          `yaml:"volumes"`
	Environment map[string]string `yaml:"environment"`
}

// The compose files' bridges (every service running the aviso-bridge image)
// set only variables the bridge knows, and each bridge's environment is a
// valid configuration. A file bind-mounted from the repository (the fleet's
// listener file) is read from its place in the repository.
func TestComposeFileUsesKnownVariables(t *testing.T) {
	known := map[string]bool{}
	for _, v := range variables(&Config{}) {
		known[v.Name] = true
	}
	tests := []struct {
		file       string
		minBridges int
	}{
		{file: "docker-compose.yml", minBridges: 2},       // one to JetStream, one to Kafka
		{file: "docker-compose.fleet.yml", minBridges: 2}, // two bridges sharing a listener file
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("..", "..", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Services map[string]composeService `yaml:"services"`
			}
			if err := yaml.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			bridges := 0
			for name, svc := range doc.Services {
				if !strings.HasPrefix(svc.Image, "aviso-bridge:") {
					if svc.Build != nil {
						t.Errorf("service %s is built from this repository but its image is %q, not aviso-bridge:*", name, svc.Image)
					}
					continue // not a bridge
				}
				bridges++
				if !strings.HasPrefix(name, "bridge-") {
					t.Errorf("service %s runs the bridge image but is not named bridge-*", name)
				}
				checkComposeBridge(t, name, svc, known)
			}
			if bridges < tc.minBridges {
				t.Errorf("%s has %d bridges, want at least %d", tc.file, bridges, tc.minBridges)
			}
		})
	}
}

func checkComposeBridge(t *testing.T, name string, svc composeService, known map[string]bool) {
	t.Helper()
	mounts := map[string]string{} // container path -> path from this package
	for _, v := range svc.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && strings.HasPrefix(parts[0], "./") {
			mounts[parts[1]] = filepath.Join("..", "..", parts[0])
		}
	}
	env := map[string]string{}
	for k, v := range svc.Environment {
		if !known[k] {
			t.Errorf("service %s sets %s, which aviso-bridge does not read", name, k)
		}
		if host, ok := mounts[v]; ok {
			v = host
		}
		env[k] = v
	}
	if _, err := loadConfig(context.Background(), envconfig.MapLookuper(env)); err != nil {
		t.Errorf("service %s: %v", name, err)
	}
}
