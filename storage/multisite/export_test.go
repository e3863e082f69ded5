package multisite

import "time"

// PinReadOrder makes s ignore latency when ordering sites for reads, so
// that tests know which site a read tries first: the configured order,
// after the sites demoted for the key or for failing recently.
func PinReadOrder(s *Store) { s.pinOrder = true }

// SetClaimWait shortens the wait of a create-only put for a losing
// creator's withdrawal, for tests of objects that do not go away.
func SetClaimWait(s *Store, d time.Duration) { s.claimWait = d }
