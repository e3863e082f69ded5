package repo

import (
	"bytes"
	"context"

	"github.com/reprise-backup/reprise/storage"
)

// putData stores one of a tenant's data objects — a pack, an index, a
// snapshot or a run record — create-only and with storage.PutOptions.Retain,
// so that a driver configured for retention (S3 Object Lock) makes it
// immutable for its retention period. Key material (slots, envelopes) and
// coordination objects (config, leases, tombstones) are never retained:
// erasing a tenant must stay possible by destroying its keys.
func putData(ctx context.Context, st storage.Storage, key string, b []byte) error {
	return st.Put(ctx, key, bytes.NewReader(b), int64(len(b)), &storage.PutOptions{IfNotExist: true, Retain: true})
}
