package chain

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkClientCapture measures what capturing a service's own calls
// costs it (issue 12: "calls outside an auth request cost no more than
// today's non-auth traffic"): each backend straight (no gateway), against
// PostgreSQL of its own, first without any agent of this benchmark
// (baseline), then watched by a fresh agent from before it started
// (agent, its defaults), and the Go backend once more watched by an agent
// with the goroutine-creation probes (agent-go-spawns, --go-spawns). One
// environment at a time: an agent loaded for one mode would tax the
// others' socket I/O. Workloads:
//
//   - health: GET /health, no database (today's non-auth traffic);
//   - stats: GET /stats, one query outside any auth request;
//   - login: POST /login, one query inside an auth request (captured);
//   - document: GET /api/documents/1, five queries inside an auth request
//     (in Go on a goroutine the handler spawns).
//
// Per request it reports the wall time (ns/op, 16 clients in parallel),
// the backend's CPU time (user+system from /proc: the kernel side runs in
// its syscalls) and the agent's; the agent rows add x-baseline, their
// ns/op over the baseline row's, and cpu-x-baseline, the backend's CPU
// over the baseline's. It measures, never asserts. Run as root:
//
//	make bench-client
//	go test -run '^$' -bench BenchmarkClientCapture -benchtime 5s ./test/chain/
func BenchmarkClientCapture(b *testing.B) {
	langs := testLangs()
	if len(langs) == 0 {
		langs = []string{Go, Python}
	}
	type mode struct {
		name  string
		agent bool
		args  []string
		langs []string
	}
	modes := []mode{{"baseline", false, nil, langs}, {"agent", true, nil, langs}}
	if slices.Contains(langs, Go) {
		modes = append(modes, mode{"agent-go-spawns", true, []string{"--go-spawns"}, []string{Go}})
	}
	type base struct{ wall, cpu float64 }
	baseline := map[string]base{}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			env := startBenchEnv(b, m.langs, m.agent, m.args...)
			for _, lang := range m.langs {
				be := env.backends[lang]
				token := mustLogin(b, http.DefaultClient, be.URL(""), "alice", "correct-horse")
				for _, w := range []string{"health", "stats", "login", "document"} {
					b.Run(lang+"/"+w, func(b *testing.B) {
						req := benchRequest(w, token)
						cpu0, agent0 := procCPU(be.PID), env.agentCPU()
						start := time.Now()
						b.SetParallelism(8)
						b.ResetTimer()
						b.RunParallel(func(pb *testing.PB) {
							c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
							for pb.Next() {
								if err := req(c, be.URL("")); err != nil {
									b.Error(err)
									return
								}
							}
						})
						b.StopTimer()
						wall := float64(time.Since(start).Nanoseconds()) / float64(b.N)
						cpu := (procCPU(be.PID) - cpu0) / float64(b.N) * 1e6
						b.ReportMetric(cpu, "backend-cpu-µs/op")
						key := lang + "/" + w
						if env.agent == nil {
							baseline[key] = base{wall, cpu}
							return
						}
						b.ReportMetric((env.agentCPU()-agent0)/float64(b.N)*1e6, "agent-cpu-µs/op")
						if bl, ok := baseline[key]; ok && bl.wall > 0 && bl.cpu > 0 {
							b.ReportMetric(wall/bl.wall, "x-baseline")
							b.ReportMetric(cpu/bl.cpu, "cpu-x-baseline")
						}
					})
				}
			}
			if env.agent != nil {
				m := env.agent.Metrics(b)
				b.Logf("%s counters: client_captured %.0f, client_outside %.0f, client_spawned %.0f, go_spawned %.0f", env.mode,
					kernelCounter(m, "client_captured"), kernelCounter(m, "client_outside"),
					kernelCounter(m, "client_spawned"), kernelCounter(m, "go_spawned"))
			}
		})
	}
}

// benchEnv is one database and the backends on it, watched or not.
type benchEnv struct {
	mode     string // baseline or agent
	agent    *Agent
	backends map[string]*Backend
}

func startBenchEnv(b *testing.B, langs []string, withAgent bool, args ...string) *benchEnv {
	b.Helper()
	pg := MustStartPostgres(b, PostgresOptions{})
	env := &benchEnv{mode: "baseline", backends: map[string]*Backend{}}
	ports := map[string]int{}
	var targets []AgentTarget
	for _, lang := range langs {
		ports[lang] = FreePort(b)
		targets = append(targets, AgentTarget{Port: ports[lang]})
	}
	if withAgent {
		env.mode = "agent"
		env.agent = MustStartAgent(b, targets, args...)
	}
	var pids []int
	for _, lang := range langs {
		be := MustStartBackend(b, pg, BackendOptions{Lang: lang, Port: ports[lang], PollInterval: -1, Threads: 16})
		env.backends[lang] = be
		pids = append(pids, be.PID)
	}
	if env.agent != nil {
		env.agent.WaitWatching(b, pids, 20*time.Second)
	}
	return env
}

func (e *benchEnv) agentCPU() float64 {
	if e.agent == nil {
		return 0
	}
	return procCPU(e.agent.cmd.Process.Pid)
}

// benchRequest is one request of workload w, checked for its status.
func benchRequest(w, token string) func(*http.Client, string) error {
	var method, path, body string
	want := 200
	switch w {
	case "health":
		method, path = "GET", "/health"
	case "stats":
		method, path = "GET", "/stats"
	case "login":
		method, path, body = "POST", "/login", form("alice", "correct-horse")
	case "document":
		method, path = "GET", "/api/documents/1"
	}
	return func(c *http.Client, base string) error {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			return err
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if w == "document" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			return fmt.Errorf("%s %s = %d, want %d", method, path, resp.StatusCode, want)
		}
		return nil
	}
}

// procCPU is the user+system CPU seconds of process pid and its threads
// so far (/proc/PID/stat fields 14 and 15, in clock ticks of 1/100 s).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}
