package strcache

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func TestString(t *testing.T) {
	calls := 0
	c := New(func(a netip.Addr) string { calls++; return a.String() })
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i)})
		if got := c.Get(a); got != a.String() {
			t.Fatalf("%v: %q", a, got)
		}
	}
	calls = 0
	a := netip.MustParseAddr("127.0.0.2")
	for range 10 {
		if got := c.Get(a); got != "127.0.0.2" {
			t.Fatalf("got %q", got)
		}
	}
	if calls != 1 {
		t.Errorf("%d calls for one repeated value, want 1", calls)
	}
	if n := testing.AllocsPerRun(100, func() { _ = c.Get(a) }); n != 0 {
		t.Errorf("%v allocs per hit", n)
	}
	ints := New(strconv.Itoa)
	if ints.Get(7) != "7" || ints.Get(263) != "263" {
		t.Error("ints")
	}
}

// TestOwning: a value whose bytes are reused after the call is kept as
// its copy, so that a later value with those bytes, in the same slot, is
// not answered with the first value's string.
func TestOwning(t *testing.T) {
	c := NewOwning(func(s string) string { return "msg: " + s }, strings.Clone)
	const first = "invalid_grant"
	slot := func(s string) uint64 { return maphash.Comparable(c.seed, s) % slots }
	other := ""
	for i := 0; other == ""; i++ {
		if s := fmt.Sprintf("code_%08d", i); slot(s) == slot(first) {
			other = s
		}
	}
	buf := []byte(first)
	if got := c.Get(unsafe.String(&buf[0], len(buf))); got != "msg: "+first {
		t.Fatalf("got %q", got)
	}
	copy(buf, other) // the buffer is reused
	if got := c.Get(other); got != "msg: "+other {
		t.Errorf("after the buffer was reused: %q", got)
	}
}
