package repo

import (
	"bytes"
	"context"
	"strings"

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

// RetainedKey reports whether key names one of a tenant's data objects,
// which putData stores with retention: a pack, an index, a snapshot or a
// run record ("t/<handle>/{p,i,s,r}/..."). A multi-site store copies these
// with retention too (multisite.Store.RetainCopies, set by Init and Open).
func RetainedKey(key string) bool {
	rest, ok := strings.CutPrefix(key, dataPrefix)
	if !ok {
		return false
	}
	if _, rest, ok = strings.Cut(rest, "/"); !ok {
		return false
	}
	area, _, ok := strings.Cut(rest, "/")
	return ok && (area == "p" || area == "i" || area == "s" || area == "r")
}

// retainCopies has a multi-site store under st, if any, copy data objects
// with retention (see RetainedKey).
func retainCopies(st storage.Storage) {
	if ms := FindMultisite(st); ms != nil {
		ms.RetainCopies(RetainedKey)
	}
}
