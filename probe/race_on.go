//go:build race

package probe

// raceEnabled: the race detector maps terabytes of shadow memory read-write
// (MAP_NORESERVE); mlockall without MCL_ONFAULT would try to fault it all in.
const raceEnabled = true
