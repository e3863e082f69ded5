package repo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

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

	// lim, when set (by Check), is shared by the tenants checked at once.
	lim *checkLimits
}

// Check reads trees and packs concurrently: over an object store each
// costs a round trip, and one after the other the snapshots of a tenant
// backed up hourly (about 2,000 over 90 days), or a thousand tenants, took
// hours. What is read at once is bounded for the whole check, in number
// and in bytes, whatever the number of tenants checked at once, so memory
// stays bounded:
const (
	// tenantCheckers tenants are checked at once.
	tenantCheckers = 8
	// Up to treeCheckers snapshot trees are read at once, within
	// treeBytes: a tree stream holds up to streamAhead chunks (most trees
	// are one small chunk; a tree of millions of files is many).
	treeCheckers = 32
	treeBytes    = 64 << 20
	// Up to packCheckers packs are read and verified at once (ReadData),
	// within 4 pack sizes (64 MiB at least): enough to keep the cores
	// busy and a store's latency hidden, few enough that the whole packs
	// held stay a few times the pack size.
	packCheckers = 8
	packBytes    = 64 << 20
)

// checkLimits holds what Check reads at once.
type checkLimits struct {
	trees, packs *budget
}

func newCheckLimits(packSize int) *checkLimits {
	return &checkLimits{trees: newBudget(treeCheckers, treeBytes), packs: newBudget(packCheckers, max(packBytes, 4*int64(packSize)))}
}

// budget bounds work both in number (slots) and in bytes.
type budget struct {
	slots chan struct{}
	bytes *semaphore.Weighted
	max   int64
}

func newBudget(slots int, bytes int64) *budget {
	return &budget{slots: make(chan struct{}, slots), bytes: semaphore.NewWeighted(bytes), max: bytes}
}

// acquire takes a slot and n bytes (the whole budget at most, so that
// anything runs, alone); release gives back what acquire returns.
func (b *budget) acquire(ctx context.Context, n int64) (int64, error) {
	n = max(1, min(n, b.max))
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if err := b.bytes.Acquire(ctx, n); err != nil {
		<-b.slots
		return 0, err
	}
	return n, nil
}

func (b *budget) release(n int64) {
	b.bytes.Release(n)
	<-b.slots
}

// inOrder runs fn(ctx, i, &subs[i]) for i in [0, n), each once it has
// size(i) bytes of b, and returns subs, in the order of i whatever the
// order they finish in. It stops at the first error.
func inOrder[R any](ctx context.Context, b *budget, n int, size func(i int) int64, fn func(ctx context.Context, i int, sub *R) error) ([]R, error) {
	subs := make([]R, n)
	g, gctx := errgroup.WithContext(ctx)
	for i := range n {
		held, err := b.acquire(gctx, size(i))
		if err != nil {
			break
		}
		g.Go(func() error {
			defer b.release(held)
			return fn(gctx, i, &subs[i])
		})
	}
	err := g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return subs, err
}

// treeSize is what reading s's tree holds at most: its first streamAhead
// chunks.
func treeSize(s *format.Snapshot) int64 {
	var n int64
	for _, c := range s.Tree[:min(len(s.Tree), streamAhead)] {
		n += int64(c.Len)
	}
	return n
}

// addRead adds the problems found and bytes read of subs to rep.
func (rep *CheckReport) addRead(subs []CheckReport) {
	for i := range subs {
		rep.Problems = append(rep.Problems, subs[i].Problems...)
		rep.BytesRead += subs[i].BytesRead
	}
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
	if opts.lim == nil {
		opts.lim = newCheckLimits(t.Repo.Config.PackSize)
	}
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
	subs, err := inOrder(ctx, opts.lim.trees, len(snaps), func(i int) int64 { return treeSize(snaps[i]) }, func(ctx context.Context, i int, sub *CheckReport) error {
		return t.checkSnapshot(ctx, loader, snaps[i], func(obj string, err error) {
			sub.Problems = append(sub.Problems, Problem{Tenant: t.Name, Object: obj, Err: err})
		})
	})
	rep.addRead(subs)
	if err != nil {
		return err
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
		packSize := func(i int) int64 { return stored[todo[i].ID] }
		subs, err := inOrder(ctx, opts.lim.packs, len(todo), packSize, func(ctx context.Context, i int, sub *CheckReport) error {
			p := todo[i]
			return t.checkPack(ctx, loader, p, stored[p.ID], sub, func(obj string, err error) {
				sub.Problems = append(sub.Problems, Problem{Tenant: t.Name, Object: obj, Err: err})
			})
		})
		rep.addRead(subs)
		return err
	}
	return nil
}

func (t *Tenant) checkSnapshot(ctx context.Context, loader *Loader, s *format.Snapshot, add func(string, error)) error {
	key := t.SnapshotKey(s.ID)
	for _, c := range s.Tree {
		if !loader.idx.Has(c.ID) {
			add(key, fmt.Errorf("tree chunk %s: %w", c.ID.Short(), ErrChunkMissing))
			return nil
		}
	}
	err := loader.EachNode(ctx, s.Tree, func(n *format.Node) {
		for _, c := range n.Chunks {
			if !loader.idx.Has(c.ID) {
				add(key, fmt.Errorf("file %q: chunk %s: %w", n.Path, c.ID.Short(), ErrChunkMissing))
				break
			}
		}
	})
	if err == nil {
		return nil
	}
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
	var mu sync.Mutex
	known := map[format.Handle]bool{}
	ts, err := r.openTenants(ctx, func(h format.Handle, name string, err error) {
		mu.Lock()
		defer mu.Unlock()
		known[h] = true
		rep.Problems = append(rep.Problems, Problem{Tenant: name, Object: envelopePrefix(h), Err: err})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(rep.Problems, func(a, b Problem) int { return strings.Compare(a.Tenant, b.Tenant) })
	// Tenant areas without a readable envelope are reported: their data
	// cannot be opened.
	for _, t := range ts {
		known[t.Handle] = true
	}
	handles, err := r.tenantHandles(ctx)
	if err != nil {
		for _, t := range ts {
			t.Close()
		}
		return nil, err
	}
	for _, h := range handles {
		if !known[h] {
			rep.Problems = append(rep.Problems, Problem{Object: envelopePrefix(h), Err: fmt.Errorf("%w: tenant envelope does not open", crypto.ErrAuth)})
		}
	}
	// Tenants are checked tenantCheckers at once, each into its own
	// report; the reports are added up in name order.
	opts.lim = newCheckLimits(r.Config.PackSize)
	subs := make([]CheckReport, len(ts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(tenantCheckers)
	for i, t := range ts {
		g.Go(func() error {
			defer t.Close()
			start, sub := time.Now(), &subs[i]
			if err := t.CheckTenant(gctx, opts, sub); err != nil {
				return err
			}
			// Recorded per tenant, best effort (read-only credentials).
			found := int64(len(sub.Problems))
			rec := &format.Record{Kind: format.RunCheck, Start: start, End: time.Now(), OK: found == 0, Problems: found}
			if opts.ReadData {
				rec.Source = "read-data"
			}
			if found > 0 {
				rec.Error = sub.Problems[0].Error()
			}
			if werr := t.WriteRecord(gctx, rec); werr != nil {
				r.Log.Warn("could not store the run record", "err", werr)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for i := range subs {
		rep.Tenants++
		rep.Snapshots += subs[i].Snapshots
		rep.Packs += subs[i].Packs
		rep.Chunks += subs[i].Chunks
		rep.BytesRead += subs[i].BytesRead
		rep.Unreferenced += subs[i].Unreferenced
		rep.Problems = append(rep.Problems, subs[i].Problems...)
	}
	if opts.ReadData {
		if err := r.CheckSites(ctx, rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}
