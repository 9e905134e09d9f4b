package k8s

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/authprobe/authprobe/test/k8s/kubetest"
	"github.com/authprobe/authprobe/test/testutil"
)

// agentEnv names a prebuilt agent binary; else the test builds one.
const agentEnv = "AUTHPROBE_AGENT"

var agentBuild struct {
	once sync.Once
	path string
	err  error
}

func agentBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(agentEnv); p != "" {
		return p
	}
	agentBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "authprobe-k8s-")
		if err != nil {
			agentBuild.err = err
			return
		}
		agentBuild.path = filepath.Join(dir, "authprobe")
		agentBuild.err = testutil.GoBuild(agentBuild.path, "./cmd/authprobe")
	})
	if agentBuild.err != nil {
		t.Fatal(agentBuild.err)
	}
	return agentBuild.path
}

// server is a test login service (test/servers/python) running as the
// process of a pod's container.
type server struct {
	cmd     *exec.Cmd
	port    int
	done    chan struct{}
	started time.Time // just before the process was created
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// startServer starts the Python login service on port (0: any) inside the
// cgroup of container of pod p.
func (f *fixture) startServer(t *testing.T, l kubetest.Layout, p *kubetest.Pod, container string, port int) *server {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	cmd := exec.Command(py, "login_server.py", strconv.Itoa(port))
	cmd.Dir = filepath.Join(kubetest.RepoRoot(), "test", "servers", "python")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	dir := f.cg.Container(l, string(p.UID), p.ContainerIDs[container])
	started := time.Now()
	if err := f.cg.Start(cmd, dir); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, done: make(chan struct{}), started: started}
	ports := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				n, _ := strconv.Atoi(v)
				ports <- n
			}
		}
		_ = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
	})
	select {
	case s.port = <-ports:
	case <-s.done:
		t.Fatalf("login server of %s exited: %v", p.Name, cmd.ProcessState)
	case <-time.After(30 * time.Second):
		t.Fatalf("login server of %s not listening after 30s", p.Name)
	}
	return s
}

func (s *server) stop(t *testing.T) {
	t.Helper()
	_ = s.cmd.Process.Kill()
	<-s.done
}

// login sends one failed form login and checks the service answered 401.
func (s *server) login(t *testing.T, user string) {
	t.Helper()
	resp, err := http.PostForm(fmt.Sprintf("http://127.0.0.1:%d/login", s.port), url.Values{"username": {user}, "password": {"wrong"}})
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// agentKubeconfig writes a kubeconfig with a token of the agent's service
// account, as the DaemonSet's pods get one mounted.
func (f *fixture) agentKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kubetest.WriteKubeconfig(t, f.agentREST(t), path)
	return path
}

// agent is a running `authprobe run` with the stdout exporter.
type agent struct {
	cmd         *exec.Cmd
	metrics     string
	out, errOut *testutil.SyncBuffer
	done        chan struct{}
}

// startAgent runs the agent as the DaemonSet would on thisNode: NODE_NAME
// set, the API reached with the agent service account's token (a
// kubeconfig, standing in for the mounted token).
func (f *fixture) startAgent(t *testing.T, kubeconfig, targets string) *agent {
	t.Helper()
	dir := t.TempDir()
	metrics := freeAddr(t)
	cfg := filepath.Join(dir, "authprobe.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`
routes:
  - {name: auth.login, kind: login, method: POST, path: /login}
security:
  username: {privacy: hash, random_key: true}
targets:
`+targets), 0o600))
	a := &agent{metrics: metrics, out: &testutil.SyncBuffer{}, errOut: &testutil.SyncBuffer{}, done: make(chan struct{})}
	a.cmd = exec.Command(agentBinary(t), "run", "--config", cfg, "--metrics-addr", metrics, "--log-level", "debug")
	a.cmd.Env = append(os.Environ(), "NODE_NAME="+thisNode, "KUBECONFIG="+kubeconfig)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.errOut
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, a.cmd.Start())
	go func() {
		_ = a.cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(20 * time.Second):
			_ = a.cmd.Process.Kill()
			<-a.done
			t.Error("agent did not stop within 20s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("agent stderr:\n%s", testutil.Tail(a.errOut.String(), 6000))
		}
	})
	waitFor(t, 30*time.Second, "agent ready", func() bool {
		select {
		case <-a.done:
			t.Fatalf("agent exited: %v\n%s", a.cmd.ProcessState, a.errOut.String())
		default:
		}
		code, _ := a.get("/readyz")
		return code == 200
	})
	return a
}

func (a *agent) get(path string) (int, string) {
	resp, err := http.Get("http://" + a.metrics + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric reads one sample of the agent's /metrics ("name{labels}").
func (a *agent) metric(t *testing.T, series string) float64 {
	t.Helper()
	_, body := a.get("/metrics")
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	t.Fatalf("no %s in /metrics", series)
	return 0
}

// watching reports whether the agent logged that it watches pid.
func (a *agent) watching(pid int) bool {
	_, ok := a.watchedAt(pid)
	return ok
}

// watchedAt is the time of the agent's "watching process" line for pid.
func (a *agent) watchedAt(pid int) (time.Time, bool) {
	re := regexp.MustCompile(`(?m)^time=(\S+) .*msg="watching process" .*\bpid=` + strconv.Itoa(pid) + ` `)
	m := re.FindStringSubmatch(a.errOut.String())
	if m == nil {
		return time.Time{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	return at, err == nil
}

// linesOf is every line of the agent's log that names pid.
func (a *agent) linesOf(pid int) string {
	return linesMatching(a.errOut.String(), `^.*\bpid=`+strconv.Itoa(pid)+`\b`)
}

// linesMatching is the lines of s that match the regular expression re.
func linesMatching(s, re string) string {
	return strings.Join(regexp.MustCompile(`(?m)`+re+`.*$`).FindAllString(s, -1), "\n")
}

// span is one exported span, the parts these tests read.
type span struct {
	Name       string         `json:"name"`
	Attributes map[string]any `json:"attributes"`
	Resource   map[string]any `json:"resource"`
}

// spans returns the spans of the process pid exported so far.
func (a *agent) spans(t *testing.T, pid int) []span {
	t.Helper()
	var out []span
	for _, line := range strings.Split(a.out.String(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var s span
		require.NoError(t, json.Unmarshal([]byte(line), &s), line)
		if p, _ := s.Resource["process.pid"].(float64); int(p) == pid {
			out = append(out, s)
		}
	}
	return out
}

// waitSpans waits until pid has n spans and returns them.
func (a *agent) waitSpans(t *testing.T, pid, n int) []span {
	t.Helper()
	var got []span
	waitFor(t, 10*time.Second, fmt.Sprintf("%d spans of pid %d", n, pid), func() bool {
		got = a.spans(t, pid)
		return len(got) >= n
	})
	return got
}

// k8sResource is the part of a span's resource k8smeta and the Kubernetes
// conventions decide: k8s.*, container.*, service.*.
func k8sResource(s span) map[string]string {
	out := map[string]string{}
	for k, v := range s.Resource {
		if strings.HasPrefix(k, "k8s.") || strings.HasPrefix(k, "container.") || strings.HasPrefix(k, "service.") {
			switch v := v.(type) {
			case string:
				out[k] = v
			case []any:
				var parts []string
				for _, e := range v {
					parts = append(parts, fmt.Sprint(e))
				}
				out[k] = strings.Join(parts, ",")
			default:
				out[k] = fmt.Sprint(v)
			}
		}
	}
	return out
}

func freeAddr(t *testing.T) string {
	return testutil.FreeAddr(t)
}

func freePort(t *testing.T) int {
	return testutil.FreePort(t)
}

// TestAgentOnKubernetes runs the agent (eBPF, as root) with its service
// account's token against the API server, on login services running as
// pods' processes in the three cgroup layouts, and checks its spans'
// Kubernetes resource, its selectors (a pod created after the agent, a pod
// relabelled to match, another node's pod never watched), an API outage
// mid-run and a pod deleted with its process.
func TestAgentOnKubernetes(t *testing.T) {
	testutil.MustRoot(t)
	f := mustFixture(t)
	c := f.c
	for _, ns := range []string{"shop", "bank", "idp"} {
		c.Namespace(t, ns)
	}
	login := c.Deployment(t, "shop", "login", thisNode, map[string]string{"app": "login"}, "server")
	c.Run(t, login, "containerd", nil)
	idp := c.StatefulSet(t, "idp", "keycloak", thisNode, 0, map[string]string{"app": "keycloak"}, "server")
	c.Run(t, idp, "containerd", nil)
	bank := c.CreatePod(t, kubetest.PodSpec{Namespace: "bank", Name: "teller", Node: thisNode,
		Labels: map[string]string{"app.kubernetes.io/name": "teller"}, ContainerNames: []string{"api", "cache"}, Images: []string{"bank/api:7", "redis:7"}})
	c.Run(t, bank, "cri-o", nil)
	remote := c.Deployment(t, "shop", "login-eu", otherNode, map[string]string{"app": "login"}, "server")
	c.Run(t, remote, "containerd", nil)

	loginSrv := f.startServer(t, kubetest.SystemdContainerd, login, "server", 0)
	idpSrv := f.startServer(t, kubetest.CgroupfsContainerd, idp, "server", 0)
	bankSrv := f.startServer(t, kubetest.SystemdCRIO, bank, "api", 0)
	bankCache := f.startServer(t, kubetest.SystemdCRIO, bank, "cache", 0)
	remoteSrv := f.startServer(t, kubetest.SystemdContainerd, remote, "server", 0)
	cartPort := freePort(t)

	a := f.startAgent(t, f.agentKubeconfig(t), `
  - k8s_namespace: shop
    k8s_pod_labels: {app: login}
  - k8s_workload: {kind: StatefulSet, name: keycloak}
    service_name: identity-provider
  - k8s_namespace: bank
    k8s_container: api
  - k8s_namespace: shop
    port: `+strconv.Itoa(cartPort)+`
  - k8s_pod_labels: {canary: "true"}
`)
	_, ready := a.get("/readyz")
	t.Logf("/readyz:\n%s", ready)

	// Processes already running when the agent started: watched from its
	// first scan once the watch synced.
	for _, s := range []*server{loginSrv, idpSrv, bankSrv} {
		waitFor(t, 10*time.Second, fmt.Sprintf("pid %d watched", s.pid()), func() bool { return a.watching(s.pid()) })
	}

	t.Run("resource of a Deployment's pod", func(t *testing.T) {
		loginSrv.login(t, "alice")
		s := a.waitSpans(t, loginSrv.pid(), 1)[0]
		require.Equal(t, "auth.login", s.Name)
		require.Equal(t, map[string]string{
			"k8s.pod.uid": string(login.UID), "container.id": login.ContainerIDs["server"],
			"k8s.namespace.name": "shop", "k8s.pod.name": login.Name, "k8s.container.name": "server",
			"k8s.replicaset.name": login.OwnerReferences[0].Name, "k8s.deployment.name": "login",
			"k8s.node.name":        thisNode,
			"container.image.name": "registry.test:5000/authprobe/server", "container.image.tags": "1.0",
			"service.name": "login", "service.namespace": "shop", "service.instance.id": "shop." + login.Name + ".server",
		}, k8sResource(s))
		require.Equal(t, float64(loginSrv.pid()), s.Resource["process.pid"])
		for _, line := range strings.Split(a.out.String(), "\n") {
			if strings.Contains(line, fmt.Sprintf(`"process.pid":%d`, loginSrv.pid())) {
				t.Logf("span: %s", line)
				break
			}
		}
	})

	t.Run("StatefulSet selector with a service_name override", func(t *testing.T) {
		idpSrv.login(t, "bob")
		s := a.waitSpans(t, idpSrv.pid(), 1)[0]
		require.Equal(t, map[string]string{
			"k8s.pod.uid": string(idp.UID), "container.id": idp.ContainerIDs["server"],
			"k8s.namespace.name": "idp", "k8s.pod.name": "keycloak-0", "k8s.container.name": "server",
			"k8s.statefulset.name": "keycloak", "k8s.node.name": thisNode,
			"container.image.name": "registry.test:5000/authprobe/server", "container.image.tags": "1.0",
			"service.name": "identity-provider", "service.namespace": "idp", "service.instance.id": "idp.keycloak-0.server",
		}, k8sResource(s))
	})

	t.Run("container selector on CRI-O", func(t *testing.T) {
		bankSrv.login(t, "carol")
		s := a.waitSpans(t, bankSrv.pid(), 1)[0]
		require.Equal(t, map[string]string{
			"k8s.pod.uid": string(bank.UID), "container.id": bank.ContainerIDs["api"],
			"k8s.namespace.name": "bank", "k8s.pod.name": "teller", "k8s.container.name": "api",
			"k8s.node.name": thisNode, "container.image.name": "bank/api", "container.image.tags": "7",
			"service.name": "teller", "service.namespace": "bank", "service.instance.id": "bank.teller.api",
		}, k8sResource(s))
		bankCache.login(t, "carol")
		remoteSrv.login(t, "dave")
	})

	t.Run("pod created after the agent", func(t *testing.T) {
		cart := c.Deployment(t, "shop", "cart", thisNode, map[string]string{"app": "cart"}, "server")
		c.Run(t, cart, "containerd", nil)
		cartSrv := f.startServer(t, kubetest.SystemdContainerd, cart, "server", cartPort)
		waitFor(t, 5*time.Second, "cart watched", func() bool { return a.watching(cartSrv.pid()) })
		at, _ := a.watchedAt(cartSrv.pid())
		t.Logf("process of a pod created after the agent, selected with a port: watched %s after its process was created (the port scan runs every 500ms)",
			at.Sub(cartSrv.started).Round(time.Millisecond))
		cartSrv.login(t, "erin")
		s := a.waitSpans(t, cartSrv.pid(), 1)[0]
		require.Equal(t, "cart", k8sResource(s)["service.name"])
		require.Equal(t, "cart", k8sResource(s)["k8s.deployment.name"])
	})

	t.Run("pod created after the agent, selected by its labels", func(t *testing.T) {
		p := c.CreatePod(t, kubetest.PodSpec{Namespace: "shop", Name: "canary-1", Node: thisNode,
			Labels: map[string]string{"canary": "true"}, ContainerNames: []string{"server"}, Images: []string{"login:2"}})
		c.Run(t, p, "containerd", nil)
		srv := f.startServer(t, kubetest.SystemdContainerd, p, "server", 0)
		waitFor(t, 5*time.Second, "canary watched", func() bool { return a.watching(srv.pid()) })
		at, _ := a.watchedAt(srv.pid())
		took := at.Sub(srv.started)
		t.Logf("process of a pod created after the agent, selected by labels: watched %s after its process was created (at its exec)", took.Round(time.Millisecond))
		require.Less(t, took, time.Second)
		srv.login(t, "erin")
		require.Equal(t, "canary-1", k8sResource(a.waitSpans(t, srv.pid(), 1)[0])["service.name"])
	})

	t.Run("pod relabelled to match", func(t *testing.T) {
		p := c.Deployment(t, "shop", "search", thisNode, map[string]string{"app": "search"}, "server")
		c.Run(t, p, "containerd", nil)
		srv := f.startServer(t, kubetest.SystemdContainerd, p, "server", 0)
		time.Sleep(300 * time.Millisecond)
		require.False(t, a.watching(srv.pid()), "no target selects it yet")
		p.Labels["canary"] = "true"
		upd, err := c.Client.CoreV1().Pods("shop").Update(context.Background(), p.Pod, metav1.UpdateOptions{})
		require.NoError(t, err)
		p.Pod = upd
		took := waitFor(t, 5*time.Second, "relabelled pod watched", func() bool { return a.watching(srv.pid()) })
		t.Logf("label change → process watched: %s", took.Round(time.Millisecond))
		require.Less(t, took, time.Second)
		srv.login(t, "frank")
		require.Equal(t, "search", k8sResource(a.waitSpans(t, srv.pid(), 1)[0])["service.name"])
	})

	t.Run("another node's pod and an unselected container are never watched", func(t *testing.T) {
		require.False(t, a.watching(remoteSrv.pid()))
		require.False(t, a.watching(bankCache.pid()))
		require.Empty(t, a.spans(t, remoteSrv.pid()))
		require.Empty(t, a.spans(t, bankCache.pid()))
		require.Equal(t, 6.0, a.metric(t, `authprobe_k8s_pods{state="live"}`), "this node's pods only")
	})

	t.Run("API server stopped and restarted", func(t *testing.T) {
		c.StopAPIServer()
		waitFor(t, 30*time.Second, "agent sees the outage", func() bool {
			return a.metric(t, `authprobe_k8s_watch_phase{phase="disconnected"}`) == 1
		})
		code, body := a.get("/readyz")
		require.Equal(t, 200, code, "capture does not wait for the API")
		require.Contains(t, body, "kubernetes: disconnected")
		t.Logf("/readyz during the outage:\n%s", body)
		// Spans go on, with the pods known before the outage.
		loginSrv.login(t, "grace")
		spans := a.waitSpans(t, loginSrv.pid(), 2)
		require.Equal(t, login.Name, k8sResource(spans[1])["k8s.pod.name"])

		c.RestartAPIServer()
		took := waitFor(t, 60*time.Second, "agent resynced", func() bool {
			return a.metric(t, `authprobe_k8s_watch_phase{phase="synced"}`) == 1
		})
		t.Logf("resynced %s after the API server was back", took.Round(time.Millisecond))
		require.GreaterOrEqual(t, a.metric(t, "authprobe_k8s_api_reconnects_total"), 1.0)
		require.GreaterOrEqual(t, a.metric(t, "authprobe_k8s_api_errors_total"), 1.0)
		// A pod that appears after the outage is matched.
		p := c.Deployment(t, "shop", "login-v2", thisNode, map[string]string{"app": "login"}, "server")
		c.Run(t, p, "containerd", nil)
		srv := f.startServer(t, kubetest.SystemdContainerd, p, "server", 0)
		waitFor(t, 5*time.Second, "post-outage pod watched", func() bool { return a.watching(srv.pid()) })
		srv.login(t, "heidi")
		require.Equal(t, "login-v2", k8sResource(a.waitSpans(t, srv.pid(), 1)[0])["k8s.deployment.name"])
	})

	t.Run("pod deleted and its process gone", func(t *testing.T) {
		// On failure, everything the agent said of the process: the tail
		// of its log may no longer hold it.
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("agent log lines of pid %d:\n%s", idpSrv.pid(), a.linesOf(idpSrv.pid()))
				_, body := a.get("/metrics")
				t.Logf("agent loss and kernel counters:\n%s", linesMatching(body, `^authprobe_(drops_total|kernel_total|events_total|auth_attempts_lost_total)`))
			}
		})
		before := a.metric(t, `authprobe_k8s_pods{state="live"}`)
		n := len(a.spans(t, idpSrv.pid()))
		idpSrv.login(t, "ivan")
		c.DeletePod(t, idp)
		idpSrv.stop(t)
		// The last request's span, exported after both went, still names
		// the pod.
		s := a.waitSpans(t, idpSrv.pid(), n+1)[n]
		require.Equal(t, "keycloak-0", k8sResource(s)["k8s.pod.name"])
		// Each half separately, so a failure says which one: the exit
		// comes from the kernel, the pod's deletion through the watch
		// (which has just reconnected after the API server's restart).
		waitFor(t, 30*time.Second, "the process's exit seen", func() bool {
			return regexp.MustCompile(fmt.Sprintf(`msg="process exited" .*\bpid=%d\b`, idpSrv.pid())).MatchString(a.errOut.String())
		})
		waitFor(t, 30*time.Second, "the pod gone from the watch", func() bool {
			return a.metric(t, `authprobe_k8s_pods{state="live"}`) == before-1
		})
		require.Equal(t, 1.0, a.metric(t, `authprobe_k8s_pods{state="deleted"}`), "remembered for the TTL, then dropped")
	})
}

// TestAgentStartsWithoutAPI: with the API server down the agent starts,
// captures, and its spans carry what cgroups tell; once the API is up the
// same process's spans carry its pod, workload and service name.
func TestAgentStartsWithoutAPI(t *testing.T) {
	testutil.MustRoot(t)
	f := mustFixture(t)
	c := f.c
	c.Namespace(t, "shop")
	p := c.Deployment(t, "shop", "login", thisNode, map[string]string{"app": "login"}, "server")
	c.Run(t, p, "containerd", nil)
	port := freePort(t)
	srv := f.startServer(t, kubetest.SystemdContainerd, p, "server", port)

	kubeconfig := f.agentKubeconfig(t)
	c.StopAPIServer()
	a := f.startAgent(t, kubeconfig, "  - port: "+strconv.Itoa(port)+"\n")
	_, body := a.get("/readyz")
	require.Contains(t, body, "kubernetes: disconnected")
	waitFor(t, 10*time.Second, "watched by port", func() bool { return a.watching(srv.pid()) })
	srv.login(t, "alice")
	s := a.waitSpans(t, srv.pid(), 1)[0]
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", srv.pid()))
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"k8s.pod.uid": string(p.UID), "container.id": p.ContainerIDs["server"], "k8s.node.name": thisNode,
		"service.name": filepath.Base(exe),
	}, k8sResource(s), "without the API: the cgroup's identity, the executable's name")

	c.RestartAPIServer()
	took := waitFor(t, 60*time.Second, "synced", func() bool {
		return a.metric(t, `authprobe_k8s_watch_phase{phase="synced"}`) == 1 &&
			strings.Contains(a.errOut.String(), `msg="service name from the pod"`)
	})
	t.Logf("API up after the agent: the process's service name from its pod %s after the API server was ready", took.Round(time.Millisecond))
	srv.login(t, "alice")
	s = a.waitSpans(t, srv.pid(), 2)[1]
	require.Equal(t, "login", k8sResource(s)["service.name"])
	require.Equal(t, p.Name, k8sResource(s)["k8s.pod.name"])
	require.Equal(t, "login", k8sResource(s)["k8s.deployment.name"])
}
