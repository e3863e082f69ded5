package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

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
	names, err := r.TenantNames(ctx)
	if err != nil {
		return rep, err
	}
	for _, n := range names {
		t, err := r.Tenant(ctx, n, false)
		if err != nil {
			rep.Unrepairable = append(rep.Unrepairable, Problem{Tenant: n, Err: err})
			continue
		}
		err = t.repairTenant(ctx, ms, rep, true)
		t.Close()
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// repairTenant verifies every copy of the tenant's objects on every site;
// with apply it replaces the bad ones, without it only lists them in
// rep.Fixed (what a repair would do).
func (t *Tenant) repairTenant(ctx context.Context, ms *multisite.Store, rep *RepairReport, apply bool) error {
	idx, _, err := t.LoadIndex(ctx) // reads around bad copies
	if err != nil {
		return err
	}
	loader := t.NewLoader(idx)
	type object struct {
		key    string
		verify func([]byte) error
	}
	var objs []object
	for _, p := range idx.Packs() {
		objs = append(objs, object{t.PackKey(p.ID), func(b []byte) error { return t.verifyPack(loader, p, b) }})
	}
	for _, area := range []struct{ dir, magic string }{{"i/", format.MagicIndex}, {"s/", format.MagicSnapshot}, {"r/", format.MagicRecord}} {
		prefix := t.DataPrefix() + area.dir
		err := t.Repo.St.List(ctx, prefix, func(i storage.Info) error {
			id, err := crypto.ParseID(strings.TrimPrefix(i.Key, prefix))
			if err != nil {
				return nil
			}
			objs = append(objs, object{i.Key, func(b []byte) error {
				_, err := t.openSealed(area.magic, &id, b)
				return err
			}})
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, o := range objs {
		if err := ctx.Err(); err != nil {
			return err
		}
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
			continue
		}
		if good == nil {
			rep.Unrepairable = append(rep.Unrepairable, Problem{Tenant: t.Name, Object: o.key, Err: errors.New("no site holds a good copy")})
			continue
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
	}
	return nil
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
	names, err := r.TenantNames(ctx)
	if err != nil {
		return err
	}
	for _, n := range names {
		t, err := r.Tenant(ctx, n, false)
		if err != nil {
			continue // reported by Check
		}
		var rr RepairReport
		err = t.repairTenant(ctx, ms, &rr, false)
		t.Close()
		if err != nil {
			return err
		}
		for _, f := range rr.Fixed {
			rep.Problems = append(rep.Problems, Problem{Tenant: n, Site: f.Site, Object: f.Object,
				Err: fmt.Errorf("copy %s: %w", f.Reason, ErrBadCopy)})
		}
		rep.Problems = append(rep.Problems, rr.Unrepairable...)
	}
	return nil
}

// ErrBadCopy reports a site's copy that is missing or fails verification
// while another site holds a good one: repair fixes it.
var ErrBadCopy = errors.New("bad copy on one site (repair replaces it)")
