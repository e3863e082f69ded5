package blobstore

// SetPreflightSize changes the size from which create-only puts check the
// key first, and returns a function restoring it.
func SetPreflightSize(n int64) (restore func()) {
	old := preflightSize
	preflightSize = n
	return func() { preflightSize = old }
}
