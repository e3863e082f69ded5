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

// ErrSnapshotNotFound reports an unknown snapshot ID or prefix.
var ErrSnapshotNotFound = errors.New("snapshot not found")

// WriteSnapshot seals and stores a snapshot. The caller must have closed
// the Writer that stored its chunks (Close returned nil) first.
func (t *Tenant) WriteSnapshot(ctx context.Context, s *format.Snapshot) error {
	gen, keys := t.Current()
	s.Version = format.Version
	b, err := format.MarshalSnapshot(s)
	if err != nil {
		return err
	}
	obj, err := format.SealObject(format.MagicSnapshot, &keys.Metadata, gen, &t.Handle, &s.ID, b)
	if err != nil {
		return err
	}
	if err := putData(ctx, t.Repo.St, t.SnapshotKey(s.ID), obj); err != nil {
		return fmt.Errorf("writing snapshot: %w", err)
	}
	return nil
}

// ReadSnapshot reads one snapshot by its full ID.
func (t *Tenant) ReadSnapshot(ctx context.Context, id crypto.ID) (*format.Snapshot, error) {
	key := t.SnapshotKey(id)
	var s *format.Snapshot
	err := t.Repo.readVerified(ctx, key, func(b []byte) error {
		pt, err := t.openSealed(format.MagicSnapshot, &id, b)
		if err == nil {
			s, err = format.ParseSnapshot(pt, &id)
		}
		return err
	})
	if errors.Is(err, storage.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrSnapshotNotFound, id.Short())
	} else if err != nil {
		return nil, fmt.Errorf("snapshot object %s: %w", key, err)
	}
	return s, nil
}

// Snapshots lists the tenant's snapshots, oldest first. Snapshot objects
// that cannot be read are returned in bad.
func (t *Tenant) Snapshots(ctx context.Context) (snaps []*format.Snapshot, bad []BadObject, err error) {
	var ids []crypto.ID
	prefix := t.DataPrefix() + "s/"
	if err := t.Repo.St.List(ctx, prefix, func(i storage.Info) error {
		id, err := crypto.ParseID(strings.TrimPrefix(i.Key, prefix))
		if err != nil {
			bad = append(bad, BadObject{Key: i.Key, Err: fmt.Errorf("%w: snapshot object name", format.ErrCorrupt)})
			return nil
		}
		ids = append(ids, id)
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("listing snapshots: %w", err)
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(metaReaders)
	for _, id := range ids {
		g.Go(func() error {
			s, err := t.ReadSnapshot(gctx, id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				snaps = append(snaps, s)
			case errors.Is(err, ErrSnapshotNotFound):
			case gctx.Err() != nil:
				return gctx.Err()
			case isFatalStorage(err):
				return err
			default:
				bad = append(bad, BadObject{Key: t.SnapshotKey(id), Err: err})
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	slices.SortFunc(snaps, func(a, b *format.Snapshot) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID.String(), b.ID.String())
	})
	return snaps, bad, nil
}

// FindSnapshot resolves "latest", a full ID or a unique ID prefix.
func (t *Tenant) FindSnapshot(ctx context.Context, ref string) (*format.Snapshot, error) {
	if id, err := crypto.ParseID(ref); err == nil {
		return t.ReadSnapshot(ctx, id)
	}
	snaps, _, err := t.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	if ref == "latest" {
		if len(snaps) == 0 {
			return nil, fmt.Errorf("%w: tenant has no snapshots", ErrSnapshotNotFound)
		}
		return snaps[len(snaps)-1], nil
	}
	var found *format.Snapshot
	for _, s := range snaps {
		if strings.HasPrefix(s.ID.String(), ref) {
			if found != nil {
				return nil, fmt.Errorf("snapshot prefix %q is ambiguous", ref)
			}
			found = s
		}
	}
	if found == nil || ref == "" {
		return nil, fmt.Errorf("%w: %q", ErrSnapshotNotFound, ref)
	}
	return found, nil
}

// DeleteSnapshot removes a snapshot object. Its chunks stay until a prune.
// It fails with ErrAppendOnly in an append-only repository, and with an
// error wrapping storage.ErrRetained when the storage retains the object
// (which then stays, and keeps its data from prune).
func (t *Tenant) DeleteSnapshot(ctx context.Context, id crypto.ID) error {
	return t.DeleteSnapshots(ctx, []crypto.ID{id})[0]
}

// DeleteSnapshots is DeleteSnapshot for each of ids, many at once (a
// first forget on a tenant backed up hourly deletes thousands); errs[i] is
// ids[i]'s.
func (t *Tenant) DeleteSnapshots(ctx context.Context, ids []crypto.ID) (errs []error) {
	errs = make([]error, len(ids))
	if err := t.Repo.RefuseAppendOnly("forgetting a snapshot"); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = t.SnapshotKey(id)
	}
	for i, err := range deleteEach(ctx, t.Repo.St, keys) {
		if !errors.Is(err, storage.ErrNotExist) {
			errs[i] = err
		}
	}
	return errs
}
