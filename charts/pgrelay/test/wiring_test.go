package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// The local services the wiring test points the chart's URLs at;
// scripts/test.sh exports them.
var (
	testDatabaseURL = getenv("PGRELAY_TEST_DATABASE_URL", "postgres://127.0.0.1:5432/test?sslmode=disable")
	testRedisURL    = getenv("PGRELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
)

// binDir holds relay and edge built from this checkout, once per test binary.
var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds cmd/relay and cmd/edge from the repository root.
func binaries(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "pgrelay-chart-bin-")
		if binErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), "./cmd/relay", "./cmd/edge")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/relay ./cmd/edge: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// requireServices fails with a hint when PostgreSQL or Redis does not answer.
func requireServices(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testDatabaseURL)
	if err != nil {
		t.Fatalf("PostgreSQL at PGRELAY_TEST_DATABASE_URL=%s does not answer (%v): run scripts/test.sh, which finds or starts one", testDatabaseURL, err)
	}
	conn.Close(ctx)
	u, err := url.Parse(testRedisURL)
	if err != nil {
		t.Fatalf("PGRELAY_TEST_REDIS_URL: %v", err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "6379")
	}
	c, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		t.Fatalf("Redis at PGRELAY_TEST_REDIS_URL=%s does not answer (%v): run scripts/test.sh, which finds or starts one", testRedisURL, err)
	}
	c.Close()
}

// TestChartSetsEveryVariable: the chart sets every variable `relay -h` and
// `edge -h` list (in at least one scenario), so that each is reachable from
// values, and nothing else
// (the binaries refuse unknown RELAY_*/EDGE_* names). When a variable is added
// to the code, this fails until the chart (values, schema, README) has it.
func TestChartSetsEveryVariable(t *testing.T) {
	bin := binaries(t)
	var renders []map[string]runtime.Object
	for _, sc := range scenarios(t) {
		renders = append(renders, decodeAll(t, mustRender(t, sc.values)))
	}
	for _, c := range []struct{ component, prefix string }{{"relay", "RELAY_"}, {"edge", "EDGE_"}} {
		out, err := exec.Command(filepath.Join(bin, c.component), "-h").Output()
		if err != nil {
			t.Fatalf("%s -h: %v", c.component, err)
		}
		var known []string
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) > 0 && strings.HasPrefix(f[0], c.prefix) {
				known = append(known, f[0])
			}
		}
		if len(known) == 0 {
			t.Fatalf("%s -h listed no %s variables:\n%s", c.component, c.prefix, out)
		}
		// Some variables are set only where a scenario uses them (EDGE_JWT_SECRET).
		seen := map[string]bool{}
		var set []string
		for _, objs := range renders {
			for _, e := range container(t, objs, c.component).Env {
				if !seen[e.Name] {
					seen[e.Name] = true
					set = append(set, e.Name)
				}
			}
		}
		if missing := minus(known, set); len(missing) > 0 {
			t.Errorf("%s knows variables the chart never sets (add them to values, schema and templates): %s", c.component, strings.Join(missing, " "))
		}
		if extra := minus(set, known); len(extra) > 0 {
			t.Errorf("the chart sets variables %s does not know (it would refuse to start): %s", c.component, strings.Join(extra, " "))
		}
	}
}

// TestWiring runs, for every scenario, the real relay and edge binaries with
// exactly the env, args and ports of the containers the chart renders (URLs
// pointed at the local PostgreSQL and Redis, container ports remapped to free
// loopback ports), then checks that the chart's probes pass, that a NOTIFY
// reaches a WebSocket client through the port the edge Service targets, that
// the `helm test` pod's command succeeds, and that both workloads stop within
// their terminationGracePeriodSeconds.
func TestWiring(t *testing.T) {
	requireServices(t)
	bin := binaries(t)
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			wire(t, bin, sc)
		})
	}
}

func wire(t *testing.T, bin string, sc scenario) {
	id := randomID(t)
	prefix := "pgrelay-wiring-" + id
	channel := "wiring_" + id
	values := merge(sc.values, map[string]any{
		"prefix": prefix,
		"relay":  map[string]any{"config": map[string]any{"channels": []any{channel}}},
		"tests":  map[string]any{"channel": channel},
	})
	r := mustRender(t, values)
	objs := decodeAll(t, r)
	if t.Failed() {
		return
	}
	w := &wiring{t: t, bin: bin, objs: objs, running: map[string][]*proc{}}

	relayDep := deployment(t, objs, "relay")
	edgeDep := deployment(t, objs, "edge")
	relays := 1
	if relayDep.Spec.Replicas != nil && *relayDep.Spec.Replicas > 1 {
		relays = 2 // one leader and one standby is enough to see both roles
	}
	var rp []*proc
	for i := 0; i < relays; i++ {
		rp = append(rp, w.start("relay", fmt.Sprintf("relay-%d", i), relayDep))
	}
	ep := w.start("edge", "edge", edgeDep)
	for _, p := range append(rp, ep) {
		w.probes(p)
	}

	// One relay leads (the lock key derives from the unique prefix); the others stand by.
	leader := w.waitBody(rp, "/readyz", "leader", 30*time.Second)
	if relays > 1 {
		for _, p := range rp {
			if p != leader {
				if body := w.get(p, "/readyz"); !strings.Contains(body, "standby") {
					t.Errorf("%s: /readyz says %q, want standby", p.name, body)
				}
			}
		}
	}

	// The page and a WebSocket client, through the port the edge Service targets.
	local := w.servicePort("edge")
	base := fmt.Sprintf("http://127.0.0.1:%d", local)
	if resp, err := http.Get(base + "/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET / through the edge Service's targetPort: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var opts websocket.DialOptions
	if ep.env["EDGE_AUTH"] == "jwt" {
		secret := ep.env["EDGE_JWT_SECRET"]
		if secret == "" {
			t.Fatal("EDGE_AUTH=jwt without EDGE_JWT_SECRET: this test signs its token with HS256")
		}
		opts.HTTPHeader = http.Header{"Authorization": {"Bearer " + hs256Token(t, secret, channel)}}
	}
	ws, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws?channel=%s", local, channel), &opts)
	if err != nil {
		t.Fatalf("websocket through the edge Service's targetPort: %v\n%s", err, ep.logs())
	}
	defer ws.CloseNow()
	msgs := make(chan []byte, 16)
	readErr := make(chan error, 1)
	go func() {
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				readErr <- err
				return
			}
			msgs <- data
		}
	}()
	w.notifyUntilReceived(ctx, channel, "wired "+id, msgs)

	// What the ServiceMonitors would scrape.
	w.scrapes()

	// The `helm test` pod's command, against the same edge.
	w.helmTest(ep, edgeDep.Spec.Template.Spec.Containers[0].Image)

	// Shutdown: the edge drains (its client gets 1001) and exits within its
	// grace period; the leader's lock passes to the standby; relays exit in time.
	w.stop(ep, edgeDep)
	select {
	case err := <-readErr:
		if websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("client of a stopping edge: %v, want close 1001 (going away)", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("client of a stopped edge was not closed")
	}
	w.stop(leader, relayDep)
	for _, p := range rp {
		if p != leader {
			w.waitBody([]*proc{p}, "/readyz", "leader", 15*time.Second)
			w.stop(p, relayDep)
		}
	}
}

// wiring is one scenario's rendered objects and running processes.
type wiring struct {
	t       *testing.T
	bin     string
	objs    map[string]runtime.Object
	running map[string][]*proc // by component
}

// proc is one running binary standing in for a container.
type proc struct {
	name  string
	cmd   *exec.Cmd
	out   *syncBuffer
	ports map[string]int // container port name → local port
	byNum map[int32]int  // container port number → local port
	c     corev1.Container
	env   map[string]string // as the process got it
	done  chan struct{}
	err   error // exit status, once done is closed
}

func (p *proc) logs() string { return fmt.Sprintf("--- %s output:\n%s", p.name, p.out.String()) }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// start runs the Deployment's single container as a local process: its args,
// its env with URLs and listen addresses replaced, its ports remapped.
func (w *wiring) start(component, name string, d *appsv1.Deployment) *proc {
	t := w.t
	t.Helper()
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%s: %d containers, want 1", d.Name, n)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if len(c.Command) > 0 {
		t.Fatalf("%s: command %q overrides the image's entrypoint", d.Name, c.Command)
	}
	if len(c.EnvFrom) > 0 {
		t.Fatalf("%s: envFrom is not supported by this test; the chart sets each variable", d.Name)
	}
	p := &proc{name: name, c: c, out: &syncBuffer{}, ports: map[string]int{}, byNum: map[int32]int{}, done: make(chan struct{})}
	for _, port := range c.Ports {
		l := freePort(t)
		p.byNum[port.ContainerPort] = l
		if port.Name != "" {
			p.ports[port.Name] = l
		}
	}
	env := w.env(d.Name, d.Spec.Template.Spec, c, p.byNum)
	p.env = map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		p.env[k] = v
	}
	binary := filepath.Join(w.bin, c.Name)
	if _, err := os.Stat(binary); err != nil {
		t.Fatalf("%s: container %q is not one of the binaries (relay, edge)", d.Name, c.Name)
	}
	p.cmd = exec.Command(binary, c.Args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	w.running[component] = append(w.running[component], p)
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Log(p.logs())
		}
	})
	return p
}

// env is the container's environment as the process gets it.
func (w *wiring) env(owner string, pod corev1.PodSpec, c corev1.Container, ports map[int32]int) []string {
	t := w.t
	t.Helper()
	mounts := w.mounts(owner, pod, c)
	var env []string
	var addr bool
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			// The reference itself is checked in TestObjectsDecodeStrictly.
			switch {
			case strings.HasSuffix(e.Name, "_DATABASE_URL"):
				v = testDatabaseURL
			case strings.HasSuffix(e.Name, "_REDIS_URL"):
				v = testRedisURL
			default:
				v = w.secretValue(owner, e.Name, e.ValueFrom.SecretKeyRef)
			}
		case e.ValueFrom != nil:
			t.Fatalf("%s: %s uses a valueFrom this test does not support", owner, e.Name)
		case strings.HasSuffix(e.Name, "_DATABASE_URL"):
			t.Errorf("%s: %s is in plain env; it must come from a Secret", owner, e.Name)
			v = testDatabaseURL
		case strings.HasSuffix(e.Name, "_REDIS_URL"):
			w.checkBundledRedis(owner, e.Name, v)
			v = testRedisURL
		}
		for mountPath, dir := range mounts {
			if v == mountPath || strings.HasPrefix(v, mountPath+"/") {
				v = dir + strings.TrimPrefix(v, mountPath)
			}
		}
		if strings.HasSuffix(e.Name, "_HTTP_ADDR") {
			addr = true
			_, port, err := net.SplitHostPort(v)
			n, _ := strconv.Atoi(port)
			local, ok := ports[int32(n)]
			if err != nil || !ok {
				t.Fatalf("%s: %s=%q listens on no port the container declares", owner, e.Name, v)
			}
			v = fmt.Sprintf("127.0.0.1:%d", local)
		}
		env = append(env, e.Name+"="+v)
	}
	if !addr {
		t.Fatalf("%s: the chart must set the listen address (*_HTTP_ADDR) so that it matches the declared port", owner)
	}
	return env
}

// secretValue is a non-URL value from a Secret the chart renders.
func (w *wiring) secretValue(owner, name string, ref *corev1.SecretKeySelector) string {
	for _, obj := range w.objs {
		if s, ok := obj.(*corev1.Secret); ok && s.Name == ref.Name {
			v, ok := s.Data[ref.Key]
			if !ok {
				w.t.Fatalf("%s: %s reads key %q, which Secret %s does not have", owner, name, ref.Key, s.Name)
			}
			return string(v)
		}
	}
	w.t.Fatalf("%s: %s reads Secret %s, which the chart does not render; the test cannot stand in for it", owner, name, ref.Name)
	return ""
}

// mounts writes the Secret volumes the container mounts into temporary
// directories, as the kubelet would, and returns mountPath → directory.
func (w *wiring) mounts(owner string, pod corev1.PodSpec, c corev1.Container) map[string]string {
	t := w.t
	out := map[string]string{}
	for _, m := range c.VolumeMounts {
		var vol *corev1.Volume
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == m.Name {
				vol = &pod.Volumes[i]
			}
		}
		if vol == nil {
			t.Fatalf("%s: mounts volume %q, which the pod does not declare", owner, m.Name)
		}
		if vol.Secret == nil {
			t.Fatalf("%s: volume %q is not a Secret; this test supports only Secret volumes", owner, m.Name)
		}
		dir := t.TempDir()
		var data map[string][]byte
		for _, obj := range w.objs {
			if s, ok := obj.(*corev1.Secret); ok && s.Name == vol.Secret.SecretName {
				data = s.Data
			}
		}
		if data == nil {
			t.Fatalf("%s: volume %q: Secret %s is not rendered; the test cannot stand in for it", owner, m.Name, vol.Secret.SecretName)
		}
		for k, v := range data {
			if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		out[filepath.Clean(m.MountPath)] = dir
	}
	return out
}

// checkBundledRedis: a plain Redis URL must name the bundled Redis Service
// and its port.
func (w *wiring) checkBundledRedis(owner, name, v string) {
	u, err := url.Parse(v)
	if err != nil {
		w.t.Errorf("%s: %s=%q: %v", owner, name, v, err)
		return
	}
	svc := w.service(u.Hostname())
	if svc == nil {
		w.t.Errorf("%s: %s=%q names no rendered Service", owner, name, v)
		return
	}
	for _, p := range svc.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == u.Port() {
			return
		}
	}
	w.t.Errorf("%s: %s=%q: Service %s has no port %s", owner, name, v, svc.Name, u.Port())
}

func (w *wiring) service(name string) *corev1.Service {
	for _, obj := range w.objs {
		if s, ok := obj.(*corev1.Service); ok && s.Name == name {
			return s
		}
	}
	return nil
}

// localPort resolves a probe's or Service's target (a name or a number) to
// the process's local port.
func (p *proc) localPort(target string) (int, bool) {
	if l, ok := p.ports[target]; ok {
		return l, true
	}
	n, err := strconv.Atoi(target)
	if err != nil {
		return 0, false
	}
	l, ok := p.byNum[int32(n)]
	return l, ok
}

// probes checks every HTTP probe the container declares: liveness and
// startup must pass within 15 s, readiness within 30 s (a relay is ready once
// it has a PostgreSQL session).
func (w *wiring) probes(p *proc) {
	t := w.t
	t.Helper()
	var n int
	for _, pr := range []struct {
		kind  string
		probe *corev1.Probe
		wait  time.Duration
	}{{"startup", p.c.StartupProbe, 15 * time.Second}, {"liveness", p.c.LivenessProbe, 15 * time.Second}, {"readiness", p.c.ReadinessProbe, 30 * time.Second}} {
		if pr.probe == nil {
			continue
		}
		g := pr.probe.HTTPGet
		if g == nil {
			t.Errorf("%s: %s probe is not an HTTP GET", p.name, pr.kind)
			continue
		}
		n++
		local, ok := p.localPort(g.Port.String())
		if !ok {
			t.Fatalf("%s: %s probe port %s is not a container port", p.name, pr.kind, g.Port.String())
		}
		u := fmt.Sprintf("http://127.0.0.1:%d%s", local, g.Path)
		deadline := time.Now().Add(pr.wait)
		for {
			status, body, err := httpGet(u)
			// Kubernetes counts 200-399 as success.
			if err == nil && status >= 200 && status < 400 {
				t.Logf("%s: %s probe %s: %d %s", p.name, pr.kind, g.Path, status, body)
				break
			}
			if p.exited() {
				t.Fatalf("%s exited (%v) before its %s probe passed\n%s", p.name, p.err, pr.kind, p.logs())
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s probe GET %s: %d %q %v after %s", p.name, pr.kind, g.Path, status, body, err, pr.wait)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if n < 2 {
		t.Errorf("%s: %d HTTP probes, want liveness and readiness", p.name, n)
	}
}

// get is GET path on the process's http port; it fails the test on an error.
func (w *wiring) get(p *proc, path string) string {
	w.t.Helper()
	_, body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d%s", p.ports["http"], path))
	if err != nil {
		w.t.Fatalf("%s: GET %s: %v", p.name, path, err)
	}
	return body
}

// waitBody waits until one of ps answers path with a body containing want.
func (w *wiring) waitBody(ps []*proc, path, want string, wait time.Duration) *proc {
	w.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		for _, p := range ps {
			if _, body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d%s", p.ports["http"], path)); err == nil && strings.Contains(body, want) {
				return p
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("no %s answered %s with %q within %s", ps[0].name, path, want, wait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// servicePort is the local port behind the Service of a component: its
// first port's targetPort, resolved against the component's container.
func (w *wiring) servicePort(component string) int {
	t := w.t
	t.Helper()
	var svc *corev1.Service
	for _, obj := range w.objs {
		if s, ok := obj.(*corev1.Service); ok && s.Labels["app.kubernetes.io/component"] == component && s.Labels["pgrelay.io/service"] == "" {
			svc = s
		}
	}
	if svc == nil || len(svc.Spec.Ports) == 0 {
		t.Fatalf("no %s Service with a port", component)
	}
	for _, p := range w.running[component] {
		if l, ok := p.localPort(svc.Spec.Ports[0].TargetPort.String()); ok {
			return l
		}
	}
	t.Fatalf("Service %s targets port %s, which the %s container does not declare", svc.Name, svc.Spec.Ports[0].TargetPort.String(), component)
	return 0
}

// notifyUntilReceived sends NOTIFY on channel until the client gets it: at
// most once delivery means a NOTIFY sent before the leader LISTENs is lost.
func (w *wiring) notifyUntilReceived(ctx context.Context, channel, payload string, msgs <-chan []byte) {
	t := w.t
	t.Helper()
	conn, err := pgx.Connect(ctx, testDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		if _, err := conn.Exec(ctx, "SELECT pg_notify($1, $2)", channel, payload); err != nil {
			t.Fatalf("NOTIFY: %v", err)
		}
		select {
		case data := <-msgs:
			var m struct{ Channel, ID, Payload string }
			if err := json.Unmarshal(data, &m); err != nil || m.Channel != channel || m.Payload != payload || m.ID == "" {
				t.Fatalf("client got %s, want channel %q payload %q and an id", data, channel, payload)
			}
			t.Logf("NOTIFY reached the client through the edge Service's port: %s", data)
			return
		case <-tick.C:
		case <-deadline:
			t.Fatal("no NOTIFY reached the client within 30 s")
		}
	}
}

// helmTest runs the `helm test` pod's container against the local edge: its
// args, with the edge Service's URL replaced by the local port it targets.
func (w *wiring) helmTest(edge *proc, edgeImage string) {
	t := w.t
	t.Helper()
	var pod *corev1.Pod
	for _, obj := range w.objs {
		if p, ok := obj.(*corev1.Pod); ok && p.Annotations["helm.sh/hook"] == "test" {
			pod = p
		}
	}
	if pod == nil {
		t.Log("no helm test pod in this scenario")
		return
	}
	c := pod.Spec.Containers[0]
	if len(c.Command) > 0 || c.Image != edgeImage {
		t.Fatalf("helm test pod: runs %q %q, want the edge image's entrypoint", c.Image, c.Command)
	}
	args := append([]string(nil), c.Args...)
	var replaced bool
	for i, a := range args {
		u, err := url.Parse(a)
		if err != nil || u.Host == "" {
			continue
		}
		svc := w.service(u.Hostname())
		if svc == nil {
			t.Fatalf("helm test pod: %s names no rendered Service", a)
		}
		var target string
		for _, sp := range svc.Spec.Ports {
			if strconv.Itoa(int(sp.Port)) == u.Port() || (u.Port() == "" && sp.Port == 80) {
				target = sp.TargetPort.String()
			}
		}
		local, ok := edge.localPort(target)
		if !ok {
			t.Fatalf("helm test pod: %s: no Service port %q leading to the edge", a, u.Port())
		}
		u.Host = fmt.Sprintf("127.0.0.1:%d", local)
		args[i], replaced = u.String(), true
	}
	if !replaced {
		t.Fatalf("helm test pod: args %q name no Service URL", c.Args)
	}
	out, err := exec.Command(filepath.Join(w.bin, "edge"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm test pod: edge %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("helm test pod: edge %s:\n%s", strings.Join(args, " "), out)
}

// stop sends SIGTERM and requires a clean exit within the pod's
// terminationGracePeriodSeconds.
func (w *wiring) stop(p *proc, d *appsv1.Deployment) {
	t := w.t
	t.Helper()
	grace := 30 * time.Second
	if s := d.Spec.Template.Spec.TerminationGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s exited with %v after SIGTERM\n%s", p.name, p.err, p.logs())
		}
		t.Logf("%s: stopped %s after SIGTERM (grace period %s)", p.name, time.Since(start).Round(10*time.Millisecond), grace)
	case <-time.After(grace):
		t.Errorf("%s still running %s after SIGTERM: Kubernetes would kill it mid-drain", p.name, grace)
	}
}

// deployment returns the Deployment of a component.
func deployment(t testing.TB, objs map[string]runtime.Object, component string) *appsv1.Deployment {
	t.Helper()
	var out []*appsv1.Deployment
	for _, obj := range objs {
		if d, ok := obj.(*appsv1.Deployment); ok && d.Labels["app.kubernetes.io/component"] == component {
			out = append(out, d)
		}
	}
	if len(out) != 1 {
		t.Fatalf("want one %s Deployment, got %d", component, len(out))
	}
	return out[0]
}

// container returns the single container of a component's Deployment.
func container(t testing.TB, objs map[string]runtime.Object, component string) corev1.Container {
	t.Helper()
	d := deployment(t, objs, component)
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: want one container", d.Name)
	}
	return d.Spec.Template.Spec.Containers[0]
}

func httpGet(u string) (int, string, error) {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomID(t testing.TB) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// syncBuffer is a bytes.Buffer safe for a process's stdout and stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// scrapes checks each rendered ServiceMonitor endpoint against the running
// processes: Service port → targetPort → process, then GET its path. It must
// answer 200 when the binary says (in -h) that it serves /metrics; a binary
// without /metrics yet is only noted.
func (w *wiring) scrapes() {
	t := w.t
	t.Helper()
	for key, obj := range w.objs {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok || u.GetKind() != "ServiceMonitor" {
			continue
		}
		var sm serviceMonitor
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &sm); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		sel, _ := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		for _, o := range w.objs {
			svc, ok := o.(*corev1.Service)
			if !ok || !sel.Matches(labels.Set(svc.Labels)) {
				continue
			}
			component := svc.Labels["app.kubernetes.io/component"]
			for _, ep := range sm.Spec.Endpoints {
				for _, sp := range svc.Spec.Ports {
					if sp.Name != ep.Port {
						continue
					}
					for _, p := range w.running[component] {
						local, ok := p.localPort(sp.TargetPort.String())
						if !ok {
							t.Errorf("%s: Service %s port %s targets %s, not a port of %s", key, svc.Name, sp.Name, sp.TargetPort.String(), p.name)
							continue
						}
						status, _, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d%s", local, ep.Path))
						help, _ := exec.Command(filepath.Join(w.bin, component), "-h").Output()
						switch {
						case status == http.StatusOK:
							t.Logf("%s: scrape of %s %s: 200", key, p.name, ep.Path)
						case strings.Contains(string(help), ep.Path):
							t.Errorf("%s: scrape of %s %s: %d %v, though %s -h says it serves %s", key, p.name, ep.Path, status, err, component, ep.Path)
						default:
							t.Logf("%s: scrape of %s %s: %d (%s does not serve %s yet)", key, p.name, ep.Path, status, component, ep.Path)
						}
					}
				}
			}
		}
	}
}

// hs256Token signs a JWT granting channel for an hour, as an application's
// token service would.
func hs256Token(t testing.TB, secret, channel string) string {
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "HS256", "typ": "JWT"}) + "." +
		enc(map[string]any{"channels": []string{channel}, "exp": time.Now().Add(time.Hour).Unix()})
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// minus returns the elements of a not in b, sorted.
func minus(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if !in[x] {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}
