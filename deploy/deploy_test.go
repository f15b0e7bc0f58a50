package deploy

// The deployment files checked against the code. Each deployment flavour
// (compose, Kubernetes, systemd) has its POSTBUD_* environment loaded by
// config.Load itself, its port and probes compared with the code's
// defaults, its secret paths resolved to files the flavour really
// provides, and its stop timeout compared with the shutdown the code
// performs. redis.conf is checked for what the code requires of Redis.
//
// General linting of the files (YAML syntax, compose schema, systemd unit
// syntax and hardening) is left to real tools in .ci/run.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/config"
)

// httpDrain is how long `postbud serve` gives HTTP requests in flight after
// SIGTERM before it stops the workers (the hs.Shutdown timeout in
// cmd/postbud/serve.go); POSTBUD_SHUTDOWN_TIMEOUT comes on top of it.
const httpDrain = 10 * time.Second

// ---------------------------------------------------------------------------
// The code's side: its defaults, and a deployment's environment loaded by
// config.Load.

// defaults returns config.Load's defaults (the least environment it
// accepts, and defaults for everything else).
func defaults(t *testing.T) *config.Config {
	t.Helper()
	env := map[string]string{
		"POSTBUD_PSEUDONYM_KEY": strings.Repeat("p", 32),
		"POSTBUD_SEAL_KEY":      strings.Repeat("s", 32),
		"POSTBUD_OPS_KEY":       strings.Repeat("o", 16),
		"POSTBUD_KEY_CORE":      strings.Repeat("c", 16),
	}
	c, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config.Load with the minimal environment: %v", err)
	}
	return c
}

// portOf returns the port of a listen address such as ":8080".
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("listen address %q: port is not a number", addr)
	}
	return n
}

// shutdownNeed is the time `postbud serve` may take after SIGTERM: the
// HTTP drain, then the tasks' shutdown timeout (the larger of the
// configured one and the default, so a later change of the default is
// caught too).
func shutdownNeed(t *testing.T, cfg *config.Config) time.Duration {
	return httpDrain + max(cfg.ShutdownTimeout, defaults(t).ShutdownTimeout)
}

// testSecret returns a file content the code accepts for the secret
// variable name (NAME_FILE).
func testSecret(t testing.TB, name string) []byte {
	t.Helper()
	random := make([]byte, 32)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	pkcs8 := func() string {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	switch {
	case strings.HasPrefix(name, "POSTBUD_WEBHOOK_SECRET_"), strings.HasPrefix(name, "POSTBUD_INBOUND_SECRET_"):
		return []byte(webhook.FormatSecret(random) + "\n")
	case name == "POSTBUD_APNS_KEY_FILE":
		return []byte(pkcs8())
	case strings.HasPrefix(name, "POSTBUD_FCM_CREDENTIALS_"):
		b, err := json.Marshal(map[string]string{"type": "service_account", "project_id": "test",
			"private_key_id": "1", "private_key": pkcs8(), "client_email": "postbud@test.iam.gserviceaccount.com",
			"token_uri": "https://oauth2.googleapis.com/token"})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return []byte(hex.EncodeToString(random) + "\n")
}

// load loads a deployment's POSTBUD_* environment with config.Load and
// returns the result. Each *_FILE value is a path in the deployment;
// secretPath checks that the deployment provides that file and returns
// where, relative to a temporary directory, the test writes a test secret
// of the right shape. load fails the test when Load refuses the
// environment, when a variable is set that Load does not read (a typo, a
// removed variable, or one without effect in this environment), and when
// a secret is set in the environment itself instead of as a file.
func load(t testing.TB, what string, env map[string]string, secretPath func(name, value string) (string, error)) *config.Config {
	t.Helper()
	dir := t.TempDir()
	getenv := map[string]string{}
	for k, v := range env {
		if !strings.HasPrefix(k, "POSTBUD_") {
			continue
		}
		if strings.HasSuffix(k, "_FILE") {
			rel, err := secretPath(k, v)
			if err != nil {
				t.Errorf("%s: %s=%s: %v", what, k, v, err)
				continue
			}
			p := filepath.Join(dir, rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
				if err := os.WriteFile(p, testSecret(t, k), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			v = p
		}
		getenv[k] = v
	}
	asked := map[string]bool{}
	c, err := config.Load(func(k string) string {
		asked[k] = true
		return getenv[k]
	})
	if err != nil {
		t.Fatalf("%s: config.Load refuses the deployment's environment:\n%v", what, err)
	}
	for k := range getenv {
		if !asked[k] {
			t.Errorf("%s: %s is set but config.Load does not read it (unknown, or no effect with this environment)", what, k)
		}
		if asked[k+"_FILE"] {
			t.Errorf("%s: %s is a secret: set %s_FILE to a file instead", what, k, k)
		}
	}
	return c
}

// failures records a check's failures instead of failing the test.
type failures struct {
	testing.TB
	msgs []string
}

func (f *failures) Errorf(format string, args ...any) {
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}
func (f *failures) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	panic(f)
}

// TestLoadCatchesMistakes guards load: a misspelt name, a secret in the
// environment, a secret file the deployment does not provide and a value
// the code refuses must each fail a deployment's check, or every check
// below that relies on load would pass vacuously.
func TestLoadCatchesMistakes(t *testing.T) {
	for name, bad := range map[string]map[string]string{
		"misspelt":    {"POSTBUD_HTTP_ADR": ":8080"},
		"secret":      {"POSTBUD_OPS_KEY": strings.Repeat("o", 16)},
		"unprovided":  {"POSTBUD_SMS_TOKEN_FILE": "/nowhere"},
		"wrong value": {"POSTBUD_SHUTDOWN_TIMEOUT": "soon"},
	} {
		env := map[string]string{"POSTBUD_PSEUDONYM_KEY_FILE": "/p", "POSTBUD_SEAL_KEY_FILE": "/s", "POSTBUD_OPS_KEY_FILE": "/o", "POSTBUD_KEY_CORE_FILE": "/c"}
		for k, v := range bad {
			delete(env, k+"_FILE")
			env[k] = v
		}
		f := &failures{TB: t}
		func() {
			defer func() {
				if r := recover(); r != nil && r != f {
					panic(r)
				}
			}()
			load(f, name, env, func(_, v string) (string, error) {
				if v == "/nowhere" {
					return "", errors.New("not provided")
				}
				return v, nil
			})
		}()
		if len(f.msgs) == 0 {
			t.Errorf("%s: load accepts %v", name, bad)
		}
	}
	f := &failures{TB: t}
	load(f, "good", map[string]string{"POSTBUD_PSEUDONYM_KEY_FILE": "/p", "POSTBUD_SEAL_KEY_FILE": "/s", "POSTBUD_OPS_KEY_FILE": "/o", "POSTBUD_KEY_CORE_FILE": "/c"},
		func(_, v string) (string, error) { return v, nil })
	if len(f.msgs) > 0 {
		t.Errorf("load refuses the least environment: %q", f.msgs)
	}
}

// ---------------------------------------------------------------------------
// Kubernetes: the Deployment postbud and the StatefulSet redis.

// intOrString is a Kubernetes port: a number or a port name.
type intOrString string

func (s *intOrString) UnmarshalYAML(n *yaml.Node) error {
	*s = intOrString(n.Value)
	return nil
}

type probe struct {
	HTTPGet *struct {
		Path string      `yaml:"path"`
		Port intOrString `yaml:"port"`
	} `yaml:"httpGet"`
}

type container struct {
	Name  string `yaml:"name"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string     `yaml:"name"`
		Value     string     `yaml:"value"`
		ValueFrom *yaml.Node `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *yaml.Node `yaml:"secretRef"`
	} `yaml:"envFrom"`
	StartupProbe   *probe `yaml:"startupProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
			Exec *yaml.Node `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Limits map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *securityContext `yaml:"securityContext"`
	VolumeMounts    []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type keyPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type secretSource struct {
	Name       string    `yaml:"name"`
	SecretName string    `yaml:"secretName"`
	Items      []keyPath `yaml:"items"`
}

type volume struct {
	Name      string        `yaml:"name"`
	Secret    *secretSource `yaml:"secret"`
	Projected *struct {
		Sources []struct {
			Secret *secretSource `yaml:"secret"`
		} `yaml:"sources"`
	} `yaml:"projected"`
}

type securityContext struct {
	RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	Capabilities             *struct {
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int             `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               *securityContext `yaml:"securityContext"`
	InitContainers                []container      `yaml:"initContainers"`
	Containers                    []container      `yaml:"containers"`
	Volumes                       []volume         `yaml:"volumes"`
}

type workload struct {
	Spec struct {
		Replicas    *int   `yaml:"replicas"`
		ServiceName string `yaml:"serviceName"`
		Template    struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type service struct {
	Spec struct {
		Ports []struct {
			TargetPort intOrString `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type configMap struct {
	Data map[string]string `yaml:"data"`
}

// object is one Kubernetes manifest document.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
}

// yamlDocs decodes every document of a (multi-document) YAML file.
func yamlDocs(t *testing.T, path string) []*yaml.Node {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, &n)
	}
}

// kube decodes the object kind/name of deploy/kubernetes/*.yaml into v.
func kube(t *testing.T, kind, name string, v any) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in kubernetes/: %v", err)
	}
	for _, f := range files {
		for _, n := range yamlDocs(t, f) {
			var o object
			if err := n.Decode(&o); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == kind && o.Metadata.Name == name {
				if err := n.Decode(v); err != nil {
					t.Fatalf("%s %s/%s: %v", f, kind, name, err)
				}
				return
			}
		}
	}
	t.Fatalf("no %s %q in kubernetes/", kind, name)
}

func podContainer(t *testing.T, spec podSpec, name string) container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return container{}
}

// kubeEnv returns a container's environment: its envFrom ConfigMaps, then
// its env (which wins, as in Kubernetes). Secrets must come as files, not
// through secretRef or valueFrom.
func kubeEnv(t *testing.T, c container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.SecretRef != nil {
			t.Errorf("container %s: envFrom secretRef puts secrets into the environment; mount them as files", c.Name)
		}
		if ef.ConfigMapRef != nil {
			var cm configMap
			kube(t, "ConfigMap", ef.ConfigMapRef.Name, &cm)
			for k, v := range cm.Data {
				env[k] = v
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && strings.HasPrefix(e.Name, "POSTBUD_") {
			t.Errorf("container %s: %s uses valueFrom; POSTBUD_* values are literal and secrets are files", c.Name, e.Name)
		}
		env[e.Name] = e.Value
	}
	return env
}

// containerPort resolves a probe's or Service's port (number or name)
// against a container's ports.
func containerPort(c container, p intOrString) (int, bool) {
	for _, cp := range c.Ports {
		if string(p) == cp.Name || string(p) == strconv.Itoa(cp.ContainerPort) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// secretFile resolves a path against a container's mounts: it must lie in
// a read-only volume of secrets (a secret, or a projection of secrets),
// and where the volume names its files (items), be one of them. It returns
// "secret/key" the file comes from ("" when the volume does not name its
// files).
func secretFile(spec podSpec, c container, path string) (string, error) {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		if !m.ReadOnly {
			return "", fmt.Errorf("the mount %s of secrets is not readOnly", m.MountPath)
		}
		i := slices.IndexFunc(spec.Volumes, func(v volume) bool { return v.Name == m.Name })
		if i < 0 {
			return "", fmt.Errorf("the mount %s names no volume of the pod", m.MountPath)
		}
		v := spec.Volumes[i]
		var sources []*secretSource
		switch {
		case v.Secret != nil:
			v.Secret.Name = v.Secret.SecretName
			sources = append(sources, v.Secret)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.Secret == nil {
					return "", fmt.Errorf("the volume %s projects more than secrets", v.Name)
				}
				sources = append(sources, s.Secret)
			}
		default:
			return "", fmt.Errorf("not in a volume of secrets (volume %s)", v.Name)
		}
		open := false
		for _, s := range sources {
			open = open || len(s.Items) == 0
			for _, it := range s.Items {
				if it.Path == rel {
					return s.Name + "/" + it.Key, nil
				}
			}
		}
		if !open {
			return "", fmt.Errorf("no secret of the volume %s has the file %s", v.Name, rel)
		}
		return "", nil
	}
	return "", errors.New("not under the mountPath of a secret volume of the container")
}

// TestKubernetesPostbud checks the Deployment against the code: its
// environment loads, its secrets are files of read-only secret volumes,
// its port is the listen port, the probes ask /readyz and /healthz on it,
// the Service targets it, the grace period covers the shutdown, and
// POSTBUD_REDIS_URL names the sentinels of the StatefulSet redis.
func TestKubernetesPostbud(t *testing.T) {
	var d workload
	kube(t, "Deployment", "postbud", &d)
	spec := d.Spec.Template.Spec
	c := podContainer(t, spec, "postbud")

	// The environment, loaded by the code; the secrets, files.
	var redisSecret string
	cfg := load(t, "Deployment postbud", kubeEnv(t, c), func(name, path string) (string, error) {
		s, err := secretFile(spec, c, path)
		if name == "POSTBUD_REDIS_PASSWORD_FILE" {
			redisSecret = s
		}
		return path, err
	})

	// The ports, the probes and the Services.
	port := portOf(t, cfg.HTTPAddr)
	if cfg.OpsAddr == "" {
		t.Fatal("Deployment postbud: POSTBUD_OPS_ADDR is not set; the manifests keep /metrics and the ops API off the ingest port")
	}
	opsPort := portOf(t, cfg.OpsAddr)
	if len(c.Ports) != 2 || c.Ports[0].ContainerPort != port || c.Ports[1].ContainerPort != opsPort {
		t.Errorf("Deployment postbud: want the container ports %d (POSTBUD_HTTP_ADDR %s) and %d (POSTBUD_OPS_ADDR %s), got %+v",
			port, cfg.HTTPAddr, opsPort, cfg.OpsAddr, c.Ports)
	}
	for _, p := range []struct {
		name  string
		probe *probe
		paths []string
	}{
		{"readinessProbe", c.ReadinessProbe, []string{"/readyz"}},
		{"livenessProbe", c.LivenessProbe, []string{"/healthz"}},
		{"startupProbe", c.StartupProbe, []string{"/healthz", "/readyz"}},
	} {
		switch {
		case p.probe == nil && p.name == "startupProbe":
		case p.probe == nil || p.probe.HTTPGet == nil:
			t.Errorf("Deployment postbud: want an httpGet %s (the image has no shell)", p.name)
		case !slices.Contains(p.paths, p.probe.HTTPGet.Path):
			t.Errorf("Deployment postbud: %s asks %s, want %s", p.name, p.probe.HTTPGet.Path, strings.Join(p.paths, " or "))
		default:
			if got, ok := containerPort(c, p.probe.HTTPGet.Port); !ok || got != port {
				t.Errorf("Deployment postbud: %s port %q is not the listen port %d", p.name, p.probe.HTTPGet.Port, port)
			}
		}
	}
	for name, want := range map[string]int{"postbud": port, "postbud-ops": opsPort} {
		var svc service
		kube(t, "Service", name, &svc)
		if len(svc.Spec.Ports) == 0 {
			t.Errorf("Service %s: no ports", name)
		}
		for _, p := range svc.Spec.Ports {
			if got, ok := containerPort(c, p.TargetPort); !ok || got != want {
				t.Errorf("Service %s: targetPort %q is not the port %d", name, p.TargetPort, want)
			}
		}
	}
	// The NetworkPolicy opens the ingest port and keeps the ops port to
	// some peers: no rule lets everyone reach it.
	var np struct {
		Spec struct {
			Ingress []struct {
				From  []yaml.Node `yaml:"from"`
				Ports []struct {
					Port intOrString `yaml:"port"`
				} `yaml:"ports"`
			} `yaml:"ingress"`
		} `yaml:"spec"`
	}
	kube(t, "NetworkPolicy", "postbud", &np)
	ingestOpen := false
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 && len(rule.From) == 0 {
			t.Error("NetworkPolicy postbud: a rule without ports and peers lets everyone reach the ops port")
		}
		for _, p := range rule.Ports {
			got, ok := containerPort(c, p.Port)
			switch {
			case !ok:
				t.Errorf("NetworkPolicy postbud: port %q is no container port", p.Port)
			case got == opsPort && len(rule.From) == 0:
				t.Errorf("NetworkPolicy postbud: the ops port %d is open to everyone", opsPort)
			case got == port:
				ingestOpen = true
			}
		}
	}
	if !ingestOpen {
		t.Errorf("NetworkPolicy postbud: no rule opens the ingest port %d", port)
	}

	// Shutdown: the preStop pause, then the HTTP drain and the tasks'
	// shutdown timeout, all within the grace period.
	var preStop time.Duration
	if lc := c.Lifecycle; lc != nil && lc.PreStop != nil {
		if lc.PreStop.Exec != nil {
			t.Errorf("Deployment postbud: a preStop exec needs a shell or a sleep binary, which the distroless image lacks; use the sleep action")
		}
		if lc.PreStop.Sleep != nil {
			preStop = time.Duration(lc.PreStop.Sleep.Seconds) * time.Second
		}
	}
	need := preStop + shutdownNeed(t, cfg)
	if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= need {
		t.Errorf("Deployment postbud: terminationGracePeriodSeconds must exceed preStop %v + HTTP drain %v + POSTBUD_SHUTDOWN_TIMEOUT %v = %v",
			preStop, httpDrain, cfg.ShutdownTimeout, need)
	}

	// Redis behind Sentinel: every sentinel of the StatefulSet redis by its
	// stable name, the master the sentinels monitor, and the password the
	// Redis pods use.
	fo := cfg.Redis
	if !fo.Sentinel() {
		t.Fatalf("POSTBUD_REDIS_URL %s: want redis-sentinel://...?master=NAME", cfg.RedisURL)
	}
	var s workload
	kube(t, "StatefulSet", "redis", &s)
	sentinel := podContainer(t, s.Spec.Template.Spec, "sentinel")
	if len(sentinel.Ports) != 1 || s.Spec.Replicas == nil {
		t.Fatalf("StatefulSet redis: want replicas and one sentinel port")
	}
	var want []string
	for i := range *s.Spec.Replicas {
		want = append(want, fmt.Sprintf("redis-%d.%s:%d", i, s.Spec.ServiceName, sentinel.Ports[0].ContainerPort))
	}
	if !slices.Equal(fo.SentinelAddrs, want) {
		t.Errorf("POSTBUD_REDIS_URL: sentinels %v, want the StatefulSet's %v", fo.SentinelAddrs, want)
	}
	// Redis has replicas: a 202 waits for one (a failover keeps what was
	// acknowledged), and not for all, so one replica may be down.
	if n := int(*s.Spec.Replicas) - 1; cfg.AckReplicas < 1 || cfg.AckReplicas >= n && n > 1 {
		t.Errorf("POSTBUD_ACK_REPLICAS is %d: with %d Redis replicas want 1..%d (a 202 on a replica, one replica may be down)",
			cfg.AckReplicas, n, max(1, n-1))
	}
	var cm configMap
	kube(t, "ConfigMap", "redis-config", &cm)
	if !strings.Contains(cm.Data["init.sh"], "sentinel monitor "+fo.SentinelMaster+" ") {
		t.Errorf("ConfigMap redis-config: init.sh does not make the sentinels monitor %q, the master of POSTBUD_REDIS_URL", fo.SentinelMaster)
	}
	for _, v := range s.Spec.Template.Spec.Volumes {
		if v.Secret != nil && redisSecret != v.Secret.SecretName+"/password" {
			t.Errorf("POSTBUD_REDIS_PASSWORD_FILE comes from %q, want the key password of the Secret %s the Redis pods use", redisSecret, v.Secret.SecretName)
		}
	}
}

// TestKubernetesRedis checks the Redis StatefulSet: its configuration is
// deploy/redis.conf, and its memory limit leaves room for maxmemory and
// the copy-on-write of an AOF rewrite's fork.
func TestKubernetesRedis(t *testing.T) {
	var cm configMap
	kube(t, "ConfigMap", "redis-config", &cm)
	conf, err := os.ReadFile("redis.conf")
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["redis.conf"] != string(conf) {
		t.Errorf("ConfigMap redis-config: redis.conf differs from deploy/redis.conf; copy it over (indented four spaces)")
	}
	var s workload
	kube(t, "StatefulSet", "redis", &s)
	r := podContainer(t, s.Spec.Template.Spec, "redis")
	maxmemory := size(t, redisConf(t)["maxmemory"], redisUnits)
	if limit := size(t, r.Resources.Limits["memory"], kubeUnits); limit*2 < maxmemory*3 {
		t.Errorf("StatefulSet redis: memory limit %s is less than 1.5 × maxmemory %d: an AOF rewrite's fork would be OOM-killed",
			r.Resources.Limits["memory"], maxmemory)
	}
}

// TestKubernetesHardening stands in for kube-linter, which cannot be
// fetched here: every container of both workloads runs as non-root on a
// read-only root filesystem, without privilege escalation or capabilities.
func TestKubernetesHardening(t *testing.T) {
	isTrue := func(b *bool) bool { return b != nil && *b }
	for _, w := range []struct{ kind, name string }{{"Deployment", "postbud"}, {"StatefulSet", "redis"}} {
		var d workload
		kube(t, w.kind, w.name, &d)
		spec := d.Spec.Template.Spec
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			sc := c.SecurityContext
			if sc == nil {
				sc = &securityContext{}
			}
			nonRoot := sc.RunAsNonRoot
			if nonRoot == nil && spec.SecurityContext != nil {
				nonRoot = spec.SecurityContext.RunAsNonRoot
			}
			if !isTrue(nonRoot) || !isTrue(sc.ReadOnlyRootFilesystem) || sc.AllowPrivilegeEscalation == nil ||
				*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("%s %s, container %s: want runAsNonRoot, readOnlyRootFilesystem, allowPrivilegeEscalation false and capabilities drop ALL",
					w.kind, w.name, c.Name)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// redis.conf.

type unit struct {
	suffix string
	mult   int64
}

var (
	// kubeUnits are Kubernetes quantity suffixes, redisUnits Redis's (1k =
	// 1000, 1kb = 1024): longest first.
	kubeUnits  = []unit{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"", 1}}
	redisUnits = []unit{{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"", 1}}
)

// size parses a memory size with the given units.
func size(t *testing.T, s string, units []unit) int64 {
	t.Helper()
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			if v, err := strconv.ParseInt(n, 10, 64); err == nil {
				return v * u.mult
			}
		}
	}
	t.Fatalf("memory size %q not understood", s)
	return 0
}

// redisConf returns deploy/redis.conf's directives, the last value of each.
func redisConf(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("redis.conf")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		out[strings.ToLower(k)] = strings.TrimSpace(v)
	}
	return out
}

// TestRedisConf checks what the code requires of Redis (docs/design.md,
// "Redis"): durability (AOF, fsync every second, the replicas holding
// what was acknowledged), never evicting a key
// (a lost done mark or dedup key sends twice; a lost task never sends), a
// maxmemory so Redis refuses writes instead of being OOM-killed, task
// hashes compact enough to stay listpacks, and no password in the file.
func TestRedisConf(t *testing.T) {
	conf := redisConf(t)
	for k, want := range map[string]string{
		"appendonly":              "yes",
		"appendfsync":             "everysec",
		"maxmemory-policy":        "noeviction",
		"hash-max-listpack-value": "1024",
	} {
		if conf[k] != want {
			t.Errorf("redis.conf: %s is %q, want %q", k, conf[k], want)
		}
	}
	if size(t, strings.ToLower(conf["maxmemory"]), redisUnits) <= 0 {
		t.Errorf("redis.conf: maxmemory must be set: without it Redis grows until the OOM killer ends it")
	}
	if _, ok := conf["requirepass"]; ok {
		t.Errorf("redis.conf: holds a password; it is added at start-up from a secret")
	}
}

// ---------------------------------------------------------------------------
// compose.yaml.

type composeService struct {
	Command     yaml.Node   `yaml:"command"`
	Environment yaml.Node   `yaml:"environment"`
	Secrets     []yaml.Node `yaml:"secrets"`
	Ports       []yaml.Node `yaml:"ports"`
	Volumes     []string    `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

// TestCompose checks compose.yaml: postbud's environment loads, every
// secret file is a compose secret of the service, Redis runs deploy/
// redis.conf with postbud's password and answers at POSTBUD_REDIS_URL,
// the published port is the listen port, and there is time to shut down.
func TestCompose(t *testing.T) {
	docs := yamlDocs(t, "compose.yaml")
	var f struct {
		Services map[string]composeService `yaml:"services"`
	}
	if len(docs) != 1 {
		t.Fatalf("compose.yaml: want one document, got %d", len(docs))
	}
	if err := docs[0].Decode(&f); err != nil {
		t.Fatal(err)
	}
	redis, pb := f.Services["redis"], f.Services["postbud"]

	// The environment, loaded by the code; the secrets, /run/secrets/NAME.
	secrets := map[string]bool{}
	for _, n := range pb.Secrets {
		secrets[n.Value] = true
	}
	env := map[string]string{}
	if err := pb.Environment.Decode(&env); err != nil {
		t.Fatalf("compose.yaml: postbud's environment must be a map: %v", err)
	}
	cfg := load(t, "compose.yaml postbud", env, func(_, path string) (string, error) {
		if s, ok := strings.CutPrefix(path, "/run/secrets/"); !ok || !secrets[s] {
			return "", errors.New("not /run/secrets/NAME of a secret of the service")
		}
		return path, nil
	})

	// Redis: deploy/redis.conf, postbud's password, the address.
	var cmd []string
	if err := redis.Command.Decode(&cmd); err != nil {
		t.Fatalf("compose.yaml: redis command: %v", err)
	}
	script := strings.Join(cmd, " ")
	if !slices.ContainsFunc(redis.Volumes, func(v string) bool {
		src, dst, _ := strings.Cut(v, ":")
		dst, _, _ = strings.Cut(dst, ":")
		return src == "./redis.conf" && strings.Contains(script, "include "+dst)
	}) {
		t.Errorf("compose.yaml: redis must mount ./redis.conf and include it")
	}
	if p := env["POSTBUD_REDIS_PASSWORD_FILE"]; p == "" || !strings.Contains(script, p) {
		t.Errorf("compose.yaml: redis does not take its password from %q, postbud's POSTBUD_REDIS_PASSWORD_FILE", p)
	}
	// One Redis, no replica: nothing to WAIT for (every 202 would be a
	// 503), so the AOF must fsync each write for a 202 to survive a crash.
	if cfg.AckReplicas != 0 {
		t.Errorf("compose.yaml: POSTBUD_ACK_REPLICAS is %d, but its one Redis has no replica", cfg.AckReplicas)
	}
	if !strings.Contains(script, `\nappendfsync always\n`) {
		t.Errorf("compose.yaml: the single Redis must add appendfsync always to its config (no replica holds the last second)")
	}
	if o := cfg.Redis; o.Sentinel() || o.Addr != "redis:6379" {
		t.Errorf("compose.yaml: POSTBUD_REDIS_URL %s does not name the service redis on 6379", cfg.RedisURL)
	}
	if pb.DependsOn["redis"].Condition != "service_healthy" {
		t.Errorf("compose.yaml: postbud must wait for redis with condition service_healthy")
	}

	// The port.
	port := strconv.Itoa(portOf(t, cfg.HTTPAddr))
	for _, n := range pb.Ports {
		parts := strings.Split(n.Value, ":")
		if target, _, _ := strings.Cut(parts[len(parts)-1], "/"); target != port {
			t.Errorf("compose.yaml: postbud publishes container port %q, want the listen port %s", n.Value, port)
		}
	}

	// Shutdown.
	grace, err := time.ParseDuration(pb.StopGracePeriod)
	if need := shutdownNeed(t, cfg); err != nil || grace <= need {
		t.Errorf("compose.yaml: postbud stop_grace_period %q must exceed HTTP drain %v + POSTBUD_SHUTDOWN_TIMEOUT %v", pb.StopGracePeriod, httpDrain, cfg.ShutdownTimeout)
	}
}

// ---------------------------------------------------------------------------
// Dockerfile.

// TestDockerfile checks the image against the code: the build stage's Go
// is go.mod's, it builds ./cmd/postbud, EXPOSE is the default listen port,
// and it runs `/postbud serve`.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := strings.ReplaceAll(string(b), "\\\n", " ")
	instr := map[string][]string{}
	for _, line := range strings.Split(df, "\n") {
		line = strings.TrimSpace(line)
		if cmd, args, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			instr[strings.ToUpper(cmd)] = append(instr[strings.ToUpper(cmd)], strings.TrimSpace(args))
		}
	}

	// Go: ARG GO_VERSION=1.26 must be go.mod's major.minor.
	mod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var goLine string
	for _, l := range strings.Split(string(mod), "\n") {
		if v, ok := strings.CutPrefix(l, "go "); ok {
			goLine = strings.TrimSpace(v)
		}
	}
	goMinor := strings.Join(strings.SplitN(goLine, ".", 3)[:2], ".")
	if !slices.Contains(instr["ARG"], "GO_VERSION="+goMinor) || !slices.ContainsFunc(instr["FROM"], func(s string) bool {
		return strings.HasPrefix(s, "golang:${GO_VERSION}")
	}) {
		t.Errorf("Dockerfile: want ARG GO_VERSION=%s and FROM golang:${GO_VERSION}: go.mod says go %s", goMinor, goLine)
	}
	if !slices.ContainsFunc(instr["RUN"], func(s string) bool { return strings.Contains(s, "go build") && strings.Contains(s, "./cmd/postbud") }) {
		t.Errorf("Dockerfile: no RUN go build ... ./cmd/postbud")
	}

	port := strconv.Itoa(portOf(t, defaults(t).HTTPAddr))
	for k, want := range map[string]string{"EXPOSE": port, "ENTRYPOINT": `["/postbud"]`, "CMD": `["serve"]`} {
		if got := instr[k]; len(got) != 1 || got[0] != want {
			t.Errorf("Dockerfile: %s %q, want %s", k, got, want)
		}
	}
}

// ---------------------------------------------------------------------------
// systemd.

// TestSystemd checks the unit: its environment file (systemd/postbud.env,
// installed as EnvironmentFile) and Environment= lines load, every secret
// is a credential (%d/NAME with LoadCredential=NAME:...), and
// TimeoutStopSec covers the shutdown. `systemd-analyze verify` and
// `systemd-analyze security` in .ci/run check the rest of the unit.
func TestSystemd(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("systemd", "postbud.service"))
	if err != nil {
		t.Fatal(err)
	}
	svc := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			svc[k] = append(svc[k], v)
		}
	}
	if !slices.Equal(svc["EnvironmentFile"], []string{"/etc/postbud/postbud.env"}) {
		t.Errorf("postbud.service: EnvironmentFile=%q, want /etc/postbud/postbud.env (systemd/postbud.env installed)", svc["EnvironmentFile"])
	}
	creds := map[string]bool{}
	for _, lc := range svc["LoadCredential"] {
		name, _, _ := strings.Cut(lc, ":")
		creds[name] = true
	}

	env := map[string]string{}
	envFile, err := os.ReadFile(filepath.Join("systemd", "postbud.env"))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(envFile), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("postbud.env:%d: not KEY=VALUE", i+1)
		}
		if strings.HasSuffix(k, "_FILE") {
			t.Errorf("postbud.env:%d: %s: secrets are credentials of the unit (LoadCredential= and %s=%%d/NAME)", i+1, k, k)
		}
		env[k] = strings.Trim(v, `"'`)
	}
	for _, e := range svc["Environment"] {
		for _, kv := range strings.Fields(e) {
			k, v, _ := strings.Cut(strings.Trim(kv, `"`), "=")
			env[k] = v
		}
	}
	cfg := load(t, "systemd/postbud.service", env, func(_, path string) (string, error) {
		c, ok := strings.CutPrefix(path, "%d/")
		if !ok || !creds[c] {
			return "", errors.New("want %d/NAME with a LoadCredential=NAME:... of the unit")
		}
		return filepath.Join("credentials", c), nil
	})

	stop := strings.Join(svc["TimeoutStopSec"], "")
	d, err := time.ParseDuration(stop)
	if need := shutdownNeed(t, cfg); err != nil || d <= need {
		t.Errorf("postbud.service: TimeoutStopSec=%s must exceed HTTP drain %v + POSTBUD_SHUTDOWN_TIMEOUT %v", stop, httpDrain, cfg.ShutdownTimeout)
	}
}
