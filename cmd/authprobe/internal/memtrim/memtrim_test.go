package memtrim

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/authprobe/authprobe/bpf/uprobe"
)

func TestParseSmaps(t *testing.T) {
	f, err := os.Open("testdata/smaps.txt")
	require.NoError(t, err)
	defer f.Close()
	maps, err := ParseSmaps(f)
	require.NoError(t, err)
	require.Len(t, maps, 7)

	exe := "/usr/local/bin/authprobe"
	require.Equal(t, Mapping{Mapping: uprobe.Mapping{Start: 0x400000, End: 0x11f0000, Perms: "r-xp",
		Dev: unix.Mkdev(0, 0x2a), Inode: 1312, Path: exe}, Rss: 10616 << 10}, maps[0])
	require.Equal(t, uint64(400<<10), maps[2].Anonymous)
	require.Equal(t, "", maps[3].Path)
	require.Equal(t, "/opt/my app/lib", maps[4].Path)
	require.True(t, maps[4].Deleted)
	require.Equal(t, "anon_inode:bpf-map", maps[5].Path)

	var drop []int
	for i, m := range maps {
		if m.droppable(exe) {
			drop = append(drop, i)
		}
	}
	// Text and read-only data; never the data segment (written pages
	// exist nowhere else), another file, or the ring buffer.
	require.Equal(t, []int{0, 1}, drop)

	require.Equal(t, Parts{
		Executable: (10616 + 11608 + 1220) << 10,
		BPFMaps:    16388 << 10,
		Other:      (128 + 4 + 16) << 10,
	}, Split(maps, exe))
}

func TestParseSmapsRejects(t *testing.T) {
	for name, in := range map[string]string{
		"field first":  "Rss: 4 kB\n",
		"short header": "00400000-011f0000 r-xp\n",
		"bad range":    "00400000+011f0000 r-xp 0 00:2a 1 /x\n",
		"reversed":     "011f0000-00400000 r-xp 0 00:2a 1 /x\n",
		"not hex":      "0040zz00-011f0000 r-xp 0 00:2a 1 /x\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseSmaps(strings.NewReader(in))
			require.Error(t, err)
		})
	}
}

// TestExecutable drops this test binary's own read-only pages and checks
// that they left the resident set and that the code still runs: the
// next touch maps a page back from the page cache.
func TestExecutable(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	require.NoError(t, err)
	before := exeRss(t, exe)
	require.NotZero(t, before, "the running test binary has resident text")

	dropped, err := Executable()
	require.NoError(t, err)
	require.NotZero(t, dropped)
	after := exeRss(t, exe)
	require.Less(t, after, before, "dropped %d bytes", dropped)

	// Code, read-only data and tables (the parser, the fixture's
	// strings, a panic's unwinding) come back as they are touched.
	again, err := Executable()
	require.NoError(t, err)
	require.NotZero(t, again)
	require.NotPanics(t, func() { TestParseSmaps(t) })

	p, err := Resident()
	require.NoError(t, err)
	require.NotZero(t, p.Executable)
	require.NotZero(t, p.Other)
}

// exeRss is the resident bytes of exe's read-only mappings.
func exeRss(t *testing.T, exe string) uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	require.NoError(t, err)
	defer f.Close()
	maps, err := ParseSmaps(f)
	require.NoError(t, err)
	var n uint64
	for _, m := range maps {
		if m.Path == exe && m.Perms[1] == '-' {
			n += m.Rss
		}
	}
	return n
}
