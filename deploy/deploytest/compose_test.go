package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// repo is the repository root, seen from this package.
const repo = "../.."

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image           string            `yaml:"image"`
	Build           any               `yaml:"build"`
	Restart         string            `yaml:"restart"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	Ports           []string          `yaml:"ports"`
	Volumes         []string          `yaml:"volumes"`
	Environment     map[string]string `yaml:"environment"`
	DependsOn       map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

func readCompose(t *testing.T, name string) composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repo, name))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f
}

func isBridge(s composeService) bool { return strings.HasPrefix(s.Image, "aviso-bridge:") }

// defaultShutdownTimeout is BRIDGE_SHUTDOWN_TIMEOUT's default (interface.md
// section 2).
const defaultShutdownTimeout = 20 * time.Second

// shutdownTimeout is the drain time of a bridge with env.
func shutdownTimeout(t *testing.T, env map[string]string) time.Duration {
	t.Helper()
	v, ok := env["BRIDGE_SHUTDOWN_TIMEOUT"]
	if !ok {
		return defaultShutdownTimeout
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("BRIDGE_SHUTDOWN_TIMEOUT %q: %v", v, err)
	}
	return d
}

// Every service of both compose files restarts unless stopped and publishes
// its ports on 127.0.0.1 only; every bridge has a stop grace period above its
// drain time, a named volume on /data, and waits for a healthy aviso-server.
func TestComposeServices(t *testing.T) {
	base := readCompose(t, "docker-compose.yml")
	fleet := readCompose(t, "docker-compose.fleet.yml")
	named := map[string]bool{}
	for _, f := range []composeFile{base, fleet} {
		for v := range f.Volumes {
			named[v] = true
		}
	}
	loopbackPort := regexp.MustCompile(`^127\.0\.0\.1:\d+:\d+$`)
	for file, f := range map[string]composeFile{"docker-compose.yml": base, "docker-compose.fleet.yml": fleet} {
		for name, s := range f.Services {
			if s.Restart != "unless-stopped" {
				t.Errorf("%s: service %s: restart %q, want unless-stopped", file, name, s.Restart)
			}
			for _, p := range s.Ports {
				if !loopbackPort.MatchString(p) {
					t.Errorf("%s: service %s publishes %q, want 127.0.0.1:HOST:CONTAINER", file, name, p)
				}
			}
			if strings.HasSuffix(s.Image, ":latest") || !strings.Contains(s.Image, ":") {
				t.Errorf("%s: service %s: image %q is not pinned", file, name, s.Image)
			}
			if isBridge(s) {
				checkComposeBridge(t, file+": service "+name, s, named)
			}
		}
	}
}

func checkComposeBridge(t *testing.T, what string, s composeService, named map[string]bool) {
	t.Helper()
	grace, err := time.ParseDuration(s.StopGracePeriod)
	if err != nil {
		t.Errorf("%s: stop_grace_period %q: %v (Docker's default 10s kills a draining bridge)", what, s.StopGracePeriod, err)
	} else if drain := shutdownTimeout(t, s.Environment); grace <= drain+5*time.Second {
		t.Errorf("%s: stop_grace_period %v, want above BRIDGE_SHUTDOWN_TIMEOUT %v plus 5s for the final commit", what, grace, drain)
	}
	data := false
	for _, v := range s.Volumes {
		src, dst, _ := strings.Cut(v, ":")
		if strings.HasPrefix(dst, "/data") {
			data = true
			if !named[src] {
				t.Errorf("%s: /data is %q, not a named volume", what, src)
			}
		}
	}
	if !data {
		t.Errorf("%s: no named volume on /data (the image declares VOLUME /data: it would be anonymous)", what)
	}
	if c := s.DependsOn["aviso-server"].Condition; c != "service_healthy" {
		t.Errorf("%s: depends on aviso-server with condition %q, want service_healthy", what, c)
	}
}

// The bridge image is built once, with VERSION and COMMIT build args, and
// every bridge runs that image.
func TestComposeBuildsTheBridgeOnce(t *testing.T) {
	base := readCompose(t, "docker-compose.yml")
	fleet := readCompose(t, "docker-compose.fleet.yml")
	builds, image := 0, ""
	for name, s := range base.Services {
		if s.Build == nil {
			continue
		}
		builds++
		image = s.Image
		b, ok := s.Build.(map[string]any)
		if !ok {
			t.Fatalf("service %s: build is %T, want a mapping with args", name, s.Build)
		}
		args, _ := b["args"].(map[string]any)
		for _, a := range []string{"VERSION", "COMMIT"} {
			if _, ok := args[a]; !ok {
				t.Errorf("service %s: build args lack %s", name, a)
			}
		}
	}
	for name, s := range fleet.Services {
		if s.Build != nil {
			t.Errorf("docker-compose.fleet.yml: service %s builds the image again", name)
		}
	}
	if builds != 1 {
		t.Fatalf("docker-compose.yml has %d build sections, want 1", builds)
	}
	for file, f := range map[string]composeFile{"docker-compose.yml": base, "docker-compose.fleet.yml": fleet} {
		for name, s := range f.Services {
			if strings.HasPrefix(name, "bridge-") && s.Image != image {
				t.Errorf("%s: service %s runs %q, want the built image %q", file, name, s.Image, image)
			}
		}
	}
}

// aviso-server is a pinned 0.13.x release with a healthcheck on /ready;
// Kafka keeps its log on the volume; NATS and Kafka have healthchecks.
func TestComposeInfrastructure(t *testing.T) {
	f := readCompose(t, "docker-compose.yml")
	av, ok := f.Services["aviso-server"]
	if !ok {
		t.Fatal("no aviso-server service")
	}
	if !regexp.MustCompile(`^eccr\.ecmwf\.int/aviso/aviso_server(-debug)?:0\.13\.\d+$`).MatchString(av.Image) {
		t.Errorf("aviso-server image %q, want a released 0.13.x tag", av.Image)
	}
	for _, name := range []string{"aviso-server", "nats", "kafka"} {
		if s := f.Services[name]; s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("service %s has no healthcheck", name)
		}
	}
	if av.Healthcheck != nil && !strings.Contains(strings.Join(av.Healthcheck.Test, " "), "/ready") {
		t.Errorf("aviso-server healthcheck %q does not ask /ready", av.Healthcheck.Test)
	}
	kafka := f.Services["kafka"]
	logDirs := kafka.Environment["KAFKA_LOG_DIRS"]
	onVolume := false
	for _, v := range kafka.Volumes {
		_, dst, _ := strings.Cut(v, ":")
		dst, _, _ = strings.Cut(dst, ":")
		if logDirs != "" && (logDirs == dst || strings.HasPrefix(logDirs, dst+"/")) {
			onVolume = true
		}
	}
	if !onVolume {
		t.Errorf("KAFKA_LOG_DIRS %q is not on Kafka's volume %v (the image's default is /tmp/kraft-combined-logs)", logDirs, kafka.Volumes)
	}
}

// The fleet: two bridges in standby on a shared nats-kv store, with one
// listener file, distinct instance ids.
func TestComposeFleet(t *testing.T) {
	f := readCompose(t, "docker-compose.fleet.yml")
	ids := map[string]bool{}
	files := map[string]bool{}
	for name, s := range f.Services {
		if !isBridge(s) {
			continue
		}
		e := s.Environment
		if e["BRIDGE_STANDBY"] != "true" || e["CHECKPOINT_STORE"] != "nats-kv" || e["AVISO_LISTENERS_FILE"] == "" {
			t.Errorf("service %s: BRIDGE_STANDBY=%q CHECKPOINT_STORE=%q AVISO_LISTENERS_FILE=%q, want true, nats-kv, a file",
				name, e["BRIDGE_STANDBY"], e["CHECKPOINT_STORE"], e["AVISO_LISTENERS_FILE"])
		}
		ids[e["BRIDGE_INSTANCE_ID"]] = true
		for _, v := range s.Volumes {
			src, dst, _ := strings.Cut(v, ":")
			if strings.HasPrefix(dst, e["AVISO_LISTENERS_FILE"]+":") {
				if _, err := os.Stat(filepath.Join(repo, src)); err != nil {
					t.Errorf("service %s mounts listener file %s: %v", name, src, err)
				}
				files[src] = true
			}
		}
	}
	if len(ids) != 2 {
		t.Errorf("fleet bridges have instance ids %v, want two distinct", ids)
	}
	if len(files) != 1 {
		t.Errorf("fleet bridges mount listener files %v, want one shared file", files)
	}
}
