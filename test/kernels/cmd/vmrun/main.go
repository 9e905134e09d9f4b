// Command vmrun boots one kernel of the matrix under qemu and runs one
// command in it, with the console on stdout; its exit status is the
// command's. For trying things by hand:
//
//	go run ./test/kernels/cmd/vmrun -kernel 6.1 -- uname -a
//	go run ./test/kernels/cmd/vmrun -kernel arm64-6.12 -file /bin/hello=./hello-arm64 -- /bin/hello
//
// amd64 kernels get the host's / read-only (the command runs in the
// current directory); arm64 kernels run from the initramfs, so their
// binaries are passed with -file.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/authprobe/authprobe/test/kernels"
	"github.com/authprobe/authprobe/test/kernels/guest"
)

type fileFlags []kernels.PayloadFile

func (f *fileFlags) String() string { return fmt.Sprint(*f) }
func (f *fileFlags) Set(s string) error {
	g, h, ok := strings.Cut(s, "=")
	if !ok || !strings.HasPrefix(g, "/") {
		return fmt.Errorf("want /guest/path=host-path, got %q", s)
	}
	*f = append(*f, kernels.PayloadFile{Guest: g, Host: h})
	return nil
}

type envFlags []string

func (e *envFlags) String() string { return strings.Join(*e, " ") }
func (e *envFlags) Set(s string) error {
	if !strings.Contains(s, "=") {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	*e = append(*e, s)
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vmrun:", err)
		os.Exit(2)
	}
}

func run() error {
	name := flag.String("kernel", "6.1", "kernel of the matrix")
	cpus := flag.Int("cpus", 2, "guest CPUs")
	mem := flag.Int("mem", 2048, "guest memory (MiB)")
	timeout := flag.Duration("timeout", 10*time.Minute, "whole boot")
	var files fileFlags
	flag.Var(&files, "file", "/guest/path=host-path copied into the initramfs (repeatable)")
	var env envFlags
	flag.Var(&env, "env", "KEY=VALUE for the command (repeatable)")
	flag.Parse()
	if flag.NArg() == 0 {
		return fmt.Errorf("no command (after --)")
	}
	ks, err := kernels.Select(kernels.DefaultMatrix(), *name)
	if err != nil {
		return err
	}
	k := ks[0]
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	dirs, err := kernels.DirsFromEnv(cwd)
	if err != nil {
		return err
	}
	m, err := kernels.MachineFor(k.Arch)
	if err != nil {
		return err
	}
	pkg, err := kernels.Resolve(k.Meta, k.Arch)
	if err != nil {
		return err
	}
	var mods []string
	if k.Root == guest.RootHost {
		mods = m.Modules
	}
	start := time.Now()
	img, err := kernels.Prepare(dirs.Cache, pkg, mods)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "vmrun: %s %s prepared in %.1fs (%s)\n", pkg.Name, pkg.Version, time.Since(start).Seconds(), strings.Join(img.Stages, ", "))
	work, err := os.MkdirTemp("", "vmrun-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	initBin := filepath.Join(work, "init")
	if err := kernels.GoBuild(k.Arch, initBin, "./test/kernels/guest/init", false); err != nil {
		return err
	}
	job := kernels.NewJob(k.Root, os.Environ())
	step := guest.Step{Name: "cmd", Argv: flag.Args(), Env: env, TimeoutSeconds: int(timeout.Seconds())}
	if k.Root == guest.RootHost {
		step.Dir = cwd
	}
	job.Steps = []guest.Step{step}
	res, err := kernels.Boot(context.Background(), kernels.BootConfig{
		Image: img, Machine: m, Init: initBin, Job: job, Payload: files,
		CPUs: *cpus, MemoryMB: *mem, Timeout: *timeout, ShareHost: k.Root == guest.RootHost,
		Output: os.Stdout, WorkDir: work,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "vmrun: %s (%s %s): boot %.1fs (guest uptime %.1fs at ready), total %.1fs\n",
		k.Name, pkg.Name, pkg.Version, res.Boot.Seconds(), res.GuestBoot, res.Total.Seconds())
	if err := res.Err(); err != nil {
		return err
	}
	if len(res.Steps) != 1 {
		return fmt.Errorf("want one step result, got %d", len(res.Steps))
	}
	st := res.Steps[0]
	fmt.Fprintf(os.Stderr, "vmrun: command: exit %d %s in %.1fs\n", st.Exit, st.Error, st.Seconds)
	if !st.OK() {
		if st.Exit > 0 {
			os.Exit(st.Exit)
		}
		os.Exit(1)
	}
	return nil
}
