// Package memtrim gives back resident memory that only start-up needed,
// and says what the resident set is made of. It takes a process's memory
// map (/proc/self/smaps) and gives the bytes of its own executable it
// unmapped from the page tables, or the resident bytes by part.
//
// Start-up runs code and reads tables the steady agent never touches
// again: package initialisation (the Kubernetes client's registers
// hundreds of types), loading the eBPF programs, the flag and config
// code. The kernel maps 64 KiB around each page fault, so most of the
// 44 MB binary ends up resident. Those pages are clean copies of the
// file: dropping them from the page tables (MADV_DONTNEED) loses nothing,
// the page cache keeps the file, and a page the agent needs again is
// mapped back on its next touch at the cost of a minor fault.
package memtrim

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/authprobe/authprobe/bpf/uprobe"
)

// Mapping is one region of a memory map with what Executable needs to
// decide whether dropping it is safe.
type Mapping struct {
	uprobe.Mapping
	Rss       uint64 // bytes
	Anonymous uint64 // bytes: copy-on-write pages that exist nowhere else
}

// droppable reports whether m's pages are clean file pages of exe: read
// only, never written (no anonymous copies, which MADV_DONTNEED would
// discard), and resident.
func (m Mapping) droppable(exe string) bool {
	return m.Path == exe && m.Perms[1] == '-' && m.Anonymous == 0 && m.Rss > 0
}

// Executable drops the read-only mappings of the running executable from
// the page tables and reports the resident bytes they held.
func Executable() (uint64, error) {
	maps, exe, err := self()
	if err != nil {
		return 0, err
	}
	var dropped uint64
	for _, m := range maps {
		if !m.droppable(exe) {
			continue
		}
		// The raw syscall: the region is code this process is running,
		// never a Go slice.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.Start), uintptr(m.End-m.Start), unix.MADV_DONTNEED); errno != 0 {
			return dropped, fmt.Errorf("madvise %#x-%#x: %w", m.Start, m.End, errno)
		}
		dropped += m.Rss
	}
	return dropped, nil
}

// Parts is a resident set by what its pages are.
type Parts struct {
	// Executable: pages of the executable file (code, read-only data,
	// its data segment).
	Executable uint64
	// BPFMaps: BPF maps mapped into the process: the ring buffer's
	// data pages (mapped once, bpf/ring) and its two position pages.
	BPFMaps uint64
	// Other: heap, stacks, everything else.
	Other uint64
}

// Resident reads this process's resident set by part.
func Resident() (Parts, error) {
	maps, exe, err := self()
	if err != nil {
		return Parts{}, err
	}
	return Split(maps, exe), nil
}

// Split sums the resident bytes of maps by part; exe is the executable's
// path as the maps name it.
func Split(maps []Mapping, exe string) Parts {
	var p Parts
	for _, m := range maps {
		switch {
		case m.Path == exe:
			p.Executable += m.Rss
		case m.Path == "anon_inode:bpf-map":
			p.BPFMaps += m.Rss
		default:
			p.Other += m.Rss
		}
	}
	return p
}

// self reads this process's memory map and its executable's path.
func self() ([]Mapping, string, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, "", fmt.Errorf("read own executable: %w", err)
	}
	// The maps name an unlinked file without the suffix (Deleted).
	exe = strings.TrimSuffix(exe, " (deleted)")
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, "", fmt.Errorf("read own memory map: %w", err)
	}
	defer f.Close()
	maps, err := ParseSmaps(f)
	if err != nil {
		return nil, "", fmt.Errorf("read own memory map: %w", err)
	}
	return maps, exe, nil
}

// ParseSmaps reads the regions of a /proc/PID/smaps file. A region's
// header is a /proc/PID/maps line; its fields follow as "Name: value kB"
// lines.
func ParseSmaps(r io.Reader) ([]Mapping, error) {
	var (
		out []Mapping
		cur *Mapping
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		name, value, isField := field(line)
		if isField {
			if cur == nil {
				return nil, fmt.Errorf("smaps: field %q before any region", name)
			}
			switch name {
			case "Rss":
				cur.Rss = value
			case "Anonymous":
				cur.Anonymous = value
			}
			continue
		}
		m, err := uprobe.ParseMapsLine(string(line))
		if err != nil {
			return nil, fmt.Errorf("smaps region %q: %w", line, err)
		}
		out = append(out, Mapping{Mapping: m})
		cur = &out[len(out)-1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("smaps: %w", err)
	}
	return out, nil
}

// field parses "Name:   123 kB" into bytes. Lines without a kB value
// (VmFlags, THPeligible) are fields too, with no value.
func field(line []byte) (name string, value uint64, ok bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || bytes.IndexByte(line[:colon], ' ') >= 0 {
		return "", 0, false
	}
	name = string(line[:colon])
	rest := bytes.TrimSpace(line[colon+1:])
	num, unit, found := bytes.Cut(rest, []byte(" "))
	if !found || string(unit) != "kB" {
		return name, 0, true
	}
	n, err := strconv.ParseUint(string(num), 10, 64)
	if err != nil {
		return name, 0, true
	}
	return name, n << 10, true
}
