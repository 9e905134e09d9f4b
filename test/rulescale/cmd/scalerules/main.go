// Command scalerules writes a time-scaled copy of a Prometheus rules file:
//
//	go run ./test/rulescale/cmd/scalerules -factor 60 deploy/prometheus/rules.yaml > fast-rules.yaml
//
// Group intervals, for: windows, range windows and offsets are divided by
// the factor so that a live test sees an alert fire in seconds.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/authprobe/authprobe/test/rulescale"
)

func main() {
	factor := flag.Float64("factor", 60, "divide every duration by this")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: scalerules -factor N RULES.yaml")
		os.Exit(2)
	}
	in, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "scalerules:", err)
		os.Exit(1)
	}
	out, err := rulescale.Scale(in, *factor)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scalerules:", err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(out); err != nil {
		fmt.Fprintln(os.Stderr, "scalerules:", err)
		os.Exit(1)
	}
}
