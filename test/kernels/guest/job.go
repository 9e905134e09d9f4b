// Package guest is the contract between the kernel-matrix harness
// (test/kernels) and the init program it boots (guest/init): the job the
// harness writes into the initramfs, and the marker lines the init prints
// on the console so that the harness can tell boot, steps and exit codes
// apart from kernel messages and test output.
package guest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
)

// JobPath is where the job lies in the initramfs.
const JobPath = "/authprobe/job.json"

// ModulesDir holds the kernel modules the init loads, in name order.
const ModulesDir = "/authprobe/modules"

// Root kinds.
const (
	// RootHost: the host's / shared read-only over virtio-9p (mount tag
	// HostTag) under a tmpfs overlay becomes the guest's root.
	RootHost = "host"
	// RootInitramfs: the guest stays in the initramfs (binaries shipped
	// in it, e.g. static arm64 test binaries).
	RootInitramfs = "initramfs"
)

// HostTag is the 9p mount tag of the host's root filesystem.
const HostTag = "hostroot"

// Job is what the guest does after boot.
type Job struct {
	Root string `json:"root"`
	// Writable are directories (absolute, in the guest's root) that get a
	// fresh, empty tmpfs.
	Writable []string `json:"writable,omitempty"`
	// Env is the base environment of every step.
	Env   []string `json:"env,omitempty"`
	Steps []Step   `json:"steps"`
}

// Step is one command run to completion; its process group is killed
// when it exits or times out.
type Step struct {
	Name           string   `json:"name"`
	Argv           []string `json:"argv"`
	Dir            string   `json:"dir,omitempty"`
	Env            []string `json:"env,omitempty"`
	TimeoutSeconds int      `json:"timeout_seconds"`
}

// MarkerPrefix starts every line the init writes for the harness; the rest
// of the line is one JSON Marker.
const MarkerPrefix = "@@authprobe-guest "

// Marker events.
const (
	EventInit      = "init"       // the init runs (kernel booted)
	EventReady     = "ready"      // modules loaded, filesystems mounted
	EventStepStart = "step-start" // a step begins
	EventStepEnd   = "step-end"   // a step ended: Exit, or Error
	EventFatal     = "fatal"      // the init could not set up the guest
	EventDone      = "done"       // every step ran; powering off
)

// Marker is one event of the init.
type Marker struct {
	Event string `json:"event"`
	Step  string `json:"step,omitempty"`
	// Exit is the step's exit status; -1 when it was killed (Error says
	// why: timeout or signal).
	Exit  int    `json:"exit"`
	Error string `json:"error,omitempty"`
	// Uptime is the guest's /proc/uptime when the event happened.
	Uptime float64 `json:"uptime"`
}

// Line renders m as a console line (with a leading newline so that it
// never continues a line a step left unterminated).
func (m Marker) Line() string {
	b, err := json.Marshal(m)
	if err != nil {
		// A Marker of strings and numbers always marshals.
		panic(fmt.Sprintf("marshal marker: %v", err))
	}
	return "\n" + MarkerPrefix + string(b) + "\n"
}

// ParseMarker reads a marker from one console line; ok is false for any
// other line.
func ParseMarker(line string) (Marker, bool) {
	i := strings.Index(line, MarkerPrefix)
	if i < 0 {
		return Marker{}, false
	}
	var m Marker
	if err := json.Unmarshal([]byte(strings.TrimRight(line[i+len(MarkerPrefix):], "\r\n")), &m); err != nil {
		return Marker{}, false
	}
	return m, m.Event != ""
}

// ParseConsole returns every marker of a console transcript, in order.
func ParseConsole(console string) []Marker {
	var out []Marker
	sc := bufio.NewScanner(strings.NewReader(console))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		if m, ok := ParseMarker(sc.Text()); ok {
			out = append(out, m)
		}
	}
	return out
}
