package detect

import (
	"testing"
	"unsafe"
)

// TestSizes pins the sizes docs/detection-metrics.md adds up, on 64-bit
// platforms (the agent's).
func TestSizes(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes documented for 64-bit platforms")
	}
	for _, tt := range []struct {
		name      string
		got, want uintptr
	}{
		{"source", unsafe.Sizeof(source{}), 200},
		{"sketch", unsafe.Sizeof(sketch{}), 32},
		{"dense registers", unsafe.Sizeof([registers]uint8{}), 1024},
		{"sparse at its largest", sparseMax * unsafe.Sizeof(uint16(0)), 512},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: %d bytes, documentation says %d", tt.name, tt.got, tt.want)
		}
	}
}
