//go:build race

package detect_test

// raceEnabled: the race detector changes what allocations cost.
const raceEnabled = true
