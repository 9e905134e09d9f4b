//go:build race

package main

// raceEnabled: the race detector changes what allocations cost.
const raceEnabled = true
