package kernels

import (
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// cpioWriter writes a newc ("070701") archive, the format the kernel
// unpacks as an initramfs. Archives may be concatenated: the kernel reads
// one after another, so a cached base (modules) and a per-boot payload
// (init, job, binaries) are written separately and joined.
type cpioWriter struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCPIO(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, dirs: map[string]bool{"": true, ".": true, "/": true}}
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeChar = 0o020000
)

func (c *cpioWriter) header(name string, mode, size, rmaj, rmin uint32) {
	if c.err != nil {
		return
	}
	name = strings.TrimPrefix(name, "/")
	c.ino++
	// ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, rmaj, rmin, len(name)+1, 0)
	c.write([]byte(hdr + name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
}

func (c *cpioWriter) write(p []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(p)
	}
}

func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// Dir adds name and its missing parents.
func (c *cpioWriter) Dir(name string) {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	if c.dirs[name] {
		return
	}
	c.Dir(path.Dir(name))
	c.dirs[name] = true
	c.header(name, modeDir|0o755, 0, 0, 0)
}

// File adds a regular file with data (parents created).
func (c *cpioWriter) File(name string, perm uint32, data []byte) {
	c.Dir(path.Dir(name))
	c.header(name, modeFile|perm, uint32(len(data)), 0, 0)
	c.write(data)
	c.pad(len(data))
}

// CopyFile adds the host file src as name.
func (c *cpioWriter) CopyFile(name string, perm uint32, src string) {
	if c.err != nil {
		return
	}
	f, err := os.Open(src)
	if err != nil {
		c.err = fmt.Errorf("cpio %s: %w", name, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		c.err = fmt.Errorf("cpio %s: %w", name, err)
		return
	}
	c.Dir(path.Dir(name))
	c.header(name, modeFile|perm, uint32(fi.Size()), 0, 0)
	if c.err == nil {
		if _, err := io.Copy(c.w, f); err != nil {
			c.err = fmt.Errorf("cpio %s: %w", name, err)
		}
	}
	c.pad(int(fi.Size()))
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) {
	c.Dir(path.Dir(name))
	c.header(name, modeChar|perm, 0, major, minor)
}

// Close writes the trailer and reports the first error.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	return c.err
}
