package bpf

// VerdictKind is what user space tells the kernel about a connection (the
// kernel's enum verdict_kind); kinds may be combined.
type VerdictKind uint32

const (
	// VerdictResume: every request user space was sent is decided and
	// answered, and it has seen the streams up to InOff and OutOff, both
	// at a message boundary. The kernel goes back to filtering if its
	// offsets are still exactly these; else the verdict is counted stale.
	VerdictResume VerdictKind = 1 << 0
	// VerdictSkip: the request being read is not an auth request and its
	// body ends at ingress offset SkipTo: bytes before it are not copied.
	VerdictSkip VerdictKind = 1 << 1
	// VerdictOff: stop looking at the connection.
	VerdictOff VerdictKind = 1 << 2
)

// Verdict is one decision on a connection, for Probe.SetVerdict.
type Verdict struct {
	Kind   VerdictKind
	InOff  uint64 // VerdictResume
	OutOff uint64 // VerdictResume
	SkipTo uint64 // VerdictSkip
}
