package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/storage"
)

// RecordKey names a run record object.
func (t *Tenant) RecordKey(id crypto.ID) string { return t.DataPrefix() + "r/" + id.String() }

// WriteRecord seals and stores a run record under a fresh ID.
func (t *Tenant) WriteRecord(ctx context.Context, rec *format.Record) error {
	id, err := crypto.RandomID()
	if err != nil {
		return err
	}
	rec.ID, rec.Version = id, format.Version
	b, err := format.MarshalRecord(rec)
	if err != nil {
		return err
	}
	gen, keys := t.Current()
	obj, err := format.SealObject(format.MagicRecord, &keys.Metadata, gen, &t.Handle, &id, b)
	if err != nil {
		return err
	}
	if err := putData(ctx, t.Repo.St, t.RecordKey(id), obj); err != nil {
		return fmt.Errorf("writing run record: %w", err)
	}
	return nil
}

// Records reads the tenant's run records, oldest first. Unreadable ones are
// returned in bad.
func (t *Tenant) Records(ctx context.Context) (recs []*format.Record, bad []BadObject, err error) {
	prefix := t.DataPrefix() + "r/"
	var keys []string
	if err := t.Repo.St.List(ctx, prefix, func(i storage.Info) error {
		keys = append(keys, i.Key)
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("listing run records: %w", err)
	}
	for _, key := range keys {
		rec, err := t.readRecord(ctx, key, strings.TrimPrefix(key, prefix))
		switch {
		case err == nil:
			recs = append(recs, rec)
		case errors.Is(err, storage.ErrNotExist):
		case ctx.Err() != nil:
			return nil, nil, ctx.Err()
		case isFatalStorage(err):
			return nil, nil, err
		default:
			bad = append(bad, BadObject{Key: key, Err: err})
		}
	}
	slices.SortFunc(recs, func(a, b *format.Record) int { return a.End.Compare(b.End) })
	return recs, bad, nil
}

func (t *Tenant) readRecord(ctx context.Context, key, name string) (*format.Record, error) {
	id, err := crypto.ParseID(name)
	if err != nil {
		return nil, fmt.Errorf("%w: run record object name", format.ErrCorrupt)
	}
	var rec *format.Record
	err = t.Repo.readVerified(ctx, key, func(b []byte) error {
		pt, err := t.openSealed(format.MagicRecord, &id, b)
		if err == nil {
			rec, err = format.ParseRecord(pt, &id)
		}
		return err
	})
	return rec, err
}
