// Package e2e runs the built agent against real, uninstrumented login
// services (test/servers) and real clients on loopback, and checks the spans
// it prints. It takes the agent binary, server programs and client source
// addresses in 127.0.0.0/8, and gives pass/fail; everything lives in its
// tests. Tests that load eBPF programs need root and skip otherwise.
//
//	go test ./test/e2e/ -run TestServersAnswer -v   # unprivileged
//	sudo go test ./test/e2e/ -v                     # everything
package e2e
