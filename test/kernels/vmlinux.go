package kernels

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
)

// compressions the kernel's boot image may wrap vmlinux in: magic and
// the decompressor that reads it from stdin.
func compressions() []struct {
	magic []byte
	tool  []string
} {
	return []struct {
		magic []byte
		tool  []string
	}{
		{[]byte("\xfd7zXZ\x00"), []string{"xz", "-dc", "--single-stream"}},
		{[]byte("\x28\xb5\x2f\xfd"), []string{"zstd", "-dc"}},
		{[]byte("\x1f\x8b\x08"), []string{"gzip", "-dc"}},
	}
}

// extractVmlinux finds the compressed vmlinux inside an x86 bzImage and
// decompresses it on the host. qemu boots the ELF directly through its
// PVH entry (CONFIG_PVH), which saves the guest from decompressing itself
// under emulation (about 15 s for Debian 6.1's xz). Decompressors stop
// at the stream's end or complain about what follows it; the result
// counts when it is an ELF executable.
func extractVmlinux(bzImage []byte) ([]byte, error) {
	for _, c := range compressions() {
		for off := 0; ; {
			i := bytes.Index(bzImage[off:], c.magic)
			if i < 0 {
				break
			}
			off += i
			cmd := exec.Command(c.tool[0], c.tool[1:]...)
			cmd.Stdin = bytes.NewReader(bzImage[off:])
			out, _ := cmd.Output() // trailing data makes some tools fail after a full stream
			if f, err := elf.NewFile(bytes.NewReader(out)); err == nil && f.Type == elf.ET_EXEC {
				return out, nil
			}
			off++
		}
	}
	return nil, fmt.Errorf("no compressed vmlinux found in the boot image")
}

// writeVmlinux extracts vmlinux from bzImage into path.
func writeVmlinux(bzImage, path string) error {
	data, err := os.ReadFile(bzImage)
	if err != nil {
		return fmt.Errorf("read boot image: %w", err)
	}
	elfData, err := extractVmlinux(data)
	if err != nil {
		return err
	}
	return writeAtomic(path, elfData)
}
