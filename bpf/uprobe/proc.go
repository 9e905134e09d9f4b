package uprobe

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      string // "r-xp"
	Offset     uint64 // file offset of Start
	Dev        uint64 // unix.Mkdev(major, minor), as stat's st_dev
	Inode      uint64
	Path       string // as the process sees it; "" for anonymous memory
	Deleted    bool   // the file was unlinked after it was mapped
}

// Exec reports whether the mapping is executable.
func (m Mapping) Exec() bool { return len(m.Perms) >= 3 && m.Perms[2] == 'x' }

// maxMapsLines bounds what is read of one process's maps.
const maxMapsLines = 1 << 16

// ParseMaps parses the text of /proc/PID/maps. Lines it cannot parse are
// an error: the format is the kernel's, not the process's.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 0; sc.Scan(); n++ {
		if n >= maxMapsLines {
			return nil, fmt.Errorf("maps: more than %d lines", maxMapsLines)
		}
		m, err := ParseMapsLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("maps line %d: %w", n+1, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read maps: %w", err)
	}
	return out, nil
}

var errMapsLine = errors.New("malformed maps line")

// ParseMapsLine parses "start-end perms offset major:minor inode   path",
// a line of /proc/PID/maps and the header of each region in
// /proc/PID/smaps. The path is everything after the inode's padding and
// may hold spaces.
func ParseMapsLine(line string) (Mapping, error) {
	var m Mapping
	fields := make([]string, 0, 5)
	rest := line
	for len(fields) < 5 {
		rest = strings.TrimLeft(rest, " ")
		f, r, _ := strings.Cut(rest, " ")
		if f == "" {
			return m, errMapsLine
		}
		fields = append(fields, f)
		rest = r
	}
	start, end, ok := strings.Cut(fields[0], "-")
	if !ok {
		return m, errMapsLine
	}
	var err error
	if m.Start, err = strconv.ParseUint(start, 16, 64); err != nil {
		return m, errMapsLine
	}
	if m.End, err = strconv.ParseUint(end, 16, 64); err != nil || m.End < m.Start {
		return m, errMapsLine
	}
	if len(fields[1]) != 4 {
		return m, errMapsLine
	}
	m.Perms = fields[1]
	if m.Offset, err = strconv.ParseUint(fields[2], 16, 64); err != nil {
		return m, errMapsLine
	}
	major, minor, ok := strings.Cut(fields[3], ":")
	if !ok {
		return m, errMapsLine
	}
	maj, err1 := strconv.ParseUint(major, 16, 32)
	mnr, err2 := strconv.ParseUint(minor, 16, 32)
	if err1 != nil || err2 != nil {
		return m, errMapsLine
	}
	m.Dev = unix.Mkdev(uint32(maj), uint32(mnr))
	if m.Inode, err = strconv.ParseUint(fields[4], 10, 64); err != nil {
		return m, errMapsLine
	}
	m.Path = strings.TrimLeft(rest, " ")
	if p, ok := strings.CutSuffix(m.Path, " (deleted)"); ok && m.Inode != 0 {
		m.Path, m.Deleted = p, true
	}
	return m, nil
}

// FileID is a file's identity on the node: the uprobe set of a library is
// attached once per FileID and serves every process that maps it, in any
// container.
type FileID struct {
	Dev   uint64
	Inode uint64
}

func (id FileID) String() string {
	return fmt.Sprintf("%d:%d:%d", unix.Major(id.Dev), unix.Minor(id.Dev), id.Inode)
}

// MappedFile is a file a process maps, with a path the agent can open
// from its own mount namespace.
type MappedFile struct {
	ID   FileID
	Path string // as the process sees it
	// OpenPath reaches the same file from the agent:
	// /proc/PID/root/PATH when that is the mapped file, else
	// /proc/PID/map_files/START-END (deleted or replaced files).
	OpenPath string
	// Base is where the file's offset 0 is mapped: a PIE's load bias.
	Base uint64
	Exec bool
}

// mappedFiles groups a process's file mappings by file.
func mappedFiles(procRoot string, pid int, maps []Mapping) []MappedFile {
	byID := map[FileID]int{}
	var out []MappedFile
	for _, m := range maps {
		if m.Inode == 0 || !strings.HasPrefix(m.Path, "/") {
			continue
		}
		id := FileID{Dev: m.Dev, Inode: m.Inode}
		i, ok := byID[id]
		if !ok {
			i = len(out)
			byID[id] = i
			out = append(out, MappedFile{ID: id, Path: m.Path, Base: m.Start - m.Offset})
			out[i].OpenPath = openPath(procRoot, pid, m)
		}
		if m.Offset == 0 {
			out[i].Base = m.Start
		}
		out[i].Exec = out[i].Exec || m.Exec()
	}
	return out
}

// openPath prefers the process's root (a stable path); map_files is the
// fallback for files whose path no longer names them.
func openPath(procRoot string, pid int, m Mapping) string {
	root := filepath.Join(procRoot, strconv.Itoa(pid), "root", m.Path)
	if !m.Deleted {
		var st unix.Stat_t
		if err := unix.Stat(root, &st); err == nil && st.Dev == m.Dev && st.Ino == m.Inode {
			return root
		}
	}
	return filepath.Join(procRoot, strconv.Itoa(pid), "map_files", fmt.Sprintf("%x-%x", m.Start, m.End))
}

// readMaps reads and parses /proc/PID/maps.
func readMaps(procRoot string, pid int) ([]Mapping, error) {
	f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "maps"))
	if err != nil {
		return nil, fmt.Errorf("open maps of %d: %w", pid, err)
	}
	defer f.Close()
	return ParseMaps(f)
}
