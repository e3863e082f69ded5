package repo

import "time"

// SetLeaseRefresh shortens the lease refresh interval for a test and
// returns a function restoring it. Call it before taking leases, and
// restore it after they are released.
func SetLeaseRefresh(d time.Duration) (restore func()) {
	old := leaseRefresh
	leaseRefresh = d
	return func() { leaseRefresh = old }
}
