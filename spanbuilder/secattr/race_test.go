//go:build race

package secattr

// raceEnabled: the race detector changes what allocates (sync.Pool drops
// some of what it is given).
const raceEnabled = true
