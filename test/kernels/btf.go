package kernels

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/cilium/ebpf/btf"
)

// btfHeaderLen is the size of struct btf_header.
const btfHeaderLen = 24

// ExtractBTF finds the kernel's own BTF (what /sys/kernel/btf/vmlinux
// shows at run time) inside an uncompressed kernel image such as arm64's
// Image: the .BTF section is loaded data, so its bytes are in the image,
// starting with a btf_header (magic 0xeB9F, version 1). The candidate
// that parses and defines task_struct is the kernel's.
func ExtractBTF(image []byte) ([]byte, error) {
	magic := []byte{0x9f, 0xeb, 0x01, 0x00} // little-endian magic, version 1, flags 0
	for off := 0; ; off++ {
		i := bytes.Index(image[off:], magic)
		if i < 0 {
			return nil, errors.New("no kernel BTF in the image (CONFIG_DEBUG_INFO_BTF unset?)")
		}
		off += i
		if off+btfHeaderLen > len(image) {
			continue
		}
		h := image[off : off+btfHeaderLen]
		hdrLen := binary.LittleEndian.Uint32(h[4:])
		typeOff := binary.LittleEndian.Uint32(h[8:])
		typeLen := binary.LittleEndian.Uint32(h[12:])
		strOff := binary.LittleEndian.Uint32(h[16:])
		strLen := binary.LittleEndian.Uint32(h[20:])
		end := uint64(off) + uint64(hdrLen) + uint64(strOff) + uint64(strLen)
		if hdrLen != btfHeaderLen || typeOff != 0 || strOff != typeLen || typeLen == 0 || end > uint64(len(image)) {
			continue
		}
		raw := image[off:end]
		spec, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
		if err != nil {
			continue
		}
		var task *btf.Struct
		if err := spec.TypeByName("task_struct", &task); err != nil {
			continue
		}
		return raw, nil
	}
}
