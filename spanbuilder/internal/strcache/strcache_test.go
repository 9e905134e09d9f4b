package strcache

import (
	"net/netip"
	"strconv"
	"testing"
)

func TestString(t *testing.T) {
	calls := 0
	c := New(func(a netip.Addr) string { calls++; return a.String() })
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i)})
		if got := c.String(a); got != a.String() {
			t.Fatalf("%v: %q", a, got)
		}
	}
	calls = 0
	a := netip.MustParseAddr("127.0.0.2")
	for range 10 {
		if got := c.String(a); got != "127.0.0.2" {
			t.Fatalf("got %q", got)
		}
	}
	if calls != 1 {
		t.Errorf("%d calls for one repeated value, want 1", calls)
	}
	if n := testing.AllocsPerRun(100, func() { _ = c.String(a) }); n != 0 {
		t.Errorf("%v allocs per hit", n)
	}
	ints := New(strconv.Itoa)
	if ints.String(7) != "7" || ints.String(263) != "263" {
		t.Error("ints")
	}
}
