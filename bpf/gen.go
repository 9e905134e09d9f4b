package bpf

// The generated objects are committed so that `go build` needs no clang;
// `make generate` rebuilds them and CI fails when they drift. One object
// per hook family: lifecycle is always loaded, plus one capture backend;
// the maps they share are created once and handed to both.
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -Wpadded -mcpu=v3" -target amd64,arm64 -type conn_event -type data_event -type process_event -type route_key -type conn_state -type verdict -type watch_info -type counter -type event_type -type watch_flags lifecycle lifecycle.c
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -Wpadded -mcpu=v3" -target amd64,arm64 captureSock capture_sock.c
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -Wpadded -mcpu=v3" -target amd64,arm64 captureSyscalls capture_syscalls.c
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -Wpadded -mcpu=v3" -target amd64,arm64 captureFentry capture_fentry.c
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -Wpadded -mcpu=v3" -target amd64,arm64 -type go_tls_cfg captureTLS capture_tls.c
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -Wpadded -mcpu=v3" -target amd64,arm64 goRuntime go_runtime.c
