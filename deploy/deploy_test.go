// Package deploy holds the deployment files (systemd unit, Dockerfile,
// Kubernetes manifest). They are not run here; these tests keep them consistent
// with the program: the commands they run exist, the table they ship validates,
// and the probes point at the admin endpoints.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/oncecron/oncecron/config"
)

func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile("oncecron.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("oncecron.service:%d: not a key=value line in a section: %q", n, line)
			}
			keys[section+k] = v
		}
	}
	for k, want := range map[string]string{
		"[Service]ExecStart":  "/usr/local/bin/scheduler run --config /etc/oncecron/jobs.yaml",
		"[Service]ExecReload": "-HUP",
		"[Service]KillSignal": "SIGTERM",
		"[Install]WantedBy":   "multi-user.target",
	} {
		if !strings.Contains(keys[k], want) {
			t.Errorf("%s = %q, want it to contain %q", k, keys[k], want)
		}
	}
	stop, err := time.ParseDuration(keys["[Service]TimeoutStopSec"])
	if err != nil || stop <= config.DefaultShutdownTimeout {
		t.Errorf("TimeoutStopSec %q must exceed the default shutdown_timeout %v", keys["[Service]TimeoutStopSec"], config.DefaultShutdownTimeout)
	}
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{"AS build", "CGO_ENABLED=0", "./cmd/scheduler", "USER nonroot", "COPY --from=build", `CMD ["run", "--config", "/etc/oncecron/jobs.yaml"]`} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if _, err := os.Stat("../cmd/scheduler/main.go"); err != nil {
		t.Errorf("the Dockerfile builds ./cmd/scheduler: %v", err)
	}
}

func TestKubernetesManifest(t *testing.T) {
	f, err := os.Open("kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	kinds := map[string]map[string]any{}
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("kubernetes.yaml: %v", err)
		}
		kinds[doc["kind"].(string)] = doc
	}
	cm := kinds["ConfigMap"]["data"].(map[string]any)["jobs.yaml"].(string)
	env := func(k string) (string, bool) { return "secret", k == "REDIS_PASSWORD" }
	cfg, err := config.Parse("kubernetes.yaml#jobs.yaml", []byte(cm), config.WithLookupEnv(env))
	if err != nil {
		t.Fatalf("the ConfigMap's table does not validate: %v", err)
	}
	if cfg.Admin.Listen == "" {
		t.Error("the probes need admin.listen in the ConfigMap's table")
	}
	dep := kinds["Deployment"]["spec"].(map[string]any)
	if dep["replicas"] != 3 {
		t.Errorf("replicas = %v, want 3", dep["replicas"])
	}
	c := dep["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	probe := func(name string) string {
		return c[name].(map[string]any)["httpGet"].(map[string]any)["path"].(string)
	}
	if probe("livenessProbe") != "/healthz" || probe("readinessProbe") != "/readyz" {
		t.Errorf("probes %s, %s; want /healthz and /readyz", probe("livenessProbe"), probe("readinessProbe"))
	}
	if _, ok := kinds["Secret"]; !ok {
		t.Error("no Secret for the backend password")
	}
}
