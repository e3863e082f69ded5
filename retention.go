package reprise

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/repo"
	"github.com/reprise-backup/reprise/storage"
)

// Retention is a retention policy: a snapshot is kept when any rule keeps
// it. Counting rules keep the newest snapshot of each of the last N hours,
// days, weeks (ISO), months or years that have one; KeepWithin keeps every
// snapshot taken within that duration of the newest one.
type Retention struct {
	KeepLast    int
	KeepHourly  int
	KeepDaily   int
	KeepWeekly  int
	KeepMonthly int
	KeepYearly  int
	KeepWithin  time.Duration
}

// IsZero reports whether the policy keeps nothing (Forget refuses it).
func (p Retention) IsZero() bool { return p == Retention{} }

// Decision is what a retention policy decided for one snapshot, and why.
type Decision struct {
	Snapshot Snapshot
	Keep     bool
	Reasons  []string // e.g. "last 3", "daily 2021-03-10", "within 48h"
	// Retained is set by Forget on a snapshot it was to forget but the
	// storage keeps under retention (S3 Object Lock, storage.ErrRetained):
	// the snapshot stays, with its data, and a later Forget removes it
	// once the retention ends (RetainedUntil, when the storage said).
	Retained      bool
	RetainedUntil time.Time
}

// ForgetOptions tune Forget.
type ForgetOptions struct {
	// DryRun decides and reports without deleting anything.
	DryRun bool
}

// ErrEmptyPolicy reports a retention policy that would forget everything.
var ErrEmptyPolicy = errors.New("retention policy keeps nothing: refusing to forget every snapshot")

// Decide applies the policy to snapshots (any order); decisions come back
// newest first. Times are judged in the snapshots' own time zone (UTC).
func (p Retention) Decide(snaps []Snapshot) []Decision {
	ds := make([]Decision, len(snaps))
	for i := range snaps {
		ds[i].Snapshot = snaps[len(snaps)-1-i]
	}
	// Newest first, by time.
	sortNewestFirst(ds)
	keep := func(i int, why string) {
		ds[i].Keep = true
		ds[i].Reasons = append(ds[i].Reasons, why)
	}
	for i := 0; i < len(ds) && i < p.KeepLast; i++ {
		keep(i, fmt.Sprintf("last %d", p.KeepLast))
	}
	buckets := []struct {
		n    int
		name string
		key  func(time.Time) string
	}{
		{p.KeepHourly, "hourly", func(t time.Time) string { return t.Format("2006-01-02 15h") }},
		{p.KeepDaily, "daily", func(t time.Time) string { return t.Format("2006-01-02") }},
		{p.KeepWeekly, "weekly", func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{p.KeepMonthly, "monthly", func(t time.Time) string { return t.Format("2006-01") }},
		{p.KeepYearly, "yearly", func(t time.Time) string { return t.Format("2006") }},
	}
	for _, b := range buckets {
		last, count := "", 0
		for i := range ds {
			if count >= b.n {
				break
			}
			k := b.key(ds[i].Snapshot.Time.UTC())
			if k != last {
				keep(i, b.name+" "+k)
				last = k
				count++
			}
		}
	}
	if p.KeepWithin > 0 && len(ds) > 0 {
		newest := ds[0].Snapshot.Time
		for i := range ds {
			if newest.Sub(ds[i].Snapshot.Time) <= p.KeepWithin {
				keep(i, "within "+p.KeepWithin.String())
			}
		}
	}
	return ds
}

func sortNewestFirst(ds []Decision) {
	for i := 1; i < len(ds); i++ { // insertion sort: inputs are nearly sorted
		for j := i; j > 0 && ds[j].Snapshot.Time.After(ds[j-1].Snapshot.Time); j-- {
			ds[j], ds[j-1] = ds[j-1], ds[j]
		}
	}
}

// Forget applies a retention policy to the tenant's snapshots, deleting the
// snapshot objects it does not keep (their data stays until Prune), and
// returns every decision with its reasons, newest first. A snapshot the
// storage retains is not an error: it stays, and its decision says
// Retained. Snapshots are deleted many at once; if some deletes fail, the
// others still happen and the first failure is returned. In an
// append-only repository Forget fails with ErrAppendOnly (unless DryRun).
func (t *Tenant) Forget(ctx context.Context, p Retention, opts *ForgetOptions) ([]Decision, error) {
	if p.IsZero() {
		return nil, ErrEmptyPolicy
	}
	if opts == nil {
		opts = &ForgetOptions{}
	}
	if !opts.DryRun {
		if err := t.t.Repo.RefuseAppendOnly("forget"); err != nil {
			return nil, err
		}
	}
	snaps, err := t.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	ds := p.Decide(snaps)
	if opts.DryRun {
		return ds, nil
	}
	var ids []crypto.ID
	var forget []*Decision
	for i := range ds {
		if ds[i].Keep {
			continue
		}
		id, err := crypto.ParseID(ds[i].Snapshot.ID)
		if err != nil {
			return ds, err
		}
		ids, forget = append(ids, id), append(forget, &ds[i])
	}
	var first error
	for i, err := range t.t.DeleteSnapshots(ctx, ids) {
		d := forget[i]
		if errors.Is(err, storage.ErrRetained) {
			d.Retained = true
			d.RetainedUntil, _ = storage.RetainedUntil(err)
		} else if err != nil && first == nil {
			first = fmt.Errorf("forgetting snapshot %s: %w", d.Snapshot.ShortID(), err)
		}
	}
	return ds, first
}

// PruneOptions tune Prune. The zero value is safe.
type PruneOptions = repo.PruneOptions

// PruneReport says what Prune did, per tenant summed.
type PruneReport = repo.PruneReport

// Prune reclaims the space of data no snapshot uses, for every tenant (or
// the given ones). It is safe while backups run on other machines: packs
// are first marked, and deleted by a later prune once the grace period
// has passed and every backup running at marking time has finished
// (backups announce themselves with leases; no lock is held). Partly used
// packs above the waste threshold are repacked. It reads indexes and trees,
// not packs (except those it repacks). Objects the storage retains (S3
// Object Lock) are kept and reported (PruneReport.Retained); a later prune
// deletes them once their retention ends. It also removes the lease
// objects of ended and dead backups. In an append-only repository it fails
// with ErrAppendOnly (unless DryRun).
func (r *Repository) Prune(ctx context.Context, opts *PruneOptions, tenants ...string) (*PruneReport, error) {
	var o PruneOptions
	if opts != nil {
		o = *opts
	}
	if !o.DryRun {
		if err := r.r.RefuseAppendOnly("prune"); err != nil {
			return nil, err
		}
	}
	if len(tenants) == 0 {
		var err error
		if tenants, err = r.r.TenantNames(ctx); err != nil {
			return nil, err
		}
	}
	total := &PruneReport{}
	for _, name := range tenants {
		t, err := r.r.Tenant(ctx, name, false)
		if err != nil {
			return total, err
		}
		rep, err := t.Prune(ctx, o)
		t.Close()
		if err != nil {
			return total, fmt.Errorf("tenant %q: %w", name, err)
		}
		total.Snapshots += rep.Snapshots
		total.ChunksUsed += rep.ChunksUsed
		total.ChunksUnused += rep.ChunksUnused
		total.PacksMarked += rep.PacksMarked
		total.PacksDeleted += rep.PacksDeleted
		total.BytesDeleted += rep.BytesDeleted
		total.PacksRepacked += rep.PacksRepacked
		total.BytesRepacked += rep.BytesRepacked
		total.PacksWaiting += rep.PacksWaiting
		total.IndexesRemoved += rep.IndexesRemoved
		total.RunningBackups = total.RunningBackups || rep.RunningBackups
		total.PacksRetained += rep.PacksRetained
		total.IndexesRetained += rep.IndexesRetained
		total.Retained = append(total.Retained, rep.Retained...)
		total.LeasesRemoved += rep.LeasesRemoved
		total.RecordsRemoved += rep.RecordsRemoved
	}
	return total, nil
}
