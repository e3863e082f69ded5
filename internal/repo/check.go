package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/storage"
)

// CheckOptions tune Check.
type CheckOptions struct {
	// ReadData reads, authenticates, decrypts and verifies every chunk of
	// every pack, not only the structure.
	ReadData bool
	// ReadDataPercent, in (0, 100), reads only a random sample of that
	// share of the packs; 0 or 100 reads them all.
	ReadDataPercent float64
}

// Problem is one defect found by Check.
type Problem struct {
	Tenant string // empty for repository-level objects
	Site   string // the site holding the bad copy, for multi-site repositories
	Object string // the stored object at fault, when there is one
	Err    error
}

func (p Problem) Error() string {
	var b strings.Builder
	if p.Tenant != "" {
		fmt.Fprintf(&b, "tenant %q: ", p.Tenant)
	}
	if p.Site != "" {
		fmt.Fprintf(&b, "site %s: ", p.Site)
	}
	if p.Object != "" {
		fmt.Fprintf(&b, "%s: ", p.Object)
	}
	b.WriteString(p.Err.Error())
	return b.String()
}

// Unwrap returns the cause.
func (p Problem) Unwrap() error { return p.Err }

// CheckReport is the outcome of Check.
type CheckReport struct {
	Tenants, Snapshots, Packs, Chunks int64
	// BytesRead counts the pack bytes read with ReadData.
	BytesRead int64
	// Unreferenced counts packs no index names: left by interrupted
	// backups, harmless, reclaimed by prune.
	Unreferenced int64
	Problems     []Problem
}

// CheckTenant checks one tenant: every snapshot's tree readable and every
// chunk it references indexed; every indexed pack present; with ReadData,
// every pack read and every chunk in it verified.
func (t *Tenant) CheckTenant(ctx context.Context, opts CheckOptions, rep *CheckReport) error {
	add := func(obj string, err error) {
		rep.Problems = append(rep.Problems, Problem{Tenant: t.Name, Object: obj, Err: err})
	}
	idx, bad, err := t.LoadIndex(ctx)
	if err != nil {
		return err
	}
	for _, b := range bad {
		add(b.Key, b.Err)
	}
	// Packs present in storage.
	stored := map[crypto.ID]int64{}
	prefix := t.DataPrefix() + "p/"
	if err := t.Repo.St.List(ctx, prefix, func(i storage.Info) error {
		name := i.Key[strings.LastIndexByte(i.Key, '/')+1:]
		id, err := crypto.ParseID(name)
		if err != nil || t.PackKey(id) != i.Key {
			add(i.Key, fmt.Errorf("%w: unexpected object in the pack area", format.ErrCorrupt))
			return nil
		}
		stored[id] = i.Size
		return nil
	}); err != nil {
		return fmt.Errorf("listing packs: %w", err)
	}
	packs := idx.Packs()
	indexed := map[crypto.ID]bool{}
	for _, p := range packs {
		if indexed[p.ID] {
			continue
		}
		indexed[p.ID] = true
		if _, ok := stored[p.ID]; !ok {
			add(t.PackKey(p.ID), fmt.Errorf("pack named by an index is missing: %w", storage.ErrNotExist))
		}
	}
	for id := range stored {
		if !indexed[id] {
			rep.Unreferenced++
		}
	}
	rep.Packs += int64(len(indexed))
	rep.Chunks += int64(idx.Len())

	loader := t.NewLoader(idx)
	snaps, badSnaps, err := t.Snapshots(ctx)
	if err != nil {
		return err
	}
	for _, b := range badSnaps {
		add(b.Key, b.Err)
	}
	rep.Snapshots += int64(len(snaps))
	for _, s := range snaps {
		if err := t.checkSnapshot(ctx, loader, s, add); err != nil {
			return err
		}
	}
	// With several sites, CheckSites verifies every copy on every site
	// and reports damage per site (and as unrepairable only when no site
	// holds a good copy); reading through the replicated store here would
	// report a bad copy as tenant-level loss depending on which site
	// answered.
	if opts.ReadData && FindMultisite(t.Repo.St) == nil {
		var todo []PackRef
		for _, p := range packs {
			if _, ok := stored[p.ID]; !ok {
				continue
			}
			if pc := opts.ReadDataPercent; pc > 0 && pc < 100 && rand.Float64()*100 >= pc {
				continue
			}
			todo = append(todo, p)
		}
		return t.checkPacks(ctx, loader, todo, stored, rep)
	}
	return nil
}

// packCheckers bounds the packs a check reads and verifies at once: enough
// to keep the cores busy and a store's latency hidden, few enough that the
// whole packs held (up to the pack size each) stay a few times the pack
// size.
const packCheckers = 4

// checkPacks runs checkPack over packs, packCheckers at once; problems are
// reported in the order of packs, whatever the order they finish in.
func (t *Tenant) checkPacks(ctx context.Context, loader *Loader, packs []PackRef, sizes map[crypto.ID]int64, rep *CheckReport) error {
	found := make([][]Problem, len(packs))
	read := make([]int64, len(packs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(packCheckers)
	for i, p := range packs {
		g.Go(func() error {
			var sub CheckReport
			err := t.checkPack(gctx, loader, p, sizes[p.ID], &sub, func(obj string, err error) {
				sub.Problems = append(sub.Problems, Problem{Tenant: t.Name, Object: obj, Err: err})
			})
			found[i], read[i] = sub.Problems, sub.BytesRead
			return err
		})
	}
	err := g.Wait()
	for i := range packs {
		rep.Problems = append(rep.Problems, found[i]...)
		rep.BytesRead += read[i]
	}
	return err
}

func (t *Tenant) checkSnapshot(ctx context.Context, loader *Loader, s *format.Snapshot, add func(string, error)) error {
	key := t.SnapshotKey(s.ID)
	for _, c := range s.Tree {
		if !loader.idx.Has(c.ID) {
			add(key, fmt.Errorf("tree chunk %s: %w", c.ID.Short(), ErrChunkMissing))
			return nil
		}
	}
	tr := format.NewTreeReader(loader.StreamReader(ctx, s.Tree))
	for {
		n, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ce *ChunkError
			if errors.As(err, &ce) && ce.Object != "" {
				add(ce.Object, fmt.Errorf("tree of snapshot %s: %w", s.ID.Short(), err))
			} else {
				add(key, fmt.Errorf("reading tree: %w", err))
			}
			return nil
		}
		for _, c := range n.Chunks {
			if !loader.idx.Has(c.ID) {
				add(key, fmt.Errorf("file %q: chunk %s: %w", n.Path, c.ID.Short(), ErrChunkMissing))
				break
			}
		}
	}
}

// checkPack reads a whole pack and verifies its header against the index
// and every blob in it.
func (t *Tenant) checkPack(ctx context.Context, loader *Loader, p PackRef, size int64, rep *CheckReport, add func(string, error)) error {
	key := t.PackKey(p.ID)
	data, err := storage.ReadAll(ctx, t.Repo.St, key)
	if err != nil {
		if ctx.Err() != nil || isFatalStorage(err) {
			return err
		}
		add(key, err)
		return nil
	}
	rep.BytesRead += int64(len(data))
	if int64(len(data)) != size || len(data) < format.TrailerSize {
		add(key, fmt.Errorf("%w: pack is %d bytes, listed as %d", format.ErrCorrupt, len(data), size))
		return nil
	}
	gen, hlen, err := format.ParseTrailer(data[len(data)-format.TrailerSize:])
	if err == nil && gen != p.Gen {
		err = fmt.Errorf("%w: pack generation %d, index says %d", format.ErrCorrupt, gen, p.Gen)
	}
	if err == nil && hlen > len(data)-format.TrailerSize {
		err = fmt.Errorf("%w: pack header longer than the pack", format.ErrCorrupt)
	}
	var blobs []format.BlobInfo
	if err == nil {
		keys, kerr := t.Keys(gen)
		if kerr != nil {
			err = kerr
		} else {
			hdr := data[len(data)-format.TrailerSize-hlen : len(data)-format.TrailerSize]
			blobs, err = format.OpenPackHeader(&keys.Data, &p.ID, gen, &t.Handle, hdr, int64(len(data)))
		}
	}
	if err != nil {
		add(key, fmt.Errorf("pack header: %w", err))
		// Go on with the index's view, to name the chunks that are bad.
		blobs = nil
	}
	var s Scratch
	var buf []byte
	var bad []error
	total := 0
	checkBlob := func(b format.BlobInfo) {
		total++
		if int64(b.Offset)+int64(b.SealedLen) > int64(len(data)) {
			bad = append(bad, fmt.Errorf("chunk %s: %w: beyond the end of the pack", b.ID.Short(), format.ErrCorrupt))
			return
		}
		loc := Loc{Seq: b.Seq, Offset: b.Offset, SealedLen: b.SealedLen, RawLen: b.RawLen, Kind: b.Kind}
		out, err := loader.Open(buf[:0], b.ID, loc, p, data[b.Offset:b.Offset+b.SealedLen], &s)
		if err != nil {
			bad = append(bad, fmt.Errorf("chunk %s: %w", b.ID.Short(), errors.Unwrap(err)))
			return
		}
		buf = out
	}
	if blobs != nil {
		for _, b := range blobs {
			checkBlob(b)
		}
	} else {
		// Header unreadable: check the blobs the index expects here.
		loader.idx.ForEach(func(id crypto.ID, l Loc, pr PackRef) {
			if pr.ID == p.ID {
				checkBlob(format.BlobInfo{Kind: l.Kind, ID: id, Seq: l.Seq, Offset: l.Offset, SealedLen: l.SealedLen, RawLen: l.RawLen})
			}
		})
	}
	// Name a few bad chunks, then count: one damaged pack is one problem
	// to fix, not a page of them.
	for i, err := range bad {
		if i == 3 && len(bad) > 4 {
			add(key, fmt.Errorf("%d more of its %d chunks are unreadable too: %w", len(bad)-i, total, err))
			break
		}
		add(key, err)
	}
	return ctx.Err()
}

// Check checks every tenant of the repository, and the repository's own
// objects.
func (r *Repo) Check(ctx context.Context, opts CheckOptions) (*CheckReport, error) {
	rep := &CheckReport{}
	names, err := r.TenantNames(ctx)
	if err != nil {
		return nil, err
	}
	// Tenant areas without a readable envelope are reported: their data
	// cannot be opened.
	known := map[format.Handle]bool{}
	for _, n := range names {
		known[r.HandleOf(n)] = true
	}
	handles, err := r.tenantHandles(ctx)
	if err != nil {
		return nil, err
	}
	for _, h := range handles {
		if !known[h] {
			rep.Problems = append(rep.Problems, Problem{Object: envelopePrefix(h), Err: fmt.Errorf("%w: tenant envelope does not open", crypto.ErrAuth)})
		}
	}
	for _, n := range names {
		t, err := r.Tenant(ctx, n, false)
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{Tenant: n, Object: envelopePrefix(r.HandleOf(n)), Err: err})
			continue
		}
		rep.Tenants++
		start, before := time.Now(), len(rep.Problems)
		err = t.CheckTenant(ctx, opts, rep)
		if err == nil {
			// Recorded per tenant, best effort (read-only credentials).
			found := int64(len(rep.Problems) - before)
			rec := &format.Record{Kind: format.RunCheck, Start: start, End: time.Now(), OK: found == 0, Problems: found}
			if opts.ReadData {
				rec.Source = "read-data"
			}
			if found > 0 {
				rec.Error = rep.Problems[before].Error()
			}
			if werr := t.WriteRecord(ctx, rec); werr != nil {
				r.Log.Warn("could not store the run record", "err", werr)
			}
		}
		t.Close()
		if err != nil {
			return nil, err
		}
	}
	if opts.ReadData {
		if err := r.CheckSites(ctx, rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}
