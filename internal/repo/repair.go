package repo

import (
	"bytes"
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
	"github.com/reprise-backup/reprise/storage/multisite"
)

// ErrSingleSite reports a repair asked of a repository with one site.
var ErrSingleSite = errors.New("repair needs a repository of several sites: with one site there is no other copy to repair from")

// Fix is one change made by Repair.
type Fix struct {
	Site   string // the site that received a copy
	Object string
	From   string // the site the good copy came from
	Reason string // why the site's copy was replaced: missing, or the verification error
}

// RepairReport lists exactly what Repair changed, and what it could not.
type RepairReport struct {
	Fixed []Fix
	// Removed lists copies of deleted objects removed from sites that
	// missed the deletion ("site: key").
	Removed []string
	// Verified counts the copies checked by authenticated decryption.
	Verified int
	// Unrepairable lists objects with no good copy on any site.
	Unrepairable []Problem
}

// FindMultisite returns the multi-site store s is or wraps, if any.
func FindMultisite(s storage.Storage) *multisite.Store {
	for s != nil {
		if m, ok := s.(*multisite.Store); ok {
			return m
		}
		w, ok := s.(storage.Wrapper)
		if !ok {
			return nil
		}
		s = w.Unwrap()
	}
	return nil
}

// Repair brings every site of a multi-site repository back to a full,
// verified copy: first the objects sites missed (recorded missed writes,
// wiped sites, deletions missed), then every tenant's packs, indexes,
// snapshots and run records on every site, each verified by authenticated
// decryption — never by trust or by size — and replaced from a verified
// copy when missing or damaged. It is idempotent, and safe while backups
// run: it only adds copies of objects that exist, or replaces damaged
// copies with verified bytes.
func (r *Repo) Repair(ctx context.Context) (*RepairReport, error) {
	if err := r.RefuseAppendOnly("repair"); err != nil {
		return nil, err
	}
	ms := FindMultisite(r.St)
	if ms == nil {
		return nil, ErrSingleSite
	}
	rep := &RepairReport{}
	for _, step := range []func(context.Context) (multisite.CatchUpReport, error){
		ms.CatchUp,
		func(ctx context.Context) (multisite.CatchUpReport, error) { return ms.Resync(ctx, "") },
	} {
		cu, err := step(ctx)
		for _, c := range cu.Copied {
			rep.Fixed = append(rep.Fixed, Fix{Site: c.To, Object: c.Key, From: c.From, Reason: "missing"})
		}
		for _, d := range cu.Removed {
			rep.Removed = append(rep.Removed, d.Site+": "+d.Key)
		}
		if err != nil && !errors.Is(err, multisite.ErrIncomplete) {
			return rep, err
		}
	}
	failed, _, subs, err := r.repairTenants(ctx, ms, true)
	rep.Unrepairable = append(rep.Unrepairable, failed...)
	for i := range subs {
		rep.add(&subs[i])
	}
	return rep, err
}

// add adds sub's fixes, verifications and problems to rep.
func (rep *RepairReport) add(sub *RepairReport) {
	rep.Fixed = append(rep.Fixed, sub.Fixed...)
	rep.Removed = append(rep.Removed, sub.Removed...)
	rep.Verified += sub.Verified
	rep.Unrepairable = append(rep.Unrepairable, sub.Unrepairable...)
}

// repairTenants runs repairTenant over every tenant, tenantCheckers at
// once, and returns a problem for each tenant whose keys do not open, and
// the names and reports of the others, in name order. Every copy of every
// object is read from every site, so, as for Check, objects are verified
// concurrently within bounds shared by all tenants: up to 32 objects at
// once (most are small: indexes, snapshots, run records), holding twice
// their size (the good copy and the one being verified) within 8 pack
// sizes (128 MiB at least): 4 packs at once.
func (r *Repo) repairTenants(ctx context.Context, ms *multisite.Store, apply bool) (failed []Problem, names []string, subs []RepairReport, err error) {
	var mu sync.Mutex
	ts, err := r.openTenants(ctx, func(_ format.Handle, name string, err error) {
		mu.Lock()
		failed = append(failed, Problem{Tenant: name, Err: err})
		mu.Unlock()
	})
	if err != nil {
		return nil, nil, nil, err
	}
	slices.SortFunc(failed, func(a, b Problem) int { return strings.Compare(a.Tenant, b.Tenant) })
	lim := newBudget(32, 2*max(packBytes, 4*int64(r.Config.PackSize)))
	names = make([]string, len(ts))
	subs = make([]RepairReport, len(ts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(tenantCheckers)
	for i, t := range ts {
		names[i] = t.Name
		g.Go(func() error {
			defer t.Close()
			return t.repairTenant(gctx, ms, lim, &subs[i], apply)
		})
	}
	err = g.Wait()
	return failed, names, subs, err
}

// repairTenant verifies every copy of the tenant's objects on every site;
// with apply it replaces the bad ones, without it only lists them in
// rep.Fixed (what a repair would do).
func (t *Tenant) repairTenant(ctx context.Context, ms *multisite.Store, lim *budget, rep *RepairReport, apply bool) error {
	idx, _, err := t.LoadIndex(ctx) // reads around bad copies
	if err != nil {
		return err
	}
	loader := t.NewLoader(idx)
	var objs []repairObject
	// A pack's size is not in the index: the target size stands for it.
	packSize := int64(t.Repo.Config.PackSize)
	for _, p := range idx.Packs() {
		objs = append(objs, repairObject{t.PackKey(p.ID), packSize, func(b []byte) error { return t.verifyPack(loader, p, b) }})
	}
	for _, area := range []struct{ dir, magic string }{{"i/", format.MagicIndex}, {"s/", format.MagicSnapshot}, {"r/", format.MagicRecord}} {
		prefix := t.DataPrefix() + area.dir
		err := t.Repo.St.List(ctx, prefix, func(i storage.Info) error {
			id, err := crypto.ParseID(strings.TrimPrefix(i.Key, prefix))
			if err != nil {
				return nil
			}
			objs = append(objs, repairObject{i.Key, i.Size, func(b []byte) error {
				_, err := t.openSealed(area.magic, &id, b)
				return err
			}})
			return nil
		})
		if err != nil {
			return err
		}
	}
	subs, err := inOrder(ctx, lim, len(objs), func(i int) int64 { return 2 * objs[i].size }, func(ctx context.Context, i int, sub *RepairReport) error {
		return t.repairCopies(ctx, ms, objs[i], sub, apply)
	})
	for i := range subs {
		rep.add(&subs[i])
	}
	return err
}

// repairObject is one object of a tenant to verify on every site: its key,
// its size (for the budget) and how to verify a copy.
type repairObject struct {
	key    string
	size   int64
	verify func([]byte) error
}

// repairCopies reads o from every site and verifies each copy; with apply
// it replaces the missing or bad copies with a good one.
func (t *Tenant) repairCopies(ctx context.Context, ms *multisite.Store, o repairObject, rep *RepairReport, apply bool) error {
	var good []byte
	var from string
	type badCopy struct{ site, reason string }
	var bad []badCopy
	var sites []storage.Replica
	for _, c := range ms.Replicas() {
		sites = append(sites, c)
		b, err := storage.ReadAll(ctx, c.Storage, o.key)
		if err == nil {
			err = o.verify(b)
			rep.Verified++
		}
		switch {
		case err == nil:
			if good == nil {
				good, from = b, c.Name
			}
		case errors.Is(err, storage.ErrNotExist):
			bad = append(bad, badCopy{c.Name, "missing"})
		case isFatalStorage(err) || ctx.Err() != nil:
			bad = nil // site unreachable: leave it for another run
			rep.Unrepairable = append(rep.Unrepairable, Problem{Tenant: t.Name, Object: o.key, Err: fmt.Errorf("site %s: %w", c.Name, err)})
		default:
			bad = append(bad, badCopy{c.Name, err.Error()})
		}
	}
	if len(bad) == 0 {
		return nil
	}
	if good == nil {
		rep.Unrepairable = append(rep.Unrepairable, Problem{Tenant: t.Name, Object: o.key, Err: errors.New("no site holds a good copy")})
		return nil
	}
	for _, b := range bad {
		for _, c := range sites {
			if c.Name != b.site {
				continue
			}
			if !apply {
				rep.Fixed = append(rep.Fixed, Fix{Site: c.Name, Object: o.key, From: from, Reason: b.reason})
				continue
			}
			// Every object repaired here is a data object: retained
			// like the original (a plain put, as it replaces a bad copy).
			if err := c.Storage.Put(ctx, o.key, bytes.NewReader(good), int64(len(good)), &storage.PutOptions{Retain: true}); err != nil {
				rep.Unrepairable = append(rep.Unrepairable, Problem{Tenant: t.Name, Object: o.key, Err: fmt.Errorf("site %s: %w", c.Name, err)})
				continue
			}
			rep.Fixed = append(rep.Fixed, Fix{Site: c.Name, Object: o.key, From: from, Reason: b.reason})
		}
	}
	return ctx.Err()
}

// verifyPack authenticates a whole pack: trailer, header, and every chunk
// (decrypted, decoded and checked against its ID).
func (t *Tenant) verifyPack(loader *Loader, p PackRef, data []byte) error {
	if len(data) < format.TrailerSize {
		return fmt.Errorf("%w: pack of %d bytes", format.ErrCorrupt, len(data))
	}
	gen, hlen, err := format.ParseTrailer(data[len(data)-format.TrailerSize:])
	if err != nil {
		return err
	}
	if gen != p.Gen || hlen > len(data)-format.TrailerSize {
		return fmt.Errorf("%w: pack trailer", format.ErrCorrupt)
	}
	keys, err := t.Keys(gen)
	if err != nil {
		return err
	}
	hdr := data[len(data)-format.TrailerSize-hlen : len(data)-format.TrailerSize]
	blobs, err := format.OpenPackHeader(&keys.Data, &p.ID, gen, &t.Handle, hdr, int64(len(data)))
	if err != nil {
		return err
	}
	var s Scratch
	var buf []byte
	for _, b := range blobs {
		loc := Loc{Seq: b.Seq, Offset: b.Offset, SealedLen: b.SealedLen, RawLen: b.RawLen, Kind: b.Kind}
		if buf, err = loader.Open(buf[:0], b.ID, loc, p, data[b.Offset:b.Offset+b.SealedLen], &s); err != nil {
			return err
		}
	}
	return nil
}

// CheckSites verifies every copy of every tenant object on every site of a
// multi-site repository, adding a problem per missing or damaged copy.
func (r *Repo) CheckSites(ctx context.Context, rep *CheckReport) error {
	ms := FindMultisite(r.St)
	if ms == nil {
		return nil
	}
	// Tenants whose keys do not open are reported by Check.
	_, names, subs, err := r.repairTenants(ctx, ms, false)
	if err != nil {
		return err
	}
	for i, rr := range subs {
		for _, f := range rr.Fixed {
			rep.Problems = append(rep.Problems, Problem{Tenant: names[i], Site: f.Site, Object: f.Object,
				Err: fmt.Errorf("copy %s: %w", f.Reason, ErrBadCopy)})
		}
		rep.Problems = append(rep.Problems, rr.Unrepairable...)
	}
	return nil
}

// ErrBadCopy reports a site's copy that is missing or fails verification
// while another site holds a good one: repair fixes it.
var ErrBadCopy = errors.New("bad copy on one site (repair replaces it)")
