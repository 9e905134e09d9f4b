package export

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// The spill directory holds sealed OTLP batches that did not fit in memory,
// one file per batch, so that an outage of the collector longer than the
// memory buffer, or an agent restart during one, loses nothing:
//
//	<dir>/lock                       flock(2)ed by the running agent
//	<dir>/<16 hex digits>.batch      one batch; the digits order them
//	<dir>/<16 hex digits>.batch.tmp  a batch being written
//
// A .batch file is a 24-byte header and the batch:
//
//	bytes 0..7    magic "APSPILL1"
//	bytes 8..11   spans in the batch, uint32 little endian
//	bytes 12..15  payload length, uint32 little endian
//	bytes 16..19  CRC-32C (Castagnoli) of the payload
//	bytes 20..23  zero
//	payload       an ExportTraceServiceRequest in protobuf encoding, as
//	              sent to the collector (protoc --decode can read it)
//
// A batch is written to its .tmp name and renamed, so a .batch file is
// whole unless the machine (not the agent) crashed while writing it; the
// CRC catches that. Files are not fsynced: a spill survives agent restarts
// and crashes, and a power loss only if the page cache was written back.
var spillMagic = [8]byte{'A', 'P', 'S', 'P', 'I', 'L', 'L', '1'}

const (
	spillHeader = 24
	spillSuffix = ".batch"
	tmpSuffix   = ".tmp"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a spill file that cannot be delivered.
var errCorrupt = errors.New("corrupt spill file")

// spillDir is an open, locked spill directory.
type spillDir struct {
	path string
	lock *os.File
}

// openSpillDir creates dir if needed and locks it: two agents sharing one
// directory would deliver each other's batches twice.
func openSpillDir(dir string) (*spillDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spill directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spill directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("spill directory %s is in use by another process", dir)
		}
		return nil, fmt.Errorf("lock spill directory %s: %w", dir, err)
	}
	return &spillDir{path: dir, lock: f}, nil
}

func (d *spillDir) close() error {
	return d.lock.Close() // releases the flock
}

func (d *spillDir) file(seq uint64) string {
	return filepath.Join(d.path, fmt.Sprintf("%016x%s", seq, spillSuffix))
}

// write stores one batch.
func (d *spillDir) write(seq uint64, spans int, payload []byte) error {
	var h [spillHeader]byte
	copy(h[:], spillMagic[:])
	binary.LittleEndian.PutUint32(h[8:], uint32(spans))
	binary.LittleEndian.PutUint32(h[12:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[16:], crc32.Checksum(payload, castagnoli))
	name := d.file(seq)
	tmp := name + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spill batch: %w", err)
	}
	_, err = f.Write(h[:])
	if err == nil {
		_, err = f.Write(payload)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp) // a full disk leaves no partial file behind
		return fmt.Errorf("spill batch: %w", err)
	}
	return nil
}

// read returns one batch's payload, checked against its header.
func (d *spillDir) read(seq uint64, buf []byte) ([]byte, error) {
	f, err := os.Open(d.file(seq))
	if err != nil {
		return nil, fmt.Errorf("read spilled batch: %w", err)
	}
	defer f.Close()
	var h [spillHeader]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return nil, fmt.Errorf("%w: %s: header: %v", errCorrupt, d.file(seq), err)
	}
	_, n, sum, ok := parseSpillHeader(h[:])
	if !ok {
		return nil, fmt.Errorf("%w: %s: bad header", errCorrupt, d.file(seq))
	}
	// The length is checked against the file before anything is allocated
	// for it: a damaged header must not ask for gigabytes.
	if st, err := f.Stat(); err != nil || st.Size() != spillHeader+int64(n) {
		return nil, fmt.Errorf("%w: %s: length in header does not match the file", errCorrupt, d.file(seq))
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errCorrupt, d.file(seq), err)
	}
	if n, _ := f.Read(make([]byte, 1)); n != 0 {
		return nil, fmt.Errorf("%w: %s: longer than its header says", errCorrupt, d.file(seq))
	}
	if crc32.Checksum(buf, castagnoli) != sum {
		return nil, fmt.Errorf("%w: %s: checksum mismatch", errCorrupt, d.file(seq))
	}
	return buf, nil
}

func (d *spillDir) remove(seq uint64) {
	_ = os.Remove(d.file(seq)) // gone already is fine
}

func parseSpillHeader(h []byte) (spans, length, sum uint32, ok bool) {
	if len(h) < spillHeader || [8]byte(h[:8]) != spillMagic {
		return 0, 0, 0, false
	}
	return binary.LittleEndian.Uint32(h[8:]), binary.LittleEndian.Uint32(h[12:]), binary.LittleEndian.Uint32(h[16:]), true
}

// spilled is a batch found in the directory at start.
type spilled struct {
	seq   uint64
	spans int
	size  int
}

// scan lists the batches an earlier run left, oldest first. Unfinished
// writes are removed; files that cannot be whole batches are removed and
// returned as corrupt, with the spans their header claims (0 if none).
func (d *spillDir) scan() (batches []spilled, corrupt []spilled, err error) {
	ents, err := os.ReadDir(d.path)
	if err != nil {
		return nil, nil, fmt.Errorf("spill directory: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, tmpSuffix) {
			_ = os.Remove(filepath.Join(d.path, name))
			continue
		}
		hexSeq, ok := strings.CutSuffix(name, spillSuffix)
		if !ok {
			continue // lock, or a stranger's file: left alone
		}
		seq, err := strconv.ParseUint(hexSeq, 16, 64)
		if err != nil || len(hexSeq) != 16 {
			continue
		}
		b, ok := d.header(seq)
		if !ok {
			d.remove(seq)
			corrupt = append(corrupt, b)
			continue
		}
		batches = append(batches, b)
	}
	sort.Slice(batches, func(i, j int) bool { return batches[i].seq < batches[j].seq })
	return batches, corrupt, nil
}

func (d *spillDir) header(seq uint64) (spilled, bool) {
	b := spilled{seq: seq}
	f, err := os.Open(d.file(seq))
	if err != nil {
		return b, false
	}
	defer f.Close()
	var h [spillHeader]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return b, false
	}
	spans, n, _, ok := parseSpillHeader(h[:])
	if !ok {
		return b, false
	}
	b.spans, b.size = int(spans), int(n)
	st, err := f.Stat()
	if err != nil || st.Size() != spillHeader+int64(n) {
		return b, false
	}
	return b, true
}
