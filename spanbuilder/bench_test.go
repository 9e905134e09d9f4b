package spanbuilder

import (
	"testing"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
	"github.com/authprobe/authprobe/test/testutil"
)

// BenchmarkStageSpan is the span stage of the agent's path (`make
// bench-stages`): exchange → span through the Chain, as the pipeline
// drives it (the request head opened, the exchange built, the span given
// back once exported), with privacy hash on. form is the whole-path
// benchmark's failed form login; jwt an authorize request with a bearer
// token. cpu-ns/op is the process's CPU time per span.
func BenchmarkStageSpan(b *testing.B) {
	const token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE3OTYxOTQ3MjgsImlhdCI6MTc5NjE5MTEyOCwicm9sZSI6InVzZXIiLCJyb2xlcyI6WyJ1c2VyIl0sInN1YiI6ImFsaWNlIn0.wk0ICMCdUEsIZeUm7ECi-8vSRWJp3UGzydnGADBPL9M"
	for _, tt := range []struct {
		name string
		ex   *decoder.Exchange
	}{
		{"form", exchange("POST", "/login", hdr("Host", "127.0.0.1:8080", "Content-Type", "application/x-www-form-urlencoded"),
			"username=alice&password=wrong-horse!", 401, hdr("Content-Type", "application/json"), `{"error":"invalid_credentials"}`)},
		{"jwt", exchange("GET", "/api/orders/7", hdr("Host", "127.0.0.1:8080", "Authorization", "Bearer "+token),
			"", 200, hdr("Content-Type", "application/json"), `{"orders":[]}`)},
	} {
		b.Run(tt.name, func(b *testing.B) {
			bl := mustBuilder(b, func(c *Config) {
				c.Routes = []config.Route{
					{Name: "auth.login", Kind: config.KindLogin, Method: "POST", Path: "/login"},
					{Name: "auth.authorize", Kind: config.KindAuthorize, Path: "/api/**"},
				}
				hashedUsernames(c)
			})
			ch := NewChain(bl, ChainConfig{})
			p := Process{PID: 42, Exe: "/usr/local/bin/goserver", ServiceName: "goserver"}
			ex := *tt.ex
			o := decoder.Opened{Conn: ex.Conn, PID: ex.PID, Task: ex.Task, Request: ex.Request}
			spans := make([]Span, 0, 1)
			b.ReportAllocs()
			cpu0 := testutil.ProcessCPU(b)
			for b.Loop() {
				o.ID++
				o.Start += 10_000
				ex.ID, ex.RequestStart, ex.RequestEnd = o.ID, o.Start, o.Start+1000
				ex.ResponseStart, ex.ResponseEnd = o.Start+2000, o.Start+3000
				ch.Opened(&o)
				spans = ch.Exchange(&ex, p, spans[:0])
				if len(spans) != 1 {
					b.Fatalf("%d spans", len(spans))
				}
				bl.Release(&spans[0])
			}
			b.ReportMetric(float64(testutil.ProcessCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
