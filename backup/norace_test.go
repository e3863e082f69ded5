//go:build !race

package backup_test

// raceEnabled: built with -race (see race_test.go).
const raceEnabled = false
