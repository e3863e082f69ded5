package s3store

// UnknownOutcomes returns how many create-only puts were settled with a
// HeadObject after losing their answer.
func UnknownOutcomes() int64 { return unknownOutcomes.Load() }

// SetPreflightSize changes the size from which create-only puts check the
// key first, and returns a function restoring it.
func SetPreflightSize(n int64) (restore func()) {
	old := preflightSize
	preflightSize = n
	return func() { preflightSize = old }
}
