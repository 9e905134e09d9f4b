package uprobe

import "fmt"

// RegABI says where Go's register ABI (ABIInternal, Go 1.17+ on amd64,
// 1.18+ on arm64) puts what the crypto/tls probes read, as byte offsets
// into the kernel's struct pt_regs, the context of a uprobe program.
//
// (*tls.Conn).Read(b []byte) (int, error) and Write take the receiver and
// the slice in the first four integer registers and return n and the
// error interface in the first three. At a RET only the results are
// left, so calls in flight are keyed by goroutine: the running
// goroutine's runtime.g is in a fixed register (R14 on amd64, X28 on
// arm64) at every function boundary.
type RegABI struct {
	G        uint16 // *runtime.g of the running goroutine
	Receiver uint16 // *tls.Conn, at entry
	BufPtr   uint16 // b's data pointer, at entry
	BufLen   uint16 // len(b), at entry
	RetN     uint16 // n, at a RET
	RetErr   uint16 // the error's itab (nil: no error), at a RET
}

// amd64 struct pt_regs: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si
// di orig_ax ip cs flags sp ss, 8 bytes each. Go's integer argument
// registers are AX BX CX DI SI R8 R9 R10 R11.
const (
	amd64R14 = 1 * 8
	amd64BX  = 5 * 8
	amd64AX  = 10 * 8
	amd64CX  = 11 * 8
)

// arm64 struct pt_regs (user_pt_regs): regs[31] sp pc pstate. Go's
// integer argument registers are R0-R15; g is R28.
func arm64X(n uint16) uint16 { return n * 8 }

func regABI(arch string) (RegABI, error) {
	switch arch {
	case "amd64":
		return RegABI{G: amd64R14, Receiver: amd64AX, BufPtr: amd64BX, BufLen: amd64CX,
			RetN: amd64AX, RetErr: amd64BX}, nil
	case "arm64":
		return RegABI{G: arm64X(28), Receiver: arm64X(0), BufPtr: arm64X(1), BufLen: arm64X(2),
			RetN: arm64X(0), RetErr: arm64X(1)}, nil
	}
	return RegABI{}, fmt.Errorf("%w: architecture %s", ErrUnsupportedGo, arch)
}
