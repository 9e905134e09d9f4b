package pipeline

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/authprobe/authprobe/test/testutil"
)

// capBits are the capability numbers of linux/capability.h that the
// DaemonSet may name.
var capBits = map[string]uint{
	"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "KILL": 5,
	"SETGID": 6, "SETUID": 7, "NET_BIND_SERVICE": 10, "NET_ADMIN": 12, "NET_RAW": 13,
	"IPC_LOCK": 14, "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19,
	"SYS_ADMIN": 21, "SYS_RESOURCE": 24, "SYSLOG": 34, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

// daemonSetSecurity is the agent container's securityContext in
// deploy/kubernetes/agent-daemonset.yaml.
type daemonSetSecurity struct {
	RunAsUser                *int  `yaml:"runAsUser"`
	Privileged               *bool `yaml:"privileged"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	Capabilities             struct {
		Add  []string `yaml:"add"`
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
}

func mustDaemonSetSecurity(tb testing.TB) daemonSetSecurity {
	tb.Helper()
	b, err := os.ReadFile("../../deploy/kubernetes/agent-daemonset.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	var ds struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Name            string            `yaml:"name"`
						SecurityContext daemonSetSecurity `yaml:"securityContext"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		tb.Fatalf("agent-daemonset.yaml: %v", err)
	}
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "agent" {
			return c.SecurityContext
		}
	}
	tb.Fatal("agent-daemonset.yaml: no container named agent")
	return daemonSetSecurity{}
}

// withCaps is the setpriv prefix that runs a command as the DaemonSet's
// container does: uid 0, bounding set reduced to caps (so an exec as root
// gets exactly those as permitted and effective), nothing inheritable, and
// no_new_privs (allowPrivilegeEscalation: false).
func withCaps(tb testing.TB, caps []string) []string {
	tb.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		tb.Skip("setpriv (util-linux) not installed")
	}
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(c)
	}
	return []string{setpriv, "--inh-caps=-all", "--bounding-set=" + set, "--no-new-privs", "--"}
}

func capMask(tb testing.TB, caps []string) uint64 {
	tb.Helper()
	var m uint64
	for _, c := range caps {
		bit, ok := capBits[c]
		if !ok {
			tb.Fatalf("capability %s: unknown to this test", c)
		}
		m |= 1 << bit
	}
	return m
}

// procCaps reads a capability set (CapEff, CapBnd, ...) of a process.
func procCaps(pid int, set string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, set+":"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", set, pid)
}

// capsRun is what one agent run with a capability set did.
type capsRun struct {
	ready   bool
	span    bool   // a login became a span on stdout
	errLine string // the last stderr line when it exited early
	eff     uint64
	watch   string // the agent's "watching process" log line
}

// runWithCaps starts the agent under withCaps(caps) on the stdout exporter,
// watching srv, and reports whether it attached and produced a span for a
// failed login.
func runWithCaps(t *testing.T, bin, cfg string, srv *loginServer, caps []string, src string) capsRun {
	t.Helper()
	a := startAgent(t, withCaps(t, caps), bin, cfg, "--exporter", "stdout", "--pid", strconv.Itoa(srv.PID))
	var r capsRun
	if err := a.waitReady(30 * time.Second); err != nil {
		select {
		case <-a.exited:
		case <-time.After(5 * time.Second):
		}
		lines := strings.Split(strings.TrimSpace(a.stderr.String()), "\n")
		r.errLine = lines[len(lines)-1]
		return r
	}
	r.ready = true
	r.eff, _ = procCaps(a.PID, "CapEff")
	for _, l := range strings.Split(a.stderr.String(), "\n") {
		if strings.Contains(l, "watching process") || strings.Contains(l, "cannot watch") {
			_, r.watch, _ = strings.Cut(l, "msg=")
		}
	}
	st, id, _, err := newSource(src).login("http://"+srv.Addr, "alice", "wrong-password")
	if err != nil || st != 401 {
		t.Fatalf("login: status %d, %v", st, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && !r.span {
		for _, l := range strings.Split(a.stdout.String(), "\n") {
			if strings.Contains(l, `"auth.login"`) && strings.Contains(l, id) {
				r.span = true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return r
}

// TestAgentWithDaemonSetCapabilities runs the agent as the DaemonSet does:
// root with exactly the capabilities of its securityContext (parsed from
// deploy/kubernetes/agent-daemonset.yaml) and no_new_privs. It must attach
// and turn a login into a span; without CAP_BPF it must stop with one clear
// line. Each other capability is dropped in turn and what happens is
// logged (docs/pipeline.md records the findings).
func TestAgentWithDaemonSetCapabilities(t *testing.T) {
	testutil.MustRoot(t)
	sec := mustDaemonSetSecurity(t)
	if sec.RunAsUser == nil || *sec.RunAsUser != 0 || (sec.Privileged != nil && *sec.Privileged) ||
		sec.AllowPrivilegeEscalation == nil || *sec.AllowPrivilegeEscalation || !slices.Equal(sec.Capabilities.Drop, []string{"ALL"}) {
		t.Fatalf("DaemonSet securityContext changed shape (this test models uid 0, not privileged, no escalation, drop ALL): %+v", sec)
	}
	caps := sec.Capabilities.Add
	// A container cannot get more than its runtime's bounding set, nor can
	// this test: capabilities missing here are reported, not granted.
	own, err := procCaps(os.Getpid(), "CapBnd")
	if err != nil {
		t.Fatal(err)
	}
	var grantable, missing []string
	for _, c := range caps {
		if own&capMask(t, []string{c}) != 0 {
			grantable = append(grantable, c)
		} else {
			missing = append(missing, c)
		}
	}
	t.Logf("DaemonSet capabilities: %v; not in this test's own bounding set, so absent: %v", caps, missing)

	bin := mustBuildAgent(t)
	cfg := mustWriteAgentConfig(t, "caps")
	// The service runs as another user, as applications do: /proc/<pid>/exe
	// and its files are then behind the ptrace and DAC checks that
	// SYS_PTRACE and DAC_READ_SEARCH are granted for.
	srv := mustStartLoginServer(t, 65534)

	t.Run("DaemonSet set", func(t *testing.T) {
		r := runWithCaps(t, bin, cfg, srv, caps, "127.0.6.10")
		if !r.ready {
			t.Fatalf("agent did not attach with %v: %s", caps, r.errLine)
		}
		if want := capMask(t, grantable); r.eff != want {
			t.Errorf("agent CapEff %#x, want %#x (%v): the setpriv wrapper does not model the container", r.eff, want, grantable)
		}
		t.Logf("with %v: %s", grantable, r.watch)
		// SYS_PTRACE is what lets it read another user's /proc/<pid>/exe.
		if !strings.Contains(r.watch, "exe=/") {
			t.Errorf("agent did not resolve the service's executable: %s", r.watch)
		}
		if !r.span {
			t.Errorf("attached with %v but no span for a failed login", caps)
		}
	})

	for i, drop := range grantable {
		rest := slices.Delete(slices.Clone(grantable), i, i+1)
		t.Run("without "+drop, func(t *testing.T) {
			r := runWithCaps(t, bin, cfg, srv, rest, fmt.Sprintf("127.0.6.%d", 20+i))
			switch {
			case !r.ready:
				t.Logf("without CAP_%s: does not start: %s", drop, r.errLine)
			case !r.span:
				t.Logf("without CAP_%s: attaches but no span for a login", drop)
			default:
				t.Logf("without CAP_%s: attaches and produces spans; %s", drop, r.watch)
			}
			if drop != "BPF" {
				return
			}
			if r.ready {
				t.Fatal("agent attached without CAP_BPF")
			}
			if !strings.HasPrefix(r.errLine, "authprobe: ") || !strings.Contains(r.errLine, "CAP_BPF") {
				t.Errorf("without CAP_BPF the last line is %q, want one \"authprobe: ...\" line naming CAP_BPF", r.errLine)
			}
		})
	}
}
