package bpf

// The generated objects are committed so that `go build` needs no clang;
// `make generate` rebuilds them and CI fails when they drift.
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -Wpadded" -target amd64 -type conn_event -type data_event -type process_event -type route_key -type conn_state -type counter -type event_type authprobe authprobe.c -- -I./headers
