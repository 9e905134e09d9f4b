package k8smeta

import (
	"bytes"
	"container/list"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// procCache remembers the cgroup identity of processes, so that a span
// exported after its process exited still names the container, keyed by
// PID and checked against the process's start time so that a reused PID
// is read again.
type procCache struct {
	root string
	max  int

	mu    sync.Mutex
	byPID map[uint32]*list.Element
	lru   *list.List // of *procEntry, most recent first
}

type procEntry struct {
	pid   uint32
	start uint64 // /proc/<pid>/stat starttime, clock ticks since boot
	c     Container
}

func newProcCache(root string, max int) *procCache {
	return &procCache{root: root, max: max, byPID: map[uint32]*list.Element{}, lru: list.New()}
}

// container returns what pid's cgroup says, reading /proc only when pid is
// new or was reused. A process that is gone keeps its last answer.
func (pc *procCache) container(pid uint32) Container {
	dir := filepath.Join(pc.root, strconv.FormatUint(uint64(pid), 10))
	start, alive := startTime(dir)
	pc.mu.Lock()
	el, ok := pc.byPID[pid]
	if ok {
		e := el.Value.(*procEntry)
		if !alive || e.start == start {
			pc.lru.MoveToFront(el)
			pc.mu.Unlock()
			return e.c
		}
	}
	pc.mu.Unlock()
	if !alive {
		return Container{}
	}
	data, err := os.ReadFile(filepath.Join(dir, "cgroup"))
	if err != nil {
		return Container{}
	}
	c := ParseCgroup(data)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if el, ok := pc.byPID[pid]; ok {
		pc.lru.Remove(el)
	}
	pc.byPID[pid] = pc.lru.PushFront(&procEntry{pid: pid, start: start, c: c})
	for pc.lru.Len() > pc.max {
		old := pc.lru.Remove(pc.lru.Back()).(*procEntry)
		delete(pc.byPID, old.pid)
	}
	return c
}

// startTime reads field 22 of /proc/<pid>/stat. The command name (field 2)
// is in parentheses and may hold spaces and parentheses, so fields are
// counted after the last ')'.
func startTime(dir string) (uint64, bool) {
	data, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return 0, false
	}
	return parseStartTime(data)
}

func parseStartTime(data []byte) (uint64, bool) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	fields := bytes.Fields(data[i+1:])
	// After the name: state is field 3, starttime field 22.
	if len(fields) < 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}
