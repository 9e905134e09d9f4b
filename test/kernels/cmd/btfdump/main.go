// Command btfdump writes a C header of a matrix kernel's types (its BTF,
// taken from the Debian package's kernel image) for CO-RE programs:
//
//	go run ./test/kernels/cmd/btfdump -kernel arm64-6.12 -o bpf/headers/vmlinux_arm64.h
//
// It needs bpftool (Debian package bpftool) and the apt setup of
// test/kernels/README.md. -btf also keeps the raw BTF.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"

	"github.com/authprobe/authprobe/test/kernels"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "btfdump:", err)
		os.Exit(1)
	}
}

func run() error {
	name := flag.String("kernel", "arm64-6.12", "kernel of the matrix")
	out := flag.String("o", "", "header to write")
	rawOut := flag.String("btf", "", "also write the raw BTF here")
	flag.Parse()
	if *out == "" {
		return fmt.Errorf("-o is required")
	}
	ks, err := kernels.Select(kernels.DefaultMatrix(), *name)
	if err != nil {
		return err
	}
	k := ks[0]
	dirs, err := kernels.DirsFromEnv(kernels.ModuleRoot())
	if err != nil {
		return err
	}
	pkg, err := kernels.Resolve(k.Meta, k.Arch)
	if err != nil {
		return err
	}
	img, err := kernels.Prepare(dirs.Cache, pkg, nil)
	if err != nil {
		return err
	}
	// The amd64 vmlinux is an ELF, arm64's Image raw; the BTF bytes are
	// in either.
	data, err := os.ReadFile(img.Kernel)
	if err != nil {
		return err
	}
	raw, err := kernels.ExtractBTF(data)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp("", "btf-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(raw); err != nil {
		return err
	}
	tmp.Close()
	if *rawOut != "" {
		if err := os.WriteFile(*rawOut, raw, 0o644); err != nil {
			return err
		}
	}
	var stderr bytes.Buffer
	cmd := exec.Command("bpftool", "btf", "dump", "file", tmp.Name(), "format", "c")
	cmd.Stderr = &stderr
	header, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("bpftool btf dump: %w: %s", err, stderr.String())
	}
	banner := fmt.Sprintf("/* Kernel types of %s %s (%s), from its BTF: go run ./test/kernels/cmd/btfdump -kernel %s */\n",
		pkg.Name, pkg.Version, pkg.Arch, k.Name)
	if err := os.WriteFile(*out, append([]byte(banner), header...), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "btfdump: %s: %d bytes of BTF from %s %s -> %s\n", k.Name, len(raw), pkg.Name, pkg.Version, *out)
	return nil
}
