//go:build !unix

package restore

import "time"

// lchtimes is a no-op where links' own times cannot be set.
func lchtimes(string, time.Time) {}
