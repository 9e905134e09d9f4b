package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/authprobe/authprobe/test/testutil"
)

// Cluster is an etcd and a kube-apiserver on loopback, started by Start
// and stopped (every process, every file) when the test ends.
type Cluster struct {
	tb  testing.TB
	dir string

	etcdBin, apiserverBin string
	etcdPort, etcdPeer    int
	// Port is the API server's secure port; it stays the same across
	// Stop and Restart.
	Port int
	// URL is https://127.0.0.1:Port.
	URL string
	// CAFile verifies the API server's certificate.
	CAFile string
	// AuditLog is the API server's audit log (JSON lines, Metadata level).
	AuditLog string

	// Admin is cluster-admin (a client certificate in system:masters).
	Admin *rest.Config
	// Client is Admin's clientset.
	Client kubernetes.Interface

	mu        sync.Mutex
	etcd      *exec.Cmd
	apiserver *exec.Cmd
	etcdDone  chan struct{}
	apiDone   chan struct{}
	// StartTime is how long the last start took until /readyz answered.
	StartTime time.Duration
}

// Start runs etcd and kube-apiserver and waits until the API is ready.
// The ServiceAccount admission plugin is off (no controller-manager runs
// to create default service accounts), endpoints are not reconciled (no
// kubernetes Service for a loopback address), and every request is
// audited at Metadata level, so tests can tell what a client did.
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	c := &Cluster{
		tb:           tb,
		dir:          tb.TempDir(),
		etcdBin:      Etcd(tb),
		apiserverBin: Tool(tb, "kube-apiserver"),
	}
	c.etcdPort, c.etcdPeer, c.Port = freePort(tb), freePort(tb), freePort(tb)
	c.URL = fmt.Sprintf("https://127.0.0.1:%d", c.Port)
	c.writePKI()
	c.AuditLog = filepath.Join(c.dir, "audit.log")
	policy := filepath.Join(c.dir, "audit-policy.yaml")
	mustWrite(tb, policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n"))
	tb.Cleanup(c.stop)
	c.startEtcd()
	c.startAPIServer()
	var err error
	if c.Client, err = kubernetes.NewForConfig(c.Admin); err != nil {
		tb.Fatalf("admin client: %v", err)
	}
	return c
}

func (c *Cluster) path(name string) string { return filepath.Join(c.dir, name) }

func (c *Cluster) startEtcd() {
	c.tb.Helper()
	peer := fmt.Sprintf("http://127.0.0.1:%d", c.etcdPeer)
	client := fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort)
	cmd := exec.Command(c.etcdBin,
		"--name", "test",
		"--data-dir", c.path("etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test="+peer,
		"--log-outputs", c.path("etcd.log"), "--logger", "zap",
	)
	c.etcd, c.etcdDone = c.run(cmd, "etcd.out")
	waitTCP(c.tb, c.etcdPort, 20*time.Second, c.etcdDone, "etcd")
}

func (c *Cluster) startAPIServer() {
	c.tb.Helper()
	start := time.Now()
	cmd := exec.Command(c.apiserverBin,
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", c.etcdPort),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(c.Port),
		"--tls-cert-file", c.path("apiserver.crt"), "--tls-private-key-file", c.path("apiserver.key"),
		"--client-ca-file", c.path("ca.crt"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", c.path("sa.pub"),
		"--service-account-signing-key-file", c.path("sa.key"),
		"--authorization-mode", "RBAC",
		"--disable-admission-plugins", "ServiceAccount",
		"--endpoint-reconciler-type", "none",
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--audit-policy-file", c.path("audit-policy.yaml"),
		"--audit-log-path", c.AuditLog, "--audit-log-format", "json",
		"--audit-log-mode", "blocking",
		"--profiling=false",
		"--v=1",
	)
	c.apiserver, c.apiDone = c.run(cmd, "apiserver.log")
	admin := c.Admin
	if admin == nil {
		admin = &rest.Config{
			Host: c.URL,
			TLSClientConfig: rest.TLSClientConfig{
				CAFile: c.path("ca.crt"), CertFile: c.path("admin.crt"), KeyFile: c.path("admin.key"),
			},
			QPS: 100, Burst: 200,
			// Pod Security warnings on the agent's DaemonSet are expected
			// (its namespace warns at baseline).
			WarningHandler: rest.NoWarnings{},
		}
	}
	hc, err := rest.HTTPClientFor(admin)
	if err != nil {
		c.tb.Fatalf("admin http client: %v", err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := hc.Get(c.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-c.apiDone:
			c.tb.Fatalf("kube-apiserver exited:\n%s", tail(c.path("apiserver.log"), 4000))
		default:
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("kube-apiserver not ready after 90s (last: %v):\n%s", err, tail(c.path("apiserver.log"), 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.Admin = admin
	c.StartTime = time.Since(start)
}

// run starts cmd with its output in the cluster dir; done closes when it
// exits.
func (c *Cluster) run(cmd *exec.Cmd, logName string) (*exec.Cmd, chan struct{}) {
	c.tb.Helper()
	out, err := os.OpenFile(c.path(logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		c.tb.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(done)
	}()
	return cmd, done
}

// StopAPIServer stops kube-apiserver (etcd keeps the data), as an API
// outage does; RestartAPIServer brings it back on the same port.
func (c *Cluster) StopAPIServer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	terminate(c.apiserver, c.apiDone)
	c.apiserver = nil
}

// RestartAPIServer starts kube-apiserver again after StopAPIServer.
func (c *Cluster) RestartAPIServer() {
	c.tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.startAPIServer()
}

func (c *Cluster) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	terminate(c.apiserver, c.apiDone)
	terminate(c.etcd, c.etcdDone)
	if c.tb.Failed() {
		c.tb.Logf("kube-apiserver log (tail):\n%s", tail(c.path("apiserver.log"), 1500))
	}
}

func terminate(cmd *exec.Cmd, done chan struct{}) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// writePKI makes a CA, the API server's serving certificate, an admin
// client certificate and the service-account signing key.
func (c *Cluster) writePKI() {
	tb := c.tb
	tb.Helper()
	caKey := mustKey(tb)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "authprobe-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	c.CAFile = c.path("ca.crt")
	writeCert(tb, c.CAFile, caDER)

	issue := func(name string, serial int64, tmpl *x509.Certificate) {
		key := mustKey(tb)
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			tb.Fatal(err)
		}
		writeCert(tb, c.path(name+".crt"), der)
		writeKey(tb, c.path(name+".key"), key)
	}
	issue("apiserver", 2, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	})
	issue("admin", 3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "test-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	sa := mustKey(tb)
	writeKey(tb, c.path("sa.key"), sa)
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	mustWrite(tb, c.path("sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
}

// Token asks the API for a bound token of the service account ns/name, as
// the kubelet does for a pod's projected token.
func (c *Cluster) Token(ctx context.Context, ns, name string) (string, error) {
	exp := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", ns, name, err)
	}
	return tr.Status.Token, nil
}

// ServiceAccountConfig is a client config that authenticates as the
// service account ns/name with a fresh token.
func (c *Cluster) ServiceAccountConfig(tb testing.TB, ns, name string) *rest.Config {
	tb.Helper()
	token, err := c.Token(context.Background(), ns, name)
	if err != nil {
		tb.Fatal(err)
	}
	return &rest.Config{Host: c.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile}}
}

// WriteKubeconfig writes cfg (token or certificate auth) as a kubeconfig
// file, for a process such as the agent.
func WriteKubeconfig(tb testing.TB, cfg *rest.Config, path string) {
	tb.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthority: cfg.CAFile}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken, ClientCertificate: cfg.CertFile, ClientKey: cfg.KeyFile}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		tb.Fatal(err)
	}
}

func mustKey(tb testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func writeCert(tb testing.TB, path string, der []byte) {
	mustWrite(tb, path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func writeKey(tb testing.TB, path string, k *ecdsa.PrivateKey) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	mustWrite(tb, path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}

func mustWrite(tb testing.TB, path string, b []byte) {
	tb.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	return testutil.FreePort(tb)
}

func waitTCP(tb testing.TB, port int, timeout time.Duration, done chan struct{}, what string) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			conn.Close()
			return
		}
		select {
		case <-done:
			tb.Fatalf("%s exited before listening", what)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not listening on %d after %s: %v", what, port, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// AuditEvent is one line of the audit log, the fields tests read.
type AuditEvent struct {
	Verb string `json:"verb"`
	User struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		APIGroup    string `json:"apiGroup"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	RequestURI     string `json:"requestURI"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Annotations map[string]string `json:"annotations"`
}

// Audit returns the audit events of user so far.
func (c *Cluster) Audit(tb testing.TB, user string) []AuditEvent {
	tb.Helper()
	b, err := os.ReadFile(c.AuditLog)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Fatal(err)
	}
	var out []AuditEvent
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		var e AuditEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			tb.Fatalf("audit line %q: %v", line, err)
		}
		if e.User.Username == user {
			out = append(out, e)
		}
	}
	return out
}
