package deploy

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
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/digitalpost/postbud/channels/webhook"
	"github.com/digitalpost/postbud/config"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// httpDrain is how long `postbud serve` gives HTTP requests in flight after
// SIGTERM before it stops the workers (the hs.Shutdown timeout in
// cmd/postbud/serve.go); POSTBUD_SHUTDOWN_TIMEOUT comes on top of it.
const httpDrain = 10 * time.Second

// ---------------------------------------------------------------------------
// The code's side: the variables config knows, its defaults, and loading a
// manifest's environment with config.Load.

// knownVars returns every POSTBUD_* name the config package knows, found
// the way a reader would grep for them: the "POSTBUD_..." string literals
// of config/*.go (tests excluded). A literal ending in "_" is a prefix the
// code completes with a platform or app suffix (config.EnvSuffix of
// event.Platforms and event.Apps), e.g. "POSTBUD_KEY_" + "CORE". Every name may also come as
// NAME_FILE here; whether Load reads that form is checked by load, which
// records what Load asks for.
func knownVars(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "config", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in ../config: %v", err)
	}
	name := regexp.MustCompile(`^POSTBUD_[A-Z0-9_]+$`)
	var suffixes []string
	for _, p := range event.Platforms() {
		suffixes = append(suffixes, config.EnvSuffix(string(p)))
	}
	for _, a := range event.Apps() {
		suffixes = append(suffixes, config.EnvSuffix(a))
	}
	known := map[string]bool{}
	add := func(n string) { known[n], known[n+"_FILE"] = true, true }
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil || !name.MatchString(s) {
				return true
			}
			if strings.HasSuffix(s, "_") {
				for _, suf := range suffixes {
					add(s + suf)
				}
			} else {
				add(s)
			}
			return true
		})
	}
	return known
}

// TestKnownVars guards the scan above: if it found nothing, or missed the
// composed names, every other check of names would pass vacuously.
func TestKnownVars(t *testing.T) {
	known := knownVars(t)
	for _, n := range []string{"POSTBUD_REDIS_URL", "POSTBUD_HTTP_ADDR", "POSTBUD_SHUTDOWN_TIMEOUT",
		"POSTBUD_PSEUDONYM_KEY_FILE", "POSTBUD_KEY_CORE_FILE", "POSTBUD_KEY_MIT_DK", "POSTBUD_APNS_TOPIC_E_BOKS",
		"POSTBUD_FCM_CREDENTIALS_E_BOKS_FILE", "POSTBUD_WEBHOOK_SECRET_BORGER_DK_FILE"} {
		if !known[n] {
			t.Errorf("the scan of config/*.go did not find %s", n)
		}
	}
	for _, n := range []string{"POSTBUD_KEY_", "POSTBUD_NOPE", "POSTBUD_URL"} {
		if known[n] {
			t.Errorf("the scan of config/*.go takes %s for a variable", n)
		}
	}
}

// minimalEnv is the least environment config.Load accepts: the defaults
// are what it returns for everything else.
func minimalEnv() map[string]string {
	return map[string]string{
		"POSTBUD_PSEUDONYM_KEY": strings.Repeat("p", 32),
		"POSTBUD_OPS_KEY":       strings.Repeat("o", 16),
		"POSTBUD_KEY_CORE":      strings.Repeat("c", 16),
	}
}

// defaults returns config.Load's defaults.
func defaults(t *testing.T) *config.Config {
	t.Helper()
	env := minimalEnv()
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

// testSecret returns a file's content the code accepts for the secret
// variable name (NAME_FILE).
func testSecret(t *testing.T, name string) []byte {
	t.Helper()
	random := func(n int) []byte {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	pkcs8 := func() []byte {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	switch {
	case strings.HasPrefix(name, "POSTBUD_WEBHOOK_SECRET_"), strings.HasPrefix(name, "POSTBUD_INBOUND_SECRET_"):
		return []byte(webhook.FormatSecret(random(32)) + "\n")
	case name == "POSTBUD_APNS_KEY_FILE":
		return pkcs8()
	case strings.HasPrefix(name, "POSTBUD_FCM_CREDENTIALS_"):
		b, err := json.Marshal(map[string]string{"type": "service_account", "project_id": "test",
			"private_key_id": "1", "private_key": string(pkcs8()), "client_email": "postbud@test.iam.gserviceaccount.com",
			"token_uri": "https://oauth2.googleapis.com/token"})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return []byte(hex.EncodeToString(random(32)) + "\n")
}

// loaded is the result of loading one deployment's environment.
type loaded struct {
	cfg *config.Config
	// asked holds every variable config.Load looked up.
	asked map[string]bool
}

// load checks a deployment's POSTBUD_* environment against the code and
// loads it with config.Load. Each *_FILE value is a path in the
// deployment; secretPath maps it to where the test writes a test secret of
// the right shape (or fails the test when the deployment does not provide
// that path). It checks that every name is one config knows and one Load
// reads with this environment (so it has an effect), that no secret is set
// in the environment itself, and that Load accepts it all.
func load(t *testing.T, what string, env map[string]string, secretPath func(name, value string) (string, error)) loaded {
	t.Helper()
	known := knownVars(t)
	dir := t.TempDir()
	getenv := map[string]string{}
	for _, k := range sortedKeys(env) {
		v := env[k]
		if !strings.HasPrefix(k, "POSTBUD_") {
			continue
		}
		if !known[k] {
			t.Errorf("%s: %s is not a variable of the config package", what, k)
			continue
		}
		if strings.HasSuffix(k, "_FILE") {
			if !filepath.IsAbs(v) && !strings.HasPrefix(v, "%d/") {
				t.Errorf("%s: %s=%q is not an absolute path", what, k, v)
			}
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
	for _, k := range sortedKeys(getenv) {
		if !asked[k] {
			t.Errorf("%s: %s is set but config.Load does not read it with this environment (no effect)", what, k)
		}
		if asked[k+"_FILE"] {
			t.Errorf("%s: %s is a secret: set %s_FILE to a file instead", what, k, k)
		}
	}
	return loaded{cfg: c, asked: asked}
}

// TestDeployFilesNameOnlyKnownVars scans the text of every deployment file
// (comments and the README too) for POSTBUD_* names, so a typo or a
// removed variable in a comment is caught as well. A name ending in "_"
// (POSTBUD_KEY_<PLATFORM>, POSTBUD_*_FILE) is a pattern, not a name.
func TestDeployFilesNameOnlyKnownVars(t *testing.T) {
	known := knownVars(t)
	re := regexp.MustCompile(`POSTBUD_[A-Z0-9_]*`)
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, n := range re.FindAllString(line, -1) {
				if !strings.HasSuffix(n, "_") && !known[n] {
					t.Errorf("%s:%d: %s is not a variable of the config package", path, i+1, n)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ---------------------------------------------------------------------------
// Kubernetes.

type meta struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels"`
}

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
	Exec *struct {
		Command []string `yaml:"command"`
	} `yaml:"exec"`
}

type securityContext struct {
	RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	RunAsUser                *int  `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	Capabilities             *struct {
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
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
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
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

type volume struct {
	Name   string `yaml:"name"`
	Secret *struct {
		SecretName string    `yaml:"secretName"`
		Items      []keyPath `yaml:"items"`
	} `yaml:"secret"`
	Projected *struct {
		Sources []struct {
			Secret *struct {
				Name  string    `yaml:"name"`
				Items []keyPath `yaml:"items"`
			} `yaml:"secret"`
			Other map[string]yaml.Node `yaml:",inline"`
		} `yaml:"sources"`
	} `yaml:"projected"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int             `yaml:"terminationGracePeriodSeconds"`
	EnableServiceLinks            *bool            `yaml:"enableServiceLinks"`
	AutomountServiceAccountToken  *bool            `yaml:"automountServiceAccountToken"`
	SecurityContext               *securityContext `yaml:"securityContext"`
	InitContainers                []container      `yaml:"initContainers"`
	Containers                    []container      `yaml:"containers"`
	Volumes                       []volume         `yaml:"volumes"`
}

type workload struct {
	Spec struct {
		Replicas    *int   `yaml:"replicas"`
		ServiceName string `yaml:"serviceName"`
		Selector    struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata meta    `yaml:"metadata"`
			Spec     podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type service struct {
	Spec struct {
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Name       string      `yaml:"name"`
			Port       int         `yaml:"port"`
			TargetPort intOrString `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type pdb struct {
	Spec struct {
		MinAvailable   *intOrString `yaml:"minAvailable"`
		MaxUnavailable *intOrString `yaml:"maxUnavailable"`
		Selector       struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
	} `yaml:"spec"`
}

// object is one Kubernetes manifest document.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
	file       string
	node       *yaml.Node
}

func (o object) String() string { return fmt.Sprintf("%s %s/%s", o.file, o.Kind, o.Metadata.Name) }

// decode decodes the whole document into v.
func (o object) decode(t *testing.T, v any) {
	t.Helper()
	if err := o.node.Decode(v); err != nil {
		t.Fatalf("%s: %v", o, err)
	}
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
		if len(n.Content) > 0 && !(n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null") {
			docs = append(docs, &n)
		}
	}
}

// kubeObjects returns every object of deploy/kubernetes/*.yaml but the
// kustomization.
func kubeObjects(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in kubernetes/: %v", err)
	}
	var out []object
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		for _, n := range yamlDocs(t, f) {
			o := object{file: f, node: n}
			o.decode(t, &o)
			out = append(out, o)
		}
	}
	return out
}

func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	t.Fatalf("no %s %q in kubernetes/", kind, name)
	return object{}
}

// TestYAMLParses decodes every YAML file of deploy/, every document.
func TestYAMLParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext == ".yaml" || ext == ".yml" {
			for _, doc := range yamlDocs(t, path) {
				var v any
				if err := doc.Decode(&v); err != nil {
					t.Errorf("%s: %v", path, err)
				}
				n++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no YAML documents found")
	}
}

// TestKubernetesObjects checks what every manifest must have: an API
// version, a kind and a name, no namespace (the manifests are applied into
// any), and a place in the kustomization.
func TestKubernetesObjects(t *testing.T) {
	objs := kubeObjects(t)
	files := map[string]bool{}
	for _, o := range objs {
		files[filepath.Base(o.file)] = true
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Errorf("%s: needs apiVersion, kind and metadata.name", o)
		}
		if o.Metadata.Namespace != "" {
			t.Errorf("%s: names the namespace %q; the manifests must be namespace-agnostic", o, o.Metadata.Namespace)
		}
	}
	var k struct {
		Resources []string `yaml:"resources"`
	}
	docs := yamlDocs(t, filepath.Join("kubernetes", "kustomization.yaml"))
	if len(docs) != 1 {
		t.Fatalf("kustomization.yaml: want one document, got %d", len(docs))
	}
	if err := docs[0].Decode(&k); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		listed[r] = true
		if !files[r] {
			t.Errorf("kustomization.yaml lists %s, which is not a manifest in kubernetes/", r)
		}
	}
	for f := range files {
		if !listed[f] {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
	}
}

// kubeEnv returns a container's environment: its envFrom ConfigMaps, then
// its env (which wins, as in Kubernetes). POSTBUD_* values must be literal:
// secrets come as files, not from secretKeyRef.
func kubeEnv(t *testing.T, objs []object, c container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.SecretRef != nil {
			t.Errorf("container %s: envFrom secretRef puts secrets into the environment; mount them as files", c.Name)
		}
		if ef.ConfigMapRef == nil {
			continue
		}
		var cm struct {
			Data map[string]string `yaml:"data"`
		}
		find(t, objs, "ConfigMap", ef.ConfigMapRef.Name).decode(t, &cm)
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && strings.HasPrefix(e.Name, "POSTBUD_") {
			t.Errorf("container %s: %s uses valueFrom; POSTBUD_* values are literal and secrets are files (%s_FILE)", c.Name, e.Name, strings.TrimSuffix(e.Name, "_FILE"))
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

func subset(sub, of map[string]string) bool {
	if len(sub) == 0 {
		return false
	}
	for k, v := range sub {
		if of[k] != v {
			return false
		}
	}
	return true
}

// secretFile resolves a path against a container's mounts: it must lie in
// a volume of secrets (a secret, or a projection of secrets only), and
// where that volume names its files (items), be one of them. It returns
// the secret and key the file comes from ("" when the volume does not
// name its files).
func secretFile(spec podSpec, c container, path string) (secretName, key string, err error) {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		if !m.ReadOnly {
			return "", "", fmt.Errorf("the mount %s of secrets is not readOnly", m.MountPath)
		}
		i := slices.IndexFunc(spec.Volumes, func(v volume) bool { return v.Name == m.Name })
		if i < 0 {
			return "", "", fmt.Errorf("the mount %s names no volume of the pod", m.MountPath)
		}
		v := spec.Volumes[i]
		type source struct {
			name  string
			items []keyPath
		}
		var sources []source
		switch {
		case v.Secret != nil:
			sources = append(sources, source{v.Secret.SecretName, v.Secret.Items})
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.Secret == nil || len(s.Other) > 0 {
					return "", "", fmt.Errorf("the volume %s projects more than secrets", v.Name)
				}
				sources = append(sources, source{s.Secret.Name, s.Secret.Items})
			}
		default:
			return "", "", fmt.Errorf("%s is not in a volume of secrets (volume %s)", path, v.Name)
		}
		open := false
		for _, s := range sources {
			if len(s.items) == 0 {
				open = true
			}
			for _, it := range s.items {
				if it.Path == rel {
					return s.name, it.Key, nil
				}
			}
		}
		if !open {
			return "", "", fmt.Errorf("no secret of the volume %s has the file %s", v.Name, rel)
		}
		return "", "", nil
	}
	return "", "", errors.New("not under the mountPath of a secret volume of the container")
}

func podContainer(t *testing.T, o object, spec podSpec, name string) container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("%s: no container %q", o, name)
	return container{}
}

// TestKubernetesPostbud checks the Deployment against the code: its
// environment loads, its port is the default listen port, the probes ask
// /readyz and /healthz on it, the grace period covers the shutdown, the
// secrets are read-only files, and the Service and PDB select its pods.
func TestKubernetesPostbud(t *testing.T) {
	def := defaults(t)
	objs := kubeObjects(t)
	dep := find(t, objs, "Deployment", "postbud")
	var d workload
	dep.decode(t, &d)
	spec := d.Spec.Template.Spec
	c := podContainer(t, dep, spec, "postbud")
	podLabels := d.Spec.Template.Metadata.Labels

	if d.Spec.Replicas == nil || *d.Spec.Replicas < 3 {
		t.Errorf("%s: want at least 3 replicas", dep)
	}
	if !subset(d.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("%s: the selector does not match the pod labels", dep)
	}
	if len(c.Command) != 0 || !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("%s: want the image's entrypoint with args [serve], got command %q args %q", dep, c.Command, c.Args)
	}

	// The environment, loaded by the code.
	env := kubeEnv(t, objs, c)
	var redisSecret string
	l := load(t, dep.String(), env, func(name, path string) (string, error) {
		s, key, err := secretFile(spec, c, path)
		if name == "POSTBUD_REDIS_PASSWORD_FILE" {
			redisSecret = s + "/" + key
		}
		return path, err
	})
	cfg := l.cfg

	// The port.
	port := portOf(t, def.HTTPAddr)
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != port {
		t.Errorf("%s: want one container port, %d (the default POSTBUD_HTTP_ADDR %s), got %+v", dep, port, def.HTTPAddr, c.Ports)
	}
	if p := portOf(t, cfg.HTTPAddr); p != port {
		t.Errorf("%s: POSTBUD_HTTP_ADDR %s listens on %d, the container port is %d", dep, cfg.HTTPAddr, p, port)
	}

	// The probes.
	for _, p := range []struct {
		name  string
		probe *probe
		paths []string
	}{
		{"readinessProbe", c.ReadinessProbe, []string{"/readyz"}},
		{"livenessProbe", c.LivenessProbe, []string{"/healthz"}},
		{"startupProbe", c.StartupProbe, []string{"/healthz", "/readyz"}},
	} {
		if p.probe == nil {
			if p.name != "startupProbe" {
				t.Errorf("%s: no %s", dep, p.name)
			}
			continue
		}
		if p.probe.HTTPGet == nil {
			t.Errorf("%s: %s must be an httpGet (the image has no shell)", dep, p.name)
			continue
		}
		if !slices.Contains(p.paths, p.probe.HTTPGet.Path) {
			t.Errorf("%s: %s asks %s, want %s", dep, p.name, p.probe.HTTPGet.Path, strings.Join(p.paths, " or "))
		}
		if got, ok := containerPort(c, p.probe.HTTPGet.Port); !ok || got != port {
			t.Errorf("%s: %s port %q is not the container port %d", dep, p.name, p.probe.HTTPGet.Port, port)
		}
	}

	// Shutdown: preStop, then HTTP drain and the tasks' shutdown timeout,
	// all within the grace period.
	var preStop time.Duration
	if lc := c.Lifecycle; lc != nil && lc.PreStop != nil {
		if lc.PreStop.Exec != nil {
			t.Errorf("%s: a preStop exec needs a shell or a sleep binary, which the distroless image lacks; use the sleep action", dep)
		}
		if lc.PreStop.Sleep != nil {
			preStop = time.Duration(lc.PreStop.Sleep.Seconds) * time.Second
		}
	}
	need := preStop + httpDrain + max(cfg.ShutdownTimeout, def.ShutdownTimeout)
	if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= need {
		t.Errorf("%s: terminationGracePeriodSeconds must exceed preStop %v + HTTP drain %v + POSTBUD_SHUTDOWN_TIMEOUT %v = %v",
			dep, preStop, httpDrain, cfg.ShutdownTimeout, need)
	}

	// Hardening.
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Errorf("%s: enableServiceLinks must be false: the Service postbud would inject POSTBUD_SERVICE_HOST and the like", dep)
	}
	checkHardened(t, dep, spec, c)
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("%s: want cpu and memory requests and a memory limit", dep)
	}

	// Service and PDB.
	var svc service
	find(t, objs, "Service", "postbud").decode(t, &svc)
	if !subset(svc.Spec.Selector, podLabels) {
		t.Errorf("Service postbud: the selector %v does not select the pods %v", svc.Spec.Selector, podLabels)
	}
	for _, p := range svc.Spec.Ports {
		if got, ok := containerPort(c, p.TargetPort); !ok || got != port {
			t.Errorf("Service postbud: targetPort %q is not the container port %d", p.TargetPort, port)
		}
	}
	checkPDB(t, find(t, objs, "PodDisruptionBudget", "postbud"), podLabels, *d.Spec.Replicas)

	// Redis behind Sentinel, as the StatefulSet "redis" runs it.
	checkSentinelURL(t, objs, cfg, redisSecret)
}

func checkHardened(t *testing.T, o object, spec podSpec, c container) {
	t.Helper()
	psc, sc := spec.SecurityContext, c.SecurityContext
	if sc == nil {
		t.Errorf("%s: container %s has no securityContext", o, c.Name)
		return
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil && psc != nil {
		nonRoot = psc.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		t.Errorf("%s: container %s: want runAsNonRoot", o, c.Name)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: container %s: want readOnlyRootFilesystem", o, c.Name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: container %s: want allowPrivilegeEscalation false", o, c.Name)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: container %s: want capabilities drop ALL", o, c.Name)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: want automountServiceAccountToken false: it does not talk to the API server", o)
	}
}

func checkPDB(t *testing.T, o object, podLabels map[string]string, replicas int) {
	t.Helper()
	var p pdb
	o.decode(t, &p)
	if !subset(p.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("%s: the selector does not select the pods", o)
	}
	switch {
	case p.Spec.MaxUnavailable != nil:
		if n, err := strconv.Atoi(string(*p.Spec.MaxUnavailable)); err != nil || n < 1 || n >= replicas {
			t.Errorf("%s: maxUnavailable %q: want a number from 1 to %d", o, *p.Spec.MaxUnavailable, replicas-1)
		}
	case p.Spec.MinAvailable != nil:
		if n, err := strconv.Atoi(string(*p.Spec.MinAvailable)); err != nil || n < 1 || n >= replicas {
			t.Errorf("%s: minAvailable %q: want a number from 1 to %d, or no drain could proceed", o, *p.Spec.MinAvailable, replicas-1)
		}
	default:
		t.Errorf("%s: needs maxUnavailable or minAvailable", o)
	}
}

// checkSentinelURL checks postbud's POSTBUD_REDIS_URL against the Redis
// StatefulSet: every sentinel of it, by its stable name, on the sentinel
// port, the master set name the sentinels monitor, and the password from
// the Secret the Redis pods use.
func checkSentinelURL(t *testing.T, objs []object, cfg *config.Config, redisSecret string) {
	t.Helper()
	fo := cfg.Redis
	if !fo.Sentinel() {
		t.Errorf("POSTBUD_REDIS_URL %s: want redis-sentinel://...?master=mymaster (Redis with Sentinel), got a single server", cfg.RedisURL)
		return
	}
	sts := find(t, objs, "StatefulSet", "redis")
	var s workload
	sts.decode(t, &s)
	spec := s.Spec.Template.Spec
	sentinel := podContainer(t, sts, spec, "sentinel")
	if len(sentinel.Ports) != 1 {
		t.Fatalf("%s: the sentinel container needs one port", sts)
	}
	var want []string
	for i := range *s.Spec.Replicas {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", sts.Metadata.Name, i, s.Spec.ServiceName, sentinel.Ports[0].ContainerPort))
	}
	if !slices.Equal(fo.SentinelAddrs, want) {
		t.Errorf("POSTBUD_REDIS_URL: sentinels %v, want the StatefulSet's %v", fo.SentinelAddrs, want)
	}
	var hs service
	find(t, objs, "Service", s.Spec.ServiceName).decode(t, &hs)
	if hs.Spec.ClusterIP != "None" || !hs.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: want a headless Service (clusterIP None) that publishes not-ready pods", s.Spec.ServiceName)
	}
	if !subset(hs.Spec.Selector, s.Spec.Template.Metadata.Labels) {
		t.Errorf("Service %s does not select the Redis pods", s.Spec.ServiceName)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	find(t, objs, "ConfigMap", "redis-config").decode(t, &cm)
	if !strings.Contains(cm.Data["init.sh"], "sentinel monitor "+fo.SentinelMaster+" ") {
		t.Errorf("ConfigMap redis-config: init.sh does not configure the sentinels to monitor %q, the master of POSTBUD_REDIS_URL", fo.SentinelMaster)
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil && redisSecret != v.Secret.SecretName+"/password" {
			t.Errorf("POSTBUD_REDIS_PASSWORD_FILE comes from %q, want the key password of the Secret %s the Redis pods use", redisSecret, v.Secret.SecretName)
		}
	}
}

// TestKubernetesRedis checks the Redis StatefulSet: the configuration is
// deploy/redis.conf, memory has room for maxmemory and a fork, and the
// containers are hardened.
func TestKubernetesRedis(t *testing.T) {
	objs := kubeObjects(t)
	sts := find(t, objs, "StatefulSet", "redis")
	var s workload
	sts.decode(t, &s)
	if s.Spec.Replicas == nil || *s.Spec.Replicas != 3 {
		t.Errorf("%s: want 3 replicas (a Sentinel quorum of 2)", sts)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	find(t, objs, "ConfigMap", "redis-config").decode(t, &cm)
	conf, err := os.ReadFile("redis.conf")
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["redis.conf"] != string(conf) {
		t.Errorf("ConfigMap redis-config: redis.conf differs from deploy/redis.conf; copy it over (indented four spaces)")
	}
	maxmemory := redisBytes(t, redisConf(t)["maxmemory"])
	spec := s.Spec.Template.Spec
	r := podContainer(t, sts, spec, "redis")
	limit := quantity(t, r.Resources.Limits["memory"])
	if limit*2 < maxmemory*3 {
		t.Errorf("%s: memory limit %s is less than 1.5 x maxmemory %d: an AOF rewrite's fork would be OOM-killed", sts, r.Resources.Limits["memory"], maxmemory)
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		checkHardened(t, sts, spec, c)
	}
	checkPDB(t, find(t, objs, "PodDisruptionBudget", "redis"), s.Spec.Template.Metadata.Labels, *s.Spec.Replicas)
}

// quantity parses a Kubernetes memory quantity (binary or decimal suffix).
func quantity(t *testing.T, q string) int64 {
	t.Helper()
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"", 1}} {
		if n, ok := strings.CutSuffix(q, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err == nil {
				return v * u.mult
			}
		}
	}
	t.Fatalf("memory quantity %q: not understood", q)
	return 0
}

// ---------------------------------------------------------------------------
// redis.conf.

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

// redisBytes parses a Redis memory size: 1k = 1000, 1kb = 1024 and so on.
func redisBytes(t *testing.T, s string) int64 {
	t.Helper()
	s = strings.ToLower(s)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			if v, err := strconv.ParseInt(n, 10, 64); err == nil {
				return v * u.mult
			}
		}
	}
	t.Fatalf("redis.conf: memory size %q not understood", s)
	return 0
}

// TestRedisConf checks the settings DESIGN.md §3 asks for: AOF, fsync
// every second, never evict; a maxmemory to size, and compact asynq task
// hashes.
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
	if redisBytes(t, conf["maxmemory"]) <= 0 {
		t.Errorf("redis.conf: maxmemory must be set: without it Redis grows until the OOM killer ends it")
	}
	if _, ok := conf["requirepass"]; ok {
		t.Errorf("redis.conf: holds a password; it is added at start-up from a secret")
	}
}

// ---------------------------------------------------------------------------
// compose.yaml.

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command     yaml.Node   `yaml:"command"`
	Environment yaml.Node   `yaml:"environment"`
	Secrets     []yaml.Node `yaml:"secrets"`
	Ports       []yaml.Node `yaml:"ports"`
	Volumes     []string    `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test    []string `yaml:"test"`
		Disable bool     `yaml:"disable"`
	} `yaml:"healthcheck"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

// stringsOf reads a compose string-or-list (command).
func stringsOf(t *testing.T, n yaml.Node) []string {
	t.Helper()
	switch n.Kind {
	case 0:
		return nil
	case yaml.ScalarNode:
		return strings.Fields(n.Value)
	}
	var out []string
	if err := n.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// composeEnv reads a compose environment, in map or list form.
func composeEnv(t *testing.T, n yaml.Node) map[string]string {
	t.Helper()
	env := map[string]string{}
	switch n.Kind {
	case yaml.MappingNode:
		if err := n.Decode(&env); err != nil {
			t.Fatal(err)
		}
	case yaml.SequenceNode:
		var list []string
		if err := n.Decode(&list); err != nil {
			t.Fatal(err)
		}
		for _, kv := range list {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Errorf("compose.yaml: environment %q has no value", kv)
			}
			env[k] = v
		}
	}
	return env
}

// TestCompose checks compose.yaml: Redis with deploy/redis.conf and a
// healthcheck postbud waits for; postbud from deploy/Dockerfile running
// serve, its environment loaded by the code with every secret a compose
// secret, its port the default one, and time to shut down.
func TestCompose(t *testing.T) {
	def := defaults(t)
	docs := yamlDocs(t, "compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("compose.yaml: want one document, got %d", len(docs))
	}
	var f composeFile
	if err := docs[0].Decode(&f); err != nil {
		t.Fatal(err)
	}
	redis, ok := f.Services["redis"]
	if !ok {
		t.Fatal("compose.yaml: no service redis")
	}
	pb, ok := f.Services["postbud"]
	if !ok {
		t.Fatal("compose.yaml: no service postbud")
	}

	// Redis.
	if !strings.HasPrefix(redis.Image, "redis:7") {
		t.Errorf("compose.yaml: redis image %q, want redis:7", redis.Image)
	}
	redisCmd := strings.Join(stringsOf(t, redis.Command), " ")
	confMounted := false
	for _, v := range redis.Volumes {
		parts := strings.Split(v, ":")
		if parts[0] == "./redis.conf" && len(parts) >= 2 {
			confMounted = strings.Contains(redisCmd, parts[1])
		}
	}
	if !confMounted {
		t.Errorf("compose.yaml: redis must mount ./redis.conf and start with it")
	}
	if redis.Healthcheck == nil || redis.Healthcheck.Disable || len(redis.Healthcheck.Test) == 0 {
		t.Errorf("compose.yaml: redis needs a healthcheck for postbud's depends_on")
	}
	if dep, ok := pb.DependsOn["redis"]; !ok || dep.Condition != "service_healthy" {
		t.Errorf("compose.yaml: postbud must depend on redis with condition service_healthy")
	}

	// The image and the command.
	if pb.Build == nil {
		t.Fatal("compose.yaml: postbud must be built from deploy/Dockerfile")
	}
	df := filepath.Join(pb.Build.Context, pb.Build.Dockerfile)
	if filepath.Clean(df) != filepath.Join("..", "deploy", "Dockerfile") {
		t.Errorf("compose.yaml: postbud builds %s (context %s), want ../deploy/Dockerfile with the repository as context", df, pb.Build.Context)
	}
	if cmd := stringsOf(t, pb.Command); !slices.Equal(cmd, []string{"serve"}) {
		t.Errorf("compose.yaml: postbud command %q, want [serve]", cmd)
	}

	// Secrets: each *_FILE is /run/secrets/NAME of a secret the service has
	// and the file defines.
	has := map[string]bool{}
	for _, n := range pb.Secrets {
		name := n.Value
		if n.Kind == yaml.MappingNode {
			var long struct{ Source, Target string }
			if err := n.Decode(&long); err != nil {
				t.Fatal(err)
			}
			name = long.Source
			if long.Target != "" && long.Target != long.Source {
				t.Errorf("compose.yaml: secret %s has a target; mount it as /run/secrets/%s", long.Source, long.Source)
			}
		}
		has[name] = true
		s, ok := f.Secrets[name]
		if !ok {
			t.Errorf("compose.yaml: postbud uses the secret %s, which is not defined", name)
		} else if !strings.HasPrefix(s.File, "./secrets/") {
			t.Errorf("compose.yaml: secret %s is %q; keep secret files in the git-ignored ./secrets/", name, s.File)
		}
	}
	env := composeEnv(t, pb.Environment)
	l := load(t, "compose.yaml postbud", env, func(name, path string) (string, error) {
		s, ok := strings.CutPrefix(path, "/run/secrets/")
		if !ok || !has[s] {
			return "", errors.New("not /run/secrets/NAME of a secret of the service")
		}
		return path, nil
	})
	if !strings.Contains(redisCmd, env["POSTBUD_REDIS_PASSWORD_FILE"]) {
		t.Errorf("compose.yaml: redis does not take its password from %s, postbud's POSTBUD_REDIS_PASSWORD_FILE", env["POSTBUD_REDIS_PASSWORD_FILE"])
	}
	if o := l.cfg.Redis; o.Sentinel() || o.Addr != "redis:6379" {
		t.Errorf("compose.yaml: POSTBUD_REDIS_URL %s does not name the service redis on 6379", l.cfg.RedisURL)
	}

	// The port.
	port := portOf(t, def.HTTPAddr)
	if p := portOf(t, l.cfg.HTTPAddr); p != port {
		t.Errorf("compose.yaml: POSTBUD_HTTP_ADDR %s is not the default port %d", l.cfg.HTTPAddr, port)
	}
	for _, n := range pb.Ports {
		target := ""
		if n.Kind == yaml.MappingNode {
			var long struct {
				Target string `yaml:"target"`
			}
			if err := n.Decode(&long); err != nil {
				t.Fatal(err)
			}
			target = long.Target
		} else {
			parts := strings.Split(n.Value, ":")
			target, _, _ = strings.Cut(parts[len(parts)-1], "/")
		}
		if target != strconv.Itoa(port) {
			t.Errorf("compose.yaml: postbud publishes container port %s, want %d", target, port)
		}
	}

	// Shutdown.
	grace, err := time.ParseDuration(pb.StopGracePeriod)
	if need := httpDrain + max(l.cfg.ShutdownTimeout, def.ShutdownTimeout); err != nil || grace <= need {
		t.Errorf("compose.yaml: postbud stop_grace_period %q must exceed HTTP drain %v + POSTBUD_SHUTDOWN_TIMEOUT %v", pb.StopGracePeriod, httpDrain, l.cfg.ShutdownTimeout)
	}
}

// ---------------------------------------------------------------------------
// Dockerfile.

type instruction struct {
	cmd  string // upper case
	args string
	line int
}

// dockerfile returns the Dockerfile's instructions, continuation lines
// joined and comments dropped.
func dockerfile(t *testing.T) []instruction {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(string(b), "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	return out
}

// goModVersion returns go.mod's go line, e.g. "1.26.8".
func goModVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("go.mod has no go line")
	return ""
}

// versionParts splits "1.26.8" into numbers.
func versionParts(v string) []int {
	var out []int
	for _, p := range strings.Split(v, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil
		}
		out = append(out, n)
	}
	return out
}

// TestDockerfile checks the image: built with the Go of go.mod as a static
// binary of ./cmd/postbud, run as non-root from distroless or scratch,
// exposing the default port, entrypoint /postbud serve.
func TestDockerfile(t *testing.T) {
	def := defaults(t)
	ins := dockerfile(t)
	args := map[string]string{}
	var stages [][]instruction
	for _, in := range ins {
		switch in.cmd {
		case "ARG":
			if k, v, ok := strings.Cut(in.args, "="); ok && len(stages) == 0 {
				args[k] = v
			}
		case "FROM":
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: want a build stage and a final stage, got %d stage(s)", len(stages))
	}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { return args[k] })
	}

	// The build stage.
	build := stages[0]
	image, alias, _ := strings.Cut(expand(build[0].args), " ")
	tag, ok := strings.CutPrefix(image, "golang:")
	if !ok {
		t.Fatalf("Dockerfile: the build stage is %s, want golang:<go.mod's Go>", image)
	}
	gomod := versionParts(goModVersion(t))
	v := versionParts(strings.SplitN(tag, "-", 2)[0])
	switch {
	case len(v) < 2 || len(gomod) < 2 || v[0] != gomod[0] || v[1] != gomod[1]:
		t.Errorf("Dockerfile: golang:%s is not the Go of go.mod (go %s)", tag, goModVersion(t))
	case len(v) == 3 && len(gomod) == 3 && v[2] < gomod[2]:
		t.Errorf("Dockerfile: golang:%s is older than go.mod's go %s (the image has GOTOOLCHAIN=local)", tag, goModVersion(t))
	}
	stageName := strings.TrimSpace(strings.TrimPrefix(strings.ToUpper(alias), "AS "))
	var out string
	for _, in := range build {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "./cmd/postbud"} {
				if !strings.Contains(in.args, want) {
					t.Errorf("Dockerfile:%d: go build without %s", in.line, want)
				}
			}
			if f := strings.Fields(in.args[strings.Index(in.args, " -o ")+4:]); strings.Contains(in.args, " -o ") && len(f) > 0 {
				out = f[0]
			}
		}
	}
	if out == "" {
		t.Fatal("Dockerfile: no go build -o OUT in the build stage")
	}

	// The final stage.
	final := stages[len(stages)-1]
	base := expand(final[0].args)
	if base != "gcr.io/distroless/static-debian12:nonroot" && base != "scratch" {
		t.Errorf("Dockerfile: the final stage is %s, want gcr.io/distroless/static-debian12:nonroot or scratch", base)
	}
	var user, expose, entrypoint, cmd, copied string
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "EXPOSE":
			expose = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "CMD":
			cmd = in.args
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) == 3 && strings.EqualFold(f[0], "--from="+stageName) && f[1] == out {
				copied = f[2]
			}
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		t.Errorf("Dockerfile: the final stage must set a non-root USER, got %q", user)
	}
	if port := portOf(t, def.HTTPAddr); expose != strconv.Itoa(port) && expose != strconv.Itoa(port)+"/tcp" {
		t.Errorf("Dockerfile: EXPOSE %q, want %d (the default POSTBUD_HTTP_ADDR %s)", expose, port, def.HTTPAddr)
	}
	var ep, c []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || !slices.Equal(ep, []string{"/postbud"}) {
		t.Errorf(`Dockerfile: ENTRYPOINT %s, want ["/postbud"]`, entrypoint)
	}
	if err := json.Unmarshal([]byte(cmd), &c); err != nil || !slices.Equal(c, []string{"serve"}) {
		t.Errorf(`Dockerfile: CMD %s, want ["serve"]`, cmd)
	}
	if copied != "/postbud" {
		t.Errorf("Dockerfile: the final stage must COPY --from=%s %s /postbud", strings.ToLower(stageName), out)
	}
}

// ---------------------------------------------------------------------------
// systemd.

// unitFile returns a systemd unit's settings: section → key → values, in
// order.
func unitFile(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			out[section] = map[string][]string{}
		case strings.HasSuffix(line, "\\"):
			t.Fatalf("%s:%d: continuation lines are not supported by this test", path, i+1)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not KEY=VALUE in a section", path, i+1)
			}
			k = strings.TrimSpace(k)
			out[section][k] = append(out[section][k], strings.TrimSpace(v))
		}
	}
	return out
}

// envAssignments splits an Environment= value into its assignments,
// honouring double quotes.
func envAssignments(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// systemdSeconds parses a systemd time span such as 45, 45s or 1min 30s.
func systemdSeconds(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	r := strings.NewReplacer("min", "m", "sec", "s", "hr", "h", " ", "")
	return time.ParseDuration(r.Replace(s))
}

// TestSystemd checks the unit: postbud serve as the user postbud, its
// environment file (systemd/postbud.env, installed as EnvironmentFile)
// and Environment= loaded by the code, every secret a credential, time to
// shut down, and the hardening.
func TestSystemd(t *testing.T) {
	def := defaults(t)
	u := unitFile(t, filepath.Join("systemd", "postbud.service"))
	svc := u["Service"]
	if svc == nil {
		t.Fatal("postbud.service: no [Service]")
	}
	one := func(k string) string {
		if len(svc[k]) != 1 {
			t.Errorf("postbud.service: want one %s=, got %q", k, svc[k])
			return ""
		}
		return svc[k][0]
	}
	for k, want := range map[string]string{
		"User":            "postbud",
		"EnvironmentFile": "/etc/postbud/postbud.env",
		"Restart":         "on-failure",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"PrivateTmp":      "yes",
	} {
		if got := one(k); got != want {
			t.Errorf("postbud.service: %s=%s, want %s", k, got, want)
		}
	}
	if f := strings.Fields(one("ExecStart")); len(f) != 2 || f[1] != "serve" {
		t.Errorf("postbud.service: ExecStart=%s, want /path/to/postbud serve", one("ExecStart"))
	}

	creds := map[string]bool{}
	for _, lc := range svc["LoadCredential"] {
		name, path, ok := strings.Cut(lc, ":")
		if !ok || !filepath.IsAbs(path) {
			t.Errorf("postbud.service: LoadCredential=%s, want NAME:/absolute/path", lc)
		}
		creds[name] = true
	}

	env := map[string]string{}
	b, err := os.ReadFile(filepath.Join("systemd", "postbud.env"))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("postbud.env:%d: not KEY=VALUE", i+1)
		}
		if strings.HasSuffix(k, "_FILE") {
			t.Errorf("postbud.env:%d: %s: secrets are credentials, set in the unit (LoadCredential= and %s=%%d/NAME)", i+1, k, k)
		}
		env[k] = strings.Trim(v, `"'`)
	}
	for _, e := range svc["Environment"] {
		for _, kv := range envAssignments(e) {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	l := load(t, "systemd/postbud.service", env, func(name, path string) (string, error) {
		c, ok := strings.CutPrefix(path, "%d/")
		if !ok {
			return "", errors.New("want %d/NAME, a credential of the unit")
		}
		if !creds[c] {
			return "", fmt.Errorf("no LoadCredential=%s:...", c)
		}
		return filepath.Join("credentials", c), nil
	})
	stop, err := systemdSeconds(one("TimeoutStopSec"))
	if need := httpDrain + max(l.cfg.ShutdownTimeout, def.ShutdownTimeout); err != nil || stop <= need {
		t.Errorf("postbud.service: TimeoutStopSec=%s must exceed HTTP drain %v + POSTBUD_SHUTDOWN_TIMEOUT %v", one("TimeoutStopSec"), httpDrain, l.cfg.ShutdownTimeout)
	}
}
