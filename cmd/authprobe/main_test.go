package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/authprobe/authprobe/config"
)

// TestCommandLineErrors: a mistake on the command line or in the config
// is one clear line on stderr and a non-zero exit, never a stack trace.
func TestCommandLineErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("routes:\n  - name: auth.login\n    kind: logn\n    path: /login\ntargets:\n  - pid: 1\n"), 0o600))

	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no command", nil, 2, "Usage:"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"run without config", []string{"run"}, 2, "--config FILE is required"},
		{"bad pid", []string{"run", "--config", bad, "--pid", "x"}, 2, `"x" is not a process id`},
		{"bad exporter", []string{"run", "--config", bad, "--exporter", "kafka"}, 2, `--exporter "kafka"`},
		{"missing file", []string{"run", "--config", filepath.Join(dir, "nope.yaml")}, 1, "nope.yaml"},
		{"bad kind with line", []string{"run", "--config", bad}, 1, `bad.yaml:3: routes[0].kind: "logn" is not one of`},
		{"bad log level", []string{"run", "--config", bad, "--log-level", "loud"}, 2, `--log-level "loud"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			require.Equal(t, tt.code, code, "stderr: %s", stderr.String())
			require.Contains(t, stderr.String(), tt.stderr)
			require.NotContains(t, stderr.String(), "goroutine ", "no stack traces")
			require.Empty(t, stdout.String(), "stdout is for spans only")
		})
	}
}

// TestCheckReportsBadConfig: check says what is wrong and exits 1.
func TestCheckReportsBadConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("capture_bytes: 99999999\nroutes: []\n"), 0o600))
	var stdout, stderr bytes.Buffer
	code := run([]string{"check", "--config", bad}, &stdout, &stderr)
	require.Equal(t, 1, code)
	out := stdout.String()
	require.Contains(t, out, "INVALID")
	require.Contains(t, out, "capture_bytes")
	require.Contains(t, out, "kernel:")
	require.True(t, strings.Contains(out, "verdict:"), out)
}

func TestRoutePrefixes(t *testing.T) {
	tests := map[string]string{
		"/login":            "/login",
		"/api/**":           "/api/",
		"/users/{id}/login": "/users/",
		"/*/token":          "/",
	}
	for path, want := range tests {
		got := routePrefixes([]config.Route{{Method: "POST", Path: path}})
		require.Equal(t, []string{want}, got, path)
	}
}
