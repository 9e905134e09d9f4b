package bpf

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
)

// goServerEnv makes the test binary a Go net/http server instead (see
// startGoServer): a real Go server, with its background reads.
const goServerEnv = "AUTHPROBE_BPF_TEST_GOSERVER"

func TestMain(m *testing.M) {
	if os.Getenv(goServerEnv) == "1" {
		runGoServer()
		return
	}
	os.Exit(m.Run())
}

func runGoServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Error(w, "invalid_credentials", http.StatusUnauthorized)
	})
	fmt.Printf("listening %d\n", ln.Addr().(*net.TCPAddr).Port)
	_ = http.Serve(ln, mux)
}
