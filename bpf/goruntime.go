package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// GoSpawnProbe is where a Go executable's runtime.newproc1 is, for the
// goroutine-creation probes (bpf/uprobe ResolveGoSpawn finds it).
type GoSpawnProbe struct {
	// Path reaches the executable from the agent: /proc/PID/exe.
	Path string
	// Entry is the file offset of runtime.newproc1's first instruction;
	// Returns those of each of its RET instructions.
	Entry   uint64
	Returns []uint64
}

// goSpawns are the loaded goroutine-creation programs and, per watched
// process, their attachments. A nil *goSpawns attaches nothing.
type goSpawns struct {
	entry, ret *ebpf.Program
	links      map[uint32][]link.Link
}

// loadSpawns loads go_runtime.c, sharing the maps of the objects loaded
// before it; its programs are attached per process by WatchWith.
func (p *Probe) loadSpawns(cfg Config) error {
	spec, err := loadGoRuntime()
	if err != nil {
		return fmt.Errorf("load spec: %w", err)
	}
	if err := prepare(spec, cfg); err != nil {
		return err
	}
	coll, err := p.newCollection(spec)
	if err != nil {
		return err
	}
	p.colls = append(p.colls, coll)
	p.spawns = &goSpawns{
		entry: coll.Programs["authprobe_go_newproc1"],
		ret:   coll.Programs["authprobe_go_newproc1_ret"],
		links: map[uint32][]link.Link{},
	}
	if p.spawns.entry == nil || p.spawns.ret == nil {
		return errors.New("go_runtime.c lacks its programs")
	}
	return nil
}

// attach puts the probes on runtime.newproc1 of process pid: one at its
// entry, one at each RET (a uretprobe would rewrite a return address on
// a goroutine stack the runtime moves). Only pid's threads fire them.
func (s *goSpawns) attach(pid uint32, sp GoSpawnProbe) error {
	if s == nil {
		return errors.New("goroutine probes not loaded")
	}
	if len(sp.Returns) == 0 {
		return fmt.Errorf("%s: runtime.newproc1 has no RET to probe", sp.Path)
	}
	s.detach(pid)
	ex, err := link.OpenExecutable(sp.Path)
	if err != nil {
		return fmt.Errorf("open %s: %w", sp.Path, err)
	}
	var links []link.Link
	add := func(prog *ebpf.Program, off uint64) error {
		l, err := ex.Uprobe("runtime.newproc1", prog, &link.UprobeOptions{Address: off, PID: int(pid)})
		if err != nil {
			return fmt.Errorf("uprobe %s at %#x: %w", sp.Path, off, err)
		}
		links = append(links, l)
		return nil
	}
	err = add(s.entry, sp.Entry)
	for _, off := range sp.Returns {
		if err != nil {
			break
		}
		err = add(s.ret, off)
	}
	if err != nil {
		for _, l := range links {
			_ = l.Close()
		}
		return err
	}
	s.links[pid] = links
	return nil
}

// detach removes pid's probes.
func (s *goSpawns) detach(pid uint32) {
	if s == nil {
		return
	}
	for _, l := range s.links[pid] {
		_ = l.Close()
	}
	delete(s.links, pid)
}

func (s *goSpawns) close() {
	if s == nil {
		return
	}
	for pid := range s.links {
		s.detach(pid)
	}
}

// SpawnProbes is how many goroutine-creation probes are attached, for
// every watched process together.
func (p *Probe) SpawnProbes() int {
	if p.spawns == nil {
		return 0
	}
	n := 0
	for _, ls := range p.spawns.links {
		n += len(ls)
	}
	return n
}
