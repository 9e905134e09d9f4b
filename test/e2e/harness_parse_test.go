package e2e

import "testing"

// TestParseSpans checks the harness's reading of the stdout exporter, so
// that the agent tests fail for the agent's reasons only.
func TestParseSpans(t *testing.T) {
	const line = `{"name":"auth.login","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331",` +
		`"parent_span_id":"","kind":"SERVER","start_time_unix_nano":1700000000000000000,"end_time_unix_nano":"1700000000000000500",` +
		`"status_code":"ERROR","attributes":{"auth.result":"failure","http.response.status_code":401,"auth.roles":["a","b"],"auth.session.issued":false},` +
		`"resource":{"process.pid":42}}`
	tests := []struct {
		name    string
		out     string
		want    int
		wantErr bool
	}{
		{name: "empty", out: "", want: 0},
		{name: "one", out: line + "\n", want: 1},
		{name: "partial last line waits", out: line + "\n" + line[:20], want: 1},
		{name: "two", out: line + "\n" + line + "\n", want: 2},
		{name: "log line on stdout", out: "starting\n" + line + "\n", wantErr: true},
		{name: "blank line", out: line + "\n\n", wantErr: true},
		{name: "nameless object", out: "{}\n", wantErr: true},
		{name: "two values on a line", out: line + line + "\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spans, err := parseSpans(tc.out)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err == nil && len(spans) != tc.want {
				t.Fatalf("got %d spans, want %d", len(spans), tc.want)
			}
		})
	}

	spans, err := parseSpans(line + "\n")
	if err != nil {
		t.Fatal(err)
	}
	sp := spans[0]
	for name, want := range map[string]string{
		"auth.result":               "failure",
		"http.response.status_code": "401",
		"auth.roles":                `["a","b"]`,
		"auth.session.issued":       "false",
		"missing":                   "",
	} {
		if got := sp.Attr(name); got != want {
			t.Errorf("Attr(%q) = %q, want %q", name, got, want)
		}
	}
	if n, ok := sp.IntAttr("http.response.status_code"); !ok || n != 401 {
		t.Errorf("IntAttr = %d, %v", n, ok)
	}
	if _, ok := sp.IntAttr("auth.result"); ok {
		t.Error("IntAttr of a string attribute succeeded")
	}
	if sp.ResourceAttr("process.pid") != "42" || string(sp.Kind) != "SERVER" {
		t.Errorf("resource pid %q kind %q", sp.ResourceAttr("process.pid"), sp.Kind)
	}
	if d := sp.End().Sub(sp.Start()); d != 500 {
		t.Errorf("duration %v, want 500ns", d)
	}
}
