//go:build race

package backup_test

// raceEnabled: built with -race, under which sync.Pool drops a share of
// the items put back at random, so pooled buffers are allocated again.
const raceEnabled = true
