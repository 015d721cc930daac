package deploytest

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// avisoServerSections are the fields of each section of aviso-server 0.13's
// configuration (src/configuration/types.rs): a section that is present is
// deserialised as a whole, and a missing field without a serde default is an
// error that stops the server (only an absent section gets defaults).
var avisoServerSections = map[string][]string{
	"application":    {"host", "port", "base_url", "static_files_path"},
	"watch_endpoint": {"sse_heartbeat_interval_sec", "connection_max_duration_sec", "replay_batch_size", "max_historical_notifications", "replay_batch_delay_ms", "concurrent_notification_processing"},
	"logging":        {"level", "format"},
	"notification_backend/jetstream": {"nats_url", "timeout_seconds", "retry_attempts", "max_messages", "max_bytes", "retention_time",
		"storage_type", "replicas", "retention_policy", "discard_policy", "enable_auto_reconnect", "max_reconnect_attempts",
		"reconnect_delay_ms", "publish_retry_attempts", "publish_retry_base_delay_ms"},
}

// Optional fields that the file may leave out (secrets).
var avisoServerOptional = map[string][]string{"notification_backend/jetstream": {"token"}}

// validationFields are the fields of each identifier handler
// (aviso-validators ValidationRules); unknown ones are refused.
var validationFields = map[string][]string{
	"StringHandler":  {"max_length", "required"},
	"DateHandler":    {"canonical_format", "required"},
	"EnumHandler":    {"values", "required"},
	"ExpverHandler":  {"default", "required"},
	"IntHandler":     {"range", "required"},
	"FloatHandler":   {"range", "required"},
	"TimeHandler":    {"required"},
	"PolygonHandler": {"required"},
}

func section(doc map[string]any, path string) (map[string]any, bool) {
	cur := doc
	for _, p := range strings.Split(path, "/") {
		next, ok := cur[p].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The compose file's aviso-server configuration gives every field of each
// section it sets, no unknown field, and a known handler with exactly its
// fields for every identifier.
func TestAvisoServerConfigComplete(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repo, "deploy", "aviso-server", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, top := range []string{"application", "notification_backend"} {
		if _, ok := doc[top]; !ok {
			t.Errorf("section %s is required", top)
		}
	}
	for path, fields := range avisoServerSections {
		sec, ok := section(doc, path)
		if !ok {
			continue // absent: defaults
		}
		for _, f := range fields {
			if _, ok := sec[f]; !ok {
				t.Errorf("section %s lacks %s (a present section must give every field)", path, f)
			}
		}
		for _, k := range keys(sec) {
			if !slices.Contains(fields, k) && !slices.Contains(avisoServerOptional[path], k) {
				t.Errorf("section %s: unknown field %s", path, k)
			}
		}
	}
	schemas, _ := doc["notification_schema"].(map[string]any)
	if len(schemas) == 0 {
		t.Fatal("no notification_schema: the bridge's event type mars must exist")
	}
	for event, s := range schemas {
		schema, _ := s.(map[string]any)
		ids, _ := schema["identifier"].(map[string]any)
		if len(ids) == 0 {
			t.Errorf("schema %s has no identifier fields", event)
		}
		for name, f := range ids {
			field, _ := f.(map[string]any)
			typ, _ := field["type"].(string)
			allowed, ok := validationFields[typ]
			if !ok {
				t.Errorf("schema %s, identifier %s: unknown handler type %q", event, name, typ)
				continue
			}
			if _, ok := field["required"]; !ok {
				t.Errorf("schema %s, identifier %s: required is not optional", event, name)
			}
			for _, k := range keys(field) {
				if k != "type" && k != "description" && !slices.Contains(allowed, k) {
					t.Errorf("schema %s, identifier %s: %s has no field %s", event, name, typ, k)
				}
			}
		}
	}
}
