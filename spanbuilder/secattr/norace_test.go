//go:build !race

package secattr

const raceEnabled = false
