package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
	"go.yaml.in/yaml/v3"
)

// The compose file's bridges set only variables the bridge knows, and each
// bridge's environment is a valid configuration.
func TestComposeFileUsesKnownVariables(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Build       any               `yaml:"build"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, v := range variables(&Config{}) {
		known[v.Name] = true
	}
	bridges := 0
	for name, svc := range doc.Services {
		if svc.Build == nil {
			continue // not a bridge
		}
		bridges++
		for k := range svc.Environment {
			if !known[k] {
				t.Errorf("service %s sets %s, which aviso-bridge does not read", name, k)
			}
		}
		env := map[string]string{}
		for k, v := range svc.Environment {
			env[k] = v
		}
		if _, err := loadConfig(context.Background(), envconfig.MapLookuper(env)); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
		if !strings.HasPrefix(name, "bridge-") {
			t.Errorf("service %s is built from this repository but is not named bridge-*", name)
		}
	}
	if bridges < 2 {
		t.Errorf("compose file has %d bridges, want one to JetStream and one to Kafka", bridges)
	}
}
