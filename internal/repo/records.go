package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

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
	recs, bad, err = t.readRecords(ctx, prefix, keys)
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(recs, func(a, b *format.Record) int { return a.End.Compare(b.End) })
	return recs, bad, nil
}

// readRecords reads the run records named by keys (under prefix),
// metaReaders at once: a tenant that backs up hourly keeps a few thousand
// of them (DefaultRecordsKeep), which one after the other would take a
// minute over an object store. Records gone since the listing are left
// out; unreadable ones are returned in bad, in no particular order, as
// are the records.
func (t *Tenant) readRecords(ctx context.Context, prefix string, keys []string) (recs []*format.Record, bad []BadObject, err error) {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(metaReaders)
	for _, key := range keys {
		g.Go(func() error {
			rec, err := t.readRecord(gctx, key, strings.TrimPrefix(key, prefix))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				recs = append(recs, rec)
			case errors.Is(err, storage.ErrNotExist):
			case gctx.Err() != nil:
				return gctx.Err()
			case isFatalStorage(err):
				return err
			default:
				bad = append(bad, BadObject{Key: key, Err: err})
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
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
