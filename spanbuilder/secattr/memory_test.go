package secattr

import (
	"fmt"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/config"
)

// memoryInputs have Outputs made of every kind of string Extract makes:
// body fields (a JSON username, an OAuth2 client id, grant type and error
// code), a query's fields, the username's hash.
func memoryInputs() []Input {
	form := []string{"Content-Type", "application/x-www-form-urlencoded"}
	json := []string{"Content-Type", "application/json"}
	return []Input{
		input(config.KindLogin, request("/login", "username=Alice%40Example.com&password=hunter2", form...),
			response(401, `{"error":"invalid_credentials"}`, json...), "failure"),
		input(config.KindLogin, request("/login", `{"user":{"email":"bob@example.com"},"password":"x"}`, json...),
			response(200, `{"token":"t"}`, json...), "success"),
		input(config.KindToken, request("/oauth/token", "grant_type=password&username=carol&client_id=web-app&password=p", form...),
			response(400, `{"error":"invalid_grant","error_description":"expired"}`, json...), "failure"),
		input(config.KindLogin, request("/login?username=dave", "", form...), response(401, ""), "failure"),
	}
}

func outputDump(out Output) string {
	var b strings.Builder
	fmt.Fprintf(&b, "client=%v subnet=%q result=%q reason=%q user=%x amb=%q", out.ClientAddr, out.ClientSubnet,
		out.Result, out.FailureReason, out.UserKey, out.Ambiguous)
	for _, kv := range out.Attributes {
		fmt.Fprintf(&b, " %s=%q", kv.Key, kv.Value.Emit())
	}
	return b.String()
}

// TestExtractMemory: an Output made in a Memory says what one made
// without it says, Memory after Memory reset and reused; and Reset wipes
// what the Output held.
func TestExtractMemory(t *testing.T) {
	for _, privacy := range []string{config.PrivacyHash, config.PrivacyPlain} {
		e := mustExtractor(t, config.Security{Username: config.UsernameConfig{Privacy: privacy}})
		var mem Memory
		for round := range 2 {
			for i, in := range memoryInputs() {
				want := outputDump(e.Extract(in))
				in.Memory = &mem
				out := e.Extract(in)
				if got := outputDump(out); got != want {
					t.Errorf("%s round %d input %d in a Memory:\n got  %s\n want %s", privacy, round, i, got, want)
				}
				mem.Reset()
				if len(out.Attributes) > 0 && out.Attributes[0].Key != "" {
					t.Errorf("%s input %d: Reset left the attributes", privacy, i)
				}
			}
		}
		if strings.Trim(string(mem.text[:cap(mem.text)]), "\x00") != "" {
			t.Errorf("%s: Reset left text in the Memory", privacy)
		}
	}
}

// TestExtractMemoryAllocations: a form login's Output made in a reused
// Memory allocates nothing.
func TestExtractMemoryAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	e := mustExtractor(t, config.Security{})
	in := memoryInputs()[0]
	in.Memory = new(Memory)
	if n := testing.AllocsPerRun(100, func() { e.Extract(in); in.Memory.Reset() }); n > 0 {
		t.Errorf("%.1f allocations per Extract in a reused Memory", n)
	}
}
