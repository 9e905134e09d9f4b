package ring

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/stretchr/testify/require"

	"github.com/authprobe/authprobe/test/testutil"
)

// The kernel writes every record here: an XDP program, run by
// BPF_PROG_TEST_RUN, copies the packet's first 8 bytes (a sequence
// number) over a stack buffer and hands size bytes of it to
// bpf_ringbuf_output.

const (
	noWakeup    = 1 // BPF_RB_NO_WAKEUP
	forceWakeup = 2 // BPF_RB_FORCE_WAKEUP
)

type producer struct {
	t    *testing.T
	ring *ebpf.Map
	prog map[[2]int]*ebpf.Program // by size and flags
}

func newRing(t *testing.T, size int) (*producer, *Reader) {
	t.Helper()
	testutil.MustRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: uint32(size)})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	r, err := Open(m)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	p := &producer{t: t, ring: m, prog: map[[2]int]*ebpf.Program{}}
	t.Cleanup(func() {
		for _, prog := range p.prog {
			prog.Close()
		}
	})
	return p, r
}

// send has the kernel write a record of size bytes (1..512), each 8-byte
// word of it seq.
func (p *producer) send(seq uint64, size, flags int) {
	p.t.Helper()
	prog := p.prog[[2]int{size, flags}]
	if prog == nil {
		buf := (size + 7) &^ 7
		insns := asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // xdp_md.data
			asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // xdp_md.data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, 8),
			asm.JGT.Reg(asm.R4, asm.R3, "out"),
			asm.LoadMem(asm.R5, asm.R2, 0, asm.DWord),
		}
		for off := -buf; off < 0; off += 8 {
			insns = append(insns, asm.StoreMem(asm.RFP, int16(off), asm.R5, asm.DWord))
		}
		insns = append(insns,
			asm.LoadMapPtr(asm.R1, p.ring.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, int32(-buf)),
			asm.Mov.Imm(asm.R3, int32(size)),
			asm.Mov.Imm(asm.R4, int32(flags)),
			asm.FnRingbufOutput.Call(),
			asm.Mov.Imm(asm.R0, 2).WithSymbol("out"), // XDP_PASS
			asm.Return(),
		)
		var err error
		prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, Instructions: insns, License: "GPL"})
		require.NoError(p.t, err)
		p.prog[[2]int{size, flags}] = prog
	}
	pkt := make([]byte, 64)
	binary.LittleEndian.PutUint64(pkt, seq)
	_, err := prog.Run(&ebpf.RunOptions{Data: pkt})
	require.NoError(p.t, err)
}

// check is a record's content as send wrote it.
func check(t *testing.T, rec []byte, seq uint64, size int) {
	t.Helper()
	require.Len(t, rec, size, "record %d", seq)
	var word [8]byte
	binary.LittleEndian.PutUint64(word[:], seq)
	for i := range rec {
		if rec[i] != word[i%8] {
			t.Fatalf("record %d: byte %d is %#x, want %#x", seq, i, rec[i], word[i%8])
		}
	}
}

// TestReadsEveryRecordInOrder: records of many sizes, written a few at a
// time, come out whole and in order, with those that wrap past the end of
// the ring (mapped once) put back together.
func TestReadsEveryRecordInOrder(t *testing.T) {
	const size = 4096
	p, r := newRing(t, size)
	require.Equal(t, size, r.Size())
	sizes := []int{1, 8, 13, 100, 255, 504, 3, 64, 511}
	var pos, wraps int // where the kernel writes next, as this test counts
	var sent, read uint64
	for round := 0; round < 400; round++ {
		for k := 0; k <= round%4; k++ {
			n := sizes[int(sent)%len(sizes)]
			if start := (pos + hdrSize) % size; start+n > size {
				wraps++
			}
			pos += hdrSize + (n+7)&^7
			p.send(sent, n, noWakeup)
			sent++
		}
		for read < sent {
			got, err := r.Read(time.Now().Add(time.Second), 1000, func(rec []byte) {
				check(t, rec, read, sizes[int(read)%len(sizes)])
				read++
			})
			require.NoError(t, err)
			require.NotZero(t, got)
		}
	}
	require.Equal(t, sent, read)
	require.Greater(t, wraps, 10, "records that wrap were read")
}

// TestReadsAtMostMax: a Read hands over no more than asked for, so its
// caller gets control back under a steady stream.
func TestReadsAtMostMax(t *testing.T) {
	p, r := newRing(t, 4096)
	for i := range 10 {
		p.send(uint64(i), 16, noWakeup)
	}
	var got []int
	next := uint64(0)
	for next < 10 {
		n, err := r.Read(time.Now().Add(time.Second), 3, func(rec []byte) {
			check(t, rec, next, 16)
			next++
		})
		require.NoError(t, err)
		got = append(got, n)
	}
	require.Equal(t, []int{3, 3, 3, 1}, got)
}

// TestWaitsForTheKernelsWakeup: an empty ring parks the Read until the
// kernel wakes it (a forced wakeup, and the default one a producer gives
// a reader that has caught up), or its deadline passes.
func TestWaitsForTheKernelsWakeup(t *testing.T) {
	p, r := newRing(t, 4096)
	_, err := r.Read(time.Now().Add(50*time.Millisecond), 10, func([]byte) { t.Fatal("no record was sent") })
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)

	for i, flags := range []int{forceWakeup, 0} {
		done := make(chan error, 1)
		var n int
		go func() {
			var err error
			n, err = r.Read(time.Now().Add(time.Minute), 10, func(rec []byte) { check(t, rec, uint64(i), 40) })
			done <- err
		}()
		time.Sleep(50 * time.Millisecond) // parked by now, most likely; either way it must return
		p.send(uint64(i), 40, flags)
		select {
		case err := <-done:
			require.NoError(t, err)
			require.Equal(t, 1, n)
		case <-time.After(10 * time.Second):
			t.Fatalf("flags %d: the kernel's wakeup did not reach the waiting Read", flags)
		}
	}
}

// TestWakeAndClose: Wake ends a waiting Read and makes later ones return
// once they found nothing (after handing over what is there); Close ends
// one, and every Read after it.
func TestWakeAndClose(t *testing.T) {
	p, r := newRing(t, 4096)
	done := make(chan error, 1)
	go func() {
		_, err := r.Read(time.Now().Add(time.Minute), 10, func([]byte) {})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	r.Wake()
	select {
	case err := <-done:
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	case <-time.After(10 * time.Second):
		t.Fatal("Wake did not end the waiting Read")
	}
	p.send(7, 24, noWakeup)
	n, err := r.Read(time.Now().Add(time.Minute), 10, func(rec []byte) { check(t, rec, 7, 24) })
	require.NoError(t, err)
	require.Equal(t, 1, n, "a woken reader still hands over what is there")
	_, err = r.Read(time.Now().Add(time.Minute), 10, func([]byte) {})
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "and returns at once when nothing is")

	r2, err := Open(p.ring)
	require.NoError(t, err)
	go func() {
		_, err := r2.Read(time.Now().Add(time.Minute), 10, func([]byte) {})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, r2.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the waiting Read")
	}
	_, err = r2.Read(time.Now().Add(time.Minute), 10, func([]byte) {})
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, r2.Close(), "a second Close is a no-op")
}

// TestMapsTheDataOnce: the data pages are mapped once (with the producer
// page), not twice as a wrapping reader needs.
func TestMapsTheDataOnce(t *testing.T) {
	const size = 1 << 20
	_, r := newRing(t, size)
	addr := uintptr(unsafe.Pointer(&r.view[0]))
	f, err := os.Open("/proc/self/maps")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var lo, hi uintptr
		if _, err := fmt.Sscanf(strings.Fields(sc.Text())[0], "%x-%x", &lo, &hi); err != nil || addr < lo || addr >= hi {
			continue
		}
		require.Equal(t, uintptr(os.Getpagesize()+size), hi-lo, "the producer page and the data, once: %s", sc.Text())
		return
	}
	t.Fatal("the data mapping is not in /proc/self/maps")
}

// TestOpenRejectsOtherMaps: only a ring buffer opens.
func TestOpenRejectsOtherMaps(t *testing.T) {
	testutil.MustRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	require.NoError(t, err)
	defer m.Close()
	_, err = Open(m)
	require.Error(t, err)
	require.Contains(t, err.Error(), "not a ring buffer")
	require.False(t, errors.Is(err, ErrClosed))
}

// BenchmarkRead: one op is one 256-byte record written by the kernel
// (BPF_PROG_TEST_RUN repeats the program, a batch at a time) and then
// read: here, in place, against cilium/ebpf's ringbuf.Reader, which
// copies. The reads run side by side on the same ring size. The wait
// (the netpoller against a blocking epoll_wait) shows in the live
// agent's CPU, not here: records are always ready. Run it with a fixed
// count (production is outside the timer and slower than reading):
//
//	go test -run '^$' -bench Read -benchtime 200000x -benchmem ./bpf/ring/
func BenchmarkRead(b *testing.B) {
	const batch = 1000
	pkt := make([]byte, 64)
	for _, name := range []string{"in-place", "cilium-ringbuf"} {
		b.Run(name, func(b *testing.B) {
			testutil.MustRoot(b)
			m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 1 << 20})
			require.NoError(b, err)
			defer m.Close()
			prog := benchProducer(b, m, 256)
			defer prog.Close()
			var read func(n int)
			switch name {
			case "in-place":
				r, err := Open(m)
				require.NoError(b, err)
				defer r.Close()
				var sum byte
				read = func(n int) {
					for n > 0 {
						k, err := r.Read(time.Now().Add(time.Second), n, func(rec []byte) { sum += rec[0] })
						require.NoError(b, err)
						n -= k
					}
				}
			default:
				r, err := ringbuf.NewReader(m)
				require.NoError(b, err)
				defer r.Close()
				var rec ringbuf.Record
				read = func(n int) {
					// The records came without a wakeup: Flush has the
					// reader look without waiting for one.
					require.NoError(b, r.Flush())
					for range n {
						require.NoError(b, r.ReadInto(&rec))
					}
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += batch {
				n := min(batch, b.N-done)
				b.StopTimer()
				_, err := prog.Run(&ebpf.RunOptions{Data: pkt, Repeat: uint32(n)})
				require.NoError(b, err)
				b.StartTimer()
				read(n)
			}
		})
	}
}

// benchProducer is send's program for one size, without a wakeup.
func benchProducer(b *testing.B, m *ebpf.Map, size int) *ebpf.Program {
	insns := asm.Instructions{asm.Mov.Imm(asm.R5, 0)}
	for off := -size; off < 0; off += 8 {
		insns = append(insns, asm.StoreMem(asm.RFP, int16(off), asm.R5, asm.DWord))
	}
	insns = append(insns,
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(-size)),
		asm.Mov.Imm(asm.R3, int32(size)),
		asm.Mov.Imm(asm.R4, noWakeup),
		asm.FnRingbufOutput.Call(),
		asm.Mov.Imm(asm.R0, 2),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, Instructions: insns, License: "GPL"})
	require.NoError(b, err)
	return prog
}

// TestReadAllocatesNothing: neither a Read that hands over a record nor
// one that waits in the netpoller until its deadline allocates (the
// callback it waits with is made once, in Open).
func TestReadAllocatesNothing(t *testing.T) {
	p, r := newRing(t, 4096)
	for i := range 101 { // AllocsPerRun's warm-up and 100 runs
		p.send(uint64(i), 8, noWakeup)
	}
	h := func([]byte) {}
	require.Zero(t, testing.AllocsPerRun(100, func() {
		if n, err := r.Read(time.Now().Add(time.Second), 1, h); n != 1 || err != nil {
			t.Fatal(n, err)
		}
	}), "a Read that hands over a record")
	require.Zero(t, testing.AllocsPerRun(20, func() {
		if _, err := r.Read(time.Now().Add(time.Millisecond), 10, h); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal(err)
		}
	}), "a Read that waits until its deadline")
}
