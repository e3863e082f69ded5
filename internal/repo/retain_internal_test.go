package repo

import (
	"testing"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
)

// TestRetainedKey: the keys putData stores with retention, and only
// those, are what a multi-site store copies with retention.
func TestRetainedKey(t *testing.T) {
	var h format.Handle
	h[0] = 0xab
	ten := &Tenant{Handle: h}
	id := crypto.ID{1, 2, 3}
	for _, k := range []string{ten.PackKey(id), ten.IndexKey(id), ten.SnapshotKey(id), ten.RecordKey(id)} {
		if !RetainedKey(k) {
			t.Errorf("%s: not retained", k)
		}
	}
	for _, k := range []string{
		ConfigKey, slotsPrefix + id.String(), envelopeKey(h, 1), // key material, config
		ten.DataPrefix() + "x/" + id.String(), ten.DataPrefix() + "l/" + id.String() + "/x", // tombstones, leases
		"t/p/x", "t/" + h.String(), "t/" + h.String() + "/p", "tp/x/p/y", "", // not a data object
	} {
		if RetainedKey(k) {
			t.Errorf("%q: retained", k)
		}
	}
}
