package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/storage"
)

// Prune runs in two phases so that it never deletes what a concurrent
// backup may use, without any lock (docs/FORMAT.md, "Prune"):
//
//  1. mark: packs no snapshot needs are listed in a tombstone object,
//     "t/<handle>/x/<id>", with the time of marking. Backups starting after
//     that load the index without them, so they never deduplicate against
//     a marked pack.
//  2. sweep, at a later prune: a tombstone older than the grace period and
//     older than the start of every running backup (their leases) has its
//     packs deleted — those still unneeded by every snapshot then; a pack a
//     backup resurrected meanwhile is kept.
//
// Partly used packs whose waste is above the threshold are repacked: their
// live chunks are copied to new packs (with index objects of their own),
// and the old packs are marked. A repacked pack stays indexed until it is
// swept, like any marked pack: a backup that loaded the index earlier may
// deduplicate against a chunk of it that was dead, and the sweep must see
// that to keep the pack. When packs are swept, a consolidated index
// replaces the index objects read.
//
// Retention (storage.ErrRetained: S3 Object Lock) is respected, never
// fought: an object the storage refuses to delete stays, prune reports it
// and goes on. The invariant that keeps every reader safe is that an index
// object never names a pack that is gone: a pack is deleted only once no
// index object that stays names it. So a swept pack is kept when its own
// delete is refused or when an index object naming it could not be
// deleted; it is carried into a new tombstone (so that backups still do
// not deduplicate against it) whose time is the later of its old
// tombstone's and the end of the retention that blocked it minus the
// grace period, so that a later prune retries it when it can succeed.

type tombstone struct {
	key   string
	Time  time.Time   `json:"time"`
	Packs []crypto.ID `json:"packs"`
}

func (t *Tenant) tombstones(ctx context.Context) ([]tombstone, error) {
	var out []tombstone
	prefix := t.DataPrefix() + "x/"
	err := t.Repo.St.List(ctx, prefix, func(i storage.Info) error {
		b, err := storage.ReadAll(ctx, t.Repo.St, i.Key)
		if errors.Is(err, storage.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		ts := tombstone{key: i.Key}
		if err := json.Unmarshal(b, &ts); err != nil {
			t.Repo.Log.Warn("ignoring unreadable tombstone", "object", i.Key, "err", err)
			return nil
		}
		out = append(out, ts)
		return nil
	})
	return out, err
}

// MarkMargin is added to a tombstone's time before comparing it with the
// start of running backups: a backup that started up to MarkMargin after
// the tombstone's time holds its sweep back. It covers the write of the
// tombstone and clock skew between the machines running backups and prune.
const MarkMargin = 2 * time.Minute

// PruneOptions tune Prune.
type PruneOptions struct {
	// Grace is how long a marked pack waits before deletion; 0 means 1h.
	Grace time.Duration
	// RepackWaste repacks a partly used pack when at least this share of
	// its bytes is unused; 0 means 0.5, a negative value never repacks.
	RepackWaste float64
	// DryRun reports what would be done and changes nothing.
	DryRun bool
	// Now is the time to judge against; zero means time.Now().
	Now time.Time
	// RecordsKeep is how long run records are kept; 0 means 90 days, a
	// negative value keeps them all. Older records go, except the newest
	// record and the newest successful one of each kind and source among
	// them, so health still sees when every source last ran and last
	// succeeded.
	// (An hourly backup writes 8,760 records a year; health reads them
	// all.)
	RecordsKeep time.Duration
}

// DefaultRecordsKeep is how long prune keeps run records by default.
const DefaultRecordsKeep = 90 * 24 * time.Hour

// PruneReport says what Prune did (or, with DryRun, would do).
type PruneReport struct {
	Snapshots      int
	ChunksUsed     int64
	ChunksUnused   int64
	PacksMarked    int   // newly marked for deletion
	PacksDeleted   int   // swept
	BytesDeleted   int64 // in swept packs
	PacksRepacked  int   // partly used packs whose live chunks were copied
	BytesRepacked  int64 // plaintext bytes copied
	PacksWaiting   int   // marked, waiting for the grace period, a running backup or a retention
	IndexesRemoved int   // index objects replaced by a consolidated one
	RunningBackups bool  // a live backup lease held the sweep back
	// PacksRetained counts packs prune would have deleted but kept: the
	// storage retains them (storage.ErrRetained), or an index object
	// naming them is retained. They stay marked and a later prune deletes
	// them once the retention ends.
	PacksRetained int
	// IndexesRetained counts replaced index objects the storage refused
	// to delete (retained): they stay, and the packs they name with them.
	IndexesRetained int
	// Retained lists the objects counted by PacksRetained and
	// IndexesRetained.
	Retained []string
	// RecordsRemoved counts run records older than RecordsKeep removed.
	RecordsRemoved int
	// LeasesRemoved counts lease objects removed: those of ended and dead
	// backups, and superseded refreshes (append-only backups delete
	// none of their own).
	LeasesRemoved int
}

// Prune reclaims the space of chunks no snapshot uses, for this tenant.
// It refuses to run when an index or snapshot object is unreadable: it
// could not tell what that object references. Run one prune at a time per
// tenant; backups may run concurrently.
func (t *Tenant) Prune(ctx context.Context, opts PruneOptions) (*PruneReport, error) {
	if !opts.DryRun {
		if err := t.Repo.RefuseAppendOnly("prune"); err != nil {
			return nil, err
		}
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if opts.Grace <= 0 {
		opts.Grace = time.Hour
	}
	if opts.RepackWaste == 0 {
		opts.RepackWaste = 0.5
	}
	rep := &PruneReport{}
	began := time.Now()
	// Leases and tombstones first: a backup whose lease is gone by now has
	// written its snapshot, so the listing below sees it and the packs it
	// resurrected are kept. Read after the snapshots, a lease released in
	// between would let its backup's packs be swept.
	stones, err := t.tombstones(ctx)
	if err != nil {
		return nil, err
	}
	leases, err := t.scanLeases(ctx, now)
	if err != nil {
		return nil, err
	}
	lease := leases.oldest
	marked := map[crypto.ID]bool{}
	markedAt := map[crypto.ID]time.Time{} // the latest tombstone naming the pack
	for _, ts := range stones {
		for _, p := range ts.Packs {
			marked[p] = true
			if ts.Time.After(markedAt[p]) {
				markedAt[p] = ts.Time
			}
		}
	}
	// Snapshots, then the index: a snapshot is written after the index
	// naming its chunks, so every snapshot seen is covered.
	snaps, badSnaps, err := t.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	if len(badSnaps) > 0 {
		return nil, fmt.Errorf("prune refused: snapshot object %s is unreadable (%v)", badSnaps[0].Key, badSnaps[0].Err)
	}
	// The index is built with the marked packs last: a chunk stored both
	// in a marked pack and in another (a repacked copy; a pack that a
	// retained index object still names) is then located, and counted as
	// used, in the other one, and the marked pack goes.
	idx, bad, indexKeys, allEntries, err := t.loadIndex(ctx, marked, true)
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("prune refused: index object %s is unreadable (%v); run check and repair first", bad[0].Key, bad[0].Err)
	}
	for i := range allEntries {
		if marked[allEntries[i].ID] {
			idx.Add(&allEntries[i])
		}
	}
	rep.Snapshots = len(snaps)
	used, err := t.usedChunks(ctx, idx, snaps)
	if err != nil {
		return nil, err
	}

	// Per-pack usage, by the index's view of where each chunk lives.
	type usage struct {
		ref              PackRef
		total, live      int64 // sealed bytes
		liveIDs          []crypto.ID
		chunks, liveCnts int
	}
	packs := map[crypto.ID]*usage{}
	for _, p := range idx.Packs() {
		if packs[p.ID] == nil {
			packs[p.ID] = &usage{ref: p}
		}
	}
	idx.ForEach(func(id crypto.ID, l Loc, p PackRef) {
		u := packs[p.ID]
		u.total += int64(l.SealedLen)
		u.chunks++
		if used[id] {
			u.live += int64(l.SealedLen)
			u.liveIDs = append(u.liveIDs, id)
			u.liveCnts++
			rep.ChunksUsed++
		} else {
			rep.ChunksUnused++
		}
	})
	stored := map[crypto.ID]int64{}
	if err := t.Repo.St.List(ctx, t.DataPrefix()+"p/", func(i storage.Info) error {
		if id, err := crypto.ParseID(i.Key[strings.LastIndexByte(i.Key, '/')+1:]); err == nil {
			stored[id] = i.Size
		}
		return nil
	}); err != nil {
		return nil, err
	}

	// Sweep.
	var sweep []crypto.ID
	inSweep := map[crypto.ID]bool{}
	var swept []tombstone
	for _, ts := range stones {
		// A backup that started before the tombstone was visible may have
		// loaded an index with its packs; MarkMargin covers the time the
		// tombstone took to be written and the clocks' skew.
		held := !lease.IsZero() && !lease.After(ts.Time.Add(MarkMargin))
		ripe := now.Sub(ts.Time) >= opts.Grace && !held
		if held {
			rep.RunningBackups = true
		}
		if !ripe {
			rep.PacksWaiting += len(ts.Packs)
			continue
		}
		for _, p := range ts.Packs {
			if u := packs[p]; u != nil && u.liveCnts > 0 {
				continue // resurrected by a backup: keep
			}
			if _, ok := stored[p]; ok && !inSweep[p] {
				inSweep[p] = true // a pack in two tombstones goes once
				sweep = append(sweep, p)
			}
		}
		swept = append(swept, ts)
	}

	// Mark: unused packs, unindexed leftovers, and packs to repack.
	var mark []crypto.ID
	var repack []*usage
	for id, u := range packs {
		if marked[id] {
			continue
		}
		switch {
		case u.liveCnts == 0:
			mark = append(mark, id)
		case opts.RepackWaste > 0 && float64(u.total-u.live) >= opts.RepackWaste*float64(u.total):
			repack = append(repack, u)
		}
	}
	for id := range stored {
		if packs[id] == nil && !marked[id] && lease.IsZero() {
			mark = append(mark, id) // left by an interrupted backup
		}
	}
	rep.PacksMarked = len(mark) + len(repack)
	rep.PacksDeleted = len(sweep)
	for _, p := range sweep {
		rep.BytesDeleted += stored[p]
	}
	rep.PacksRepacked = len(repack)
	if opts.DryRun {
		for _, u := range repack {
			for _, id := range u.liveIDs {
				l, _, _ := idx.Lookup(id)
				rep.BytesRepacked += int64(l.RawLen)
			}
		}
		return rep, nil
	}

	// Repack: copy live chunks into new packs (their own index objects),
	// forced past dedup since the index still names the old copies.
	var newEntries []format.PackEntry
	if len(repack) > 0 {
		w := t.NewWriter(ctx, NewIndex(), WriterOptions{})
		loader := t.NewLoader(idx)
		var s Scratch
		var buf []byte
		for _, u := range repack {
			for _, id := range u.liveIDs {
				l, _, _ := idx.Lookup(id)
				if buf, err = loader.Load(ctx, id, buf[:0], &s); err != nil {
					w.Abort(err)
					return nil, fmt.Errorf("repacking: %w", err)
				}
				if _, err := w.Add(l.Kind, id, buf); err != nil {
					w.Abort(err)
					return nil, fmt.Errorf("repacking: %w", err)
				}
				rep.BytesRepacked += int64(len(buf))
			}
			mark = append(mark, u.ref.ID)
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("repacking: %w", err)
		}
		newEntries = w.Written()
	}

	// Consolidated index: every pack read, minus swept and repacked ones,
	// plus the repacked copies; then the index objects read are removed.
	drop := map[crypto.ID]bool{}
	for _, p := range sweep {
		drop[p] = true
	}
	// A repacked pack stays in the index until it is swept, like any
	// marked pack: a backup that loaded the index before this prune may
	// deduplicate against one of its chunks that was dead (so not
	// copied), and the sweep then finds the pack resurrected and keeps it.
	// Dropping it from the index now would orphan that backup's chunk.
	// held: swept packs that an index object the storage retains still
	// names, with the latest end of those retentions (heldUnknown: one
	// of them did not say).
	held := map[crypto.ID]time.Time{}
	heldUnknown := map[crypto.ID]bool{}
	if len(drop) > 0 {
		var entries []format.PackEntry
		seen := map[crypto.ID]bool{}
		for _, e := range allEntries {
			if !drop[e.ID] && !seen[e.ID] {
				seen[e.ID] = true
				entries = append(entries, e)
			}
		}
		entries = append(entries, newEntries...)
		if err := t.WriteIndex(ctx, entries); err != nil {
			return nil, fmt.Errorf("writing the consolidated index: %w", err)
		}
		for i, err := range deleteEach(ctx, t.Repo.St, indexKeys) {
			k := indexKeys[i]
			switch {
			case err == nil || errors.Is(err, storage.ErrNotExist):
				rep.IndexesRemoved++
			case errors.Is(err, storage.ErrRetained):
				rep.IndexesRetained++
				rep.Retained = append(rep.Retained, k)
				until, _ := storage.RetainedUntil(err)
				packs, rerr := t.readIndex(ctx, k)
				if rerr != nil {
					// No pack is deleted yet: stopping here leaves every
					// index object naming packs that exist.
					return nil, fmt.Errorf("reading retained index %s: %w", k, rerr)
				}
				for _, e := range packs {
					switch {
					case !drop[e.ID]:
					case until.IsZero():
						heldUnknown[e.ID] = true
					case until.After(held[e.ID]):
						held[e.ID] = until
					}
				}
			default:
				return nil, fmt.Errorf("removing replaced index %s: %w", k, err)
			}
		}
	}
	// Packs the storage or a retained index keeps are carried into a new
	// tombstone (see the top of this file), each with when a retry may
	// succeed (zero: unknown).
	type carried struct {
		id    crypto.ID
		until time.Time
	}
	var carry []carried
	rep.PacksDeleted, rep.BytesDeleted = 0, 0
	var gone []crypto.ID
	var goneKeys []string
	for _, p := range sweep {
		if until, ok := held[p]; ok || heldUnknown[p] {
			if heldUnknown[p] {
				until = time.Time{}
			}
			carry = append(carry, carried{p, until})
			continue
		}
		gone, goneKeys = append(gone, p), append(goneKeys, t.PackKey(p))
	}
	for i, err := range deleteEach(ctx, t.Repo.St, goneKeys) {
		p := gone[i]
		switch {
		case err == nil || errors.Is(err, storage.ErrNotExist):
			rep.PacksDeleted++
			rep.BytesDeleted += stored[p]
		case errors.Is(err, storage.ErrRetained):
			until, _ := storage.RetainedUntil(err)
			carry = append(carry, carried{p, until})
		default:
			return nil, fmt.Errorf("deleting pack: %w", err)
		}
	}
	if len(carry) > 0 {
		// One tombstone for them all, written before the tombstones it
		// replaces are removed: not earlier than any of those (the packs
		// have been marked since), and due when the first retention
		// that blocked them should have ended.
		var ts tombstone
		var first time.Time
		for _, c := range carry {
			ts.Packs = append(ts.Packs, c.id)
			if markedAt[c.id].After(ts.Time) {
				ts.Time = markedAt[c.id]
			}
			if !c.until.IsZero() && (first.IsZero() || c.until.Before(first)) {
				first = c.until
			}
			rep.Retained = append(rep.Retained, t.PackKey(c.id))
		}
		if due := first.Add(-opts.Grace); !first.IsZero() && due.After(ts.Time) {
			ts.Time = due
		}
		id, err := crypto.RandomID()
		if err != nil {
			return nil, err
		}
		b, _ := json.Marshal(tombstone{Time: ts.Time.UTC(), Packs: ts.Packs})
		if err := putBytes(ctx, t.Repo.St, t.DataPrefix()+"x/"+id.String(), b, true); err != nil {
			return nil, fmt.Errorf("writing the tombstone of retained packs: %w", err)
		}
		rep.PacksRetained = len(carry)
		rep.PacksWaiting += len(carry)
	}
	sweptKeys := make([]string, len(swept))
	for i, ts := range swept {
		sweptKeys[i] = ts.key
	}
	for _, err := range deleteEach(ctx, t.Repo.St, sweptKeys) {
		if err != nil && !errors.Is(err, storage.ErrNotExist) {
			return nil, err
		}
	}
	if len(mark) > 0 {
		id, err := crypto.RandomID()
		if err != nil {
			return nil, err
		}
		// Stamped when written, not when the prune began: a backup
		// starting in between loaded an index without this tombstone.
		b, _ := json.Marshal(tombstone{Time: now.Add(time.Since(began)).UTC(), Packs: mark})
		if err := putBytes(ctx, t.Repo.St, t.DataPrefix()+"x/"+id.String(), b, true); err != nil {
			return nil, fmt.Errorf("writing tombstone: %w", err)
		}
		rep.PacksWaiting += len(mark)
	}
	for i, err := range deleteEach(ctx, t.Repo.St, leases.removable) {
		if err == nil {
			rep.LeasesRemoved++
		} else if !errors.Is(err, storage.ErrNotExist) {
			t.Repo.Log.Warn("could not remove a stale lease object", "object", leases.removable[i], "err", err)
		}
	}
	if opts.RecordsKeep >= 0 {
		keep := opts.RecordsKeep
		if keep == 0 {
			keep = DefaultRecordsKeep
		}
		if err := t.pruneRecords(ctx, now.Add(-keep), rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// pruneRecords removes the run records that ended before cutoff, but for
// the newest one and the newest successful one of each kind and source
// among them. Only records the storage dates before the cutoff are read
// (a record is written when its run ends): a prune does not decrypt every
// record of a tenant that backs up hourly. Unreadable records are left for
// check to report; retained ones stay.
func (t *Tenant) pruneRecords(ctx context.Context, cutoff time.Time, rep *PruneReport) error {
	prefix := t.DataPrefix() + "r/"
	var old []string
	if err := t.Repo.St.List(ctx, prefix, func(i storage.Info) error {
		if i.ModTime.IsZero() || i.ModTime.Before(cutoff) {
			old = append(old, i.Key)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("listing run records: %w", err)
	}
	if len(old) < 2 {
		return nil // nothing, or one record that is the newest of its kind
	}
	read, _, err := t.readRecords(ctx, prefix, old)
	if err != nil {
		return err
	}
	recs := slices.DeleteFunc(read, func(r *format.Record) bool { return !r.End.Before(cutoff) })
	slices.SortFunc(recs, func(a, b *format.Record) int { return a.End.Compare(b.End) })
	type series struct{ kind, source string }
	newest := map[series]*format.Record{}
	newestOK := map[series]*format.Record{}
	for _, r := range recs { // oldest first
		k := series{r.Kind, r.Source}
		newest[k] = r
		if r.OK {
			newestOK[k] = r
		}
	}
	var keys []string
	for _, r := range recs {
		k := series{r.Kind, r.Source}
		if newest[k] != r && newestOK[k] != r {
			keys = append(keys, t.RecordKey(r.ID))
		}
	}
	for i, err := range deleteEach(ctx, t.Repo.St, keys) {
		key := keys[i]
		switch {
		case err == nil || errors.Is(err, storage.ErrNotExist):
			rep.RecordsRemoved++
		case errors.Is(err, storage.ErrRetained):
			rep.Retained = append(rep.Retained, key)
		default:
			return fmt.Errorf("removing old run record %s: %w", key, err)
		}
	}
	return nil
}

// usedChunks walks every snapshot's tree and returns the chunks they use
// (tree chunks included). A tree that cannot be read stops the prune.
// Trees are read as Check reads them, many at once within a bound (over an
// object store each costs round trips, and a tenant backed up hourly keeps
// thousands of snapshots).
func (t *Tenant) usedChunks(ctx context.Context, idx *Index, snaps []*format.Snapshot) (map[crypto.ID]bool, error) {
	var mu sync.Mutex
	used := map[crypto.ID]bool{}
	loader := t.NewLoader(idx)
	_, err := inOrder(ctx, newBudget(treeCheckers, treeBytes), len(snaps), func(i int) int64 { return treeSize(snaps[i]) },
		func(ctx context.Context, i int, _ *struct{}) error {
			s := snaps[i]
			mu.Lock()
			for _, c := range s.Tree {
				used[c.ID] = true
			}
			mu.Unlock()
			err := loader.EachNode(ctx, s.Tree, func(n *format.Node) {
				mu.Lock()
				for _, c := range n.Chunks {
					used[c.ID] = true
				}
				mu.Unlock()
			})
			if err != nil {
				return fmt.Errorf("prune refused: tree of snapshot %s unreadable: %w", s.ID.Short(), err)
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	return used, nil
}

// deleteEach deletes keys, metaReaders at once, and returns each key's
// error, in order: over an object store every delete is a round trip, and
// a prune (or a first forget) may delete thousands of objects. Callers
// handle the errors in order, as when they deleted one after the other,
// except that a failure no longer keeps the keys after it from being
// deleted, which none of them relies on.
func deleteEach(ctx context.Context, st storage.Storage, keys []string) []error {
	errs := make([]error, len(keys))
	slots := make(chan struct{}, metaReaders)
	var wg sync.WaitGroup
	for i, k := range keys {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			errs[i] = st.Delete(ctx, k)
		})
	}
	wg.Wait()
	return errs
}
