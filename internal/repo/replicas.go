package repo

import (
	"context"
	"errors"
	"io"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/storage"
)

// badCopy reports errors that say the bytes read were wrong (as opposed to
// the backend failing to answer): another copy of the object may be good.
func badCopy(err error) bool {
	return errors.Is(err, crypto.ErrAuth) || errors.Is(err, format.ErrCorrupt) ||
		errors.Is(err, ErrChunkMismatch) || errors.Is(err, io.ErrUnexpectedEOF)
}

// readVerified reads a whole object and hands it to open, which
// authenticates and decodes it. When open finds the bytes bad and the
// backend keeps several copies (storage.Replicated), the other copies are
// tried one by one and every bad one is reported, so a silently corrupted
// site costs nothing but a log line and a later repair.
func (r *Repo) readVerified(ctx context.Context, key string, open func([]byte) error) error {
	b, err := storage.ReadAll(ctx, r.St, key)
	if err == nil {
		if err = open(b); err == nil || !badCopy(err) {
			return err
		}
	}
	rep, ok := storage.AsReplicated(r.St)
	if !ok || !(badCopy(err) || errors.Is(err, storage.ErrNotExist)) {
		return err
	}
	first := err
	for _, c := range rep.Replicas() {
		b, rerr := storage.ReadAll(ctx, c.Storage, key)
		if rerr == nil {
			rerr = open(b)
		}
		if rerr == nil {
			r.Log.Warn("a damaged copy was read around; run repair", "object", key)
			return nil
		}
		if badCopy(rerr) {
			rep.ReportBadCopy(c.Name, key, rerr)
		}
	}
	return first
}
