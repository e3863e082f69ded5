package reprise

import (
	"context"

	"github.com/reprise-backup/reprise/internal/repo"
)

// CheckOptions tune Check. The zero value checks the structure only.
type CheckOptions struct {
	// ReadData also reads every pack, authenticates and decrypts every
	// chunk and checks it against its ID. Four packs are read and checked
	// at once, each held whole (up to the pack size) while it is.
	ReadData bool
	// ReadDataPercent, in (0, 100), makes ReadData read a random sample of
	// that share of the packs (a scrub spread over several runs); 0 or 100
	// reads every pack.
	ReadDataPercent float64
}

// CheckReport is the outcome of Check. The repository is sound when
// Problems is empty.
type CheckReport struct {
	Tenants, Snapshots, Packs, Chunks int64
	// BytesRead counts the pack bytes read with ReadData.
	BytesRead int64
	// Unreferenced counts packs that no index names: left by interrupted
	// backups, harmless (their chunks are stored again when needed).
	Unreferenced int64
	// Problems lists every defect found, each naming the object at fault.
	Problems []Problem
}

// Problem is one defect found by Check. Err wraps the cause, testable with
// errors.Is (ErrAuth, ErrCorrupt, ErrChunkMissing, storage.ErrNotExist...).
type Problem struct {
	Tenant string // empty for repository-level objects
	Site   string // the site holding the bad copy, for multi-site repositories
	Object string // the stored object at fault, when there is one
	Err    error
}

func (p Problem) Error() string { return repo.Problem(p).Error() }

// Unwrap returns the cause.
func (p Problem) Unwrap() error { return p.Err }

// ErrBadCopy reports, in a multi-site repository, a site's copy that is
// missing or damaged while another site holds a good one: Repair fixes it.
var ErrBadCopy = repo.ErrBadCopy

// Check verifies the repository: for every tenant, that every snapshot's
// tree reads back and every chunk it references is indexed, and that every
// pack an index names exists; with ReadData, that every chunk in every
// pack authenticates, decrypts and matches its ID; in a multi-site
// repository, it verifies every site's copy (problems name the site). It
// returns an error
// only when it could not run (backend unreachable, cancelled); defects are
// reported in the CheckReport.
func (r *Repository) Check(ctx context.Context, opts *CheckOptions) (*CheckReport, error) {
	var o repo.CheckOptions
	if opts != nil {
		o.ReadData, o.ReadDataPercent = opts.ReadData, opts.ReadDataPercent
	}
	rep, err := r.r.Check(ctx, o)
	if err != nil {
		return nil, err
	}
	out := &CheckReport{
		Tenants: rep.Tenants, Snapshots: rep.Snapshots, Packs: rep.Packs, Chunks: rep.Chunks,
		BytesRead: rep.BytesRead, Unreferenced: rep.Unreferenced,
	}
	for _, p := range rep.Problems {
		out.Problems = append(out.Problems, Problem(p))
	}
	return out, nil
}

// ErrSingleSite reports Repair on a repository that has one site.
var ErrSingleSite = repo.ErrSingleSite

// Fix is one change made by Repair.
type Fix = repo.Fix

// RepairReport lists exactly what Repair changed and what it could not.
type RepairReport struct {
	// Fixed lists each copy added or replaced: site, object, source site
	// and why ("missing", or the verification error).
	Fixed []Fix
	// Removed lists copies of deleted objects removed from sites that
	// missed the deletion.
	Removed []string
	// Verified counts copies verified by authenticated decryption.
	Verified int
	// Unrepairable lists objects with no good copy on any reachable site.
	Unrepairable []Problem
}

// Repair brings every site of a multi-site repository (a storage built with
// storage/multisite) back to a full, verified copy: objects a site missed
// are copied to it, and every copy of every tenant object is verified by
// authenticated decryption — never by trust or size — and replaced from a
// verified copy when missing or damaged. It reports exactly what it
// changed, is idempotent, and is safe while backups run.
func (r *Repository) Repair(ctx context.Context) (*RepairReport, error) {
	rr, err := r.r.Repair(ctx)
	if rr == nil {
		return nil, err
	}
	out := &RepairReport{Fixed: rr.Fixed, Removed: rr.Removed, Verified: rr.Verified}
	for _, p := range rr.Unrepairable {
		out.Unrepairable = append(out.Unrepairable, Problem(p))
	}
	return out, err
}
