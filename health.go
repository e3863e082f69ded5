package reprise

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/reprise-backup/reprise/internal/format"
)

// State is the health of one backup source.
type State string

// Health states, from best to worst.
const (
	// StateOK: the last backup succeeded, recently enough.
	StateOK State = "OK"
	// StateStale: the last success is older than the freshness policy
	// allows — a job that silently stopped running looks like this.
	StateStale State = "STALE"
	// StateFailed: the most recent backup run failed.
	StateFailed State = "FAILED"
	// StateNever: no backup of this tenant ever succeeded.
	StateNever State = "NEVER"
)

// Policy is a freshness policy: backups of the matching tenant and source
// are expected at least every StaleAfter. Empty Tenant or Source match any.
type Policy struct {
	Tenant     string
	Source     string
	StaleAfter time.Duration
}

// DefaultStaleAfter applies where no policy matches: a daily job, with an
// hour of slack.
const DefaultStaleAfter = 25 * time.Hour

// HealthOptions tune Health. The zero value applies DefaultStaleAfter to
// every source of every tenant, now.
type HealthOptions struct {
	// StaleAfter replaces DefaultStaleAfter for sources no policy matches.
	StaleAfter time.Duration
	// Policies, most specific match wins (tenant and source, then tenant,
	// then source).
	Policies []Policy
	// Tenants limits the report to these tenants; empty means all.
	Tenants []string
	// Now is the time to judge against; zero means time.Now().
	Now time.Time
}

// SourceHealth is the health of one tenant's backup source (a directory or
// a stream name).
type SourceHealth struct {
	Tenant      string
	Source      string // empty for a tenant that never had a backup
	State       State
	StaleAfter  time.Duration
	LastSuccess time.Time     // zero if never
	Age         time.Duration // since LastSuccess
	LastRun     time.Time     // end of the most recent run, successful or not
	LastError   string        // of the most recent failed run, if it is the latest run
	Snapshot    string        // produced by the last success
	BytesRead   int64         // by the last success
	BytesAdded  int64         // by the last success
	Duration    time.Duration // of the last success
	Runs        int           // backup runs recorded
	Failures    int           // failed backup runs recorded
	// CheckProblems is the number of problems the tenant's most recent
	// check found (-1 when it was never checked); CheckTime is when.
	CheckProblems int64
	CheckTime     time.Time
}

// HealthReport is the outcome of Health. OK is false when any source is
// stale, failed or never backed up.
type HealthReport struct {
	Time    time.Time
	Sources []SourceHealth
	OK      bool
	Counts  map[State]int
}

// Health reports, per tenant and source, whether backups are fresh, from
// the run records stored in the repository (so it works from any machine,
// including after the loss of the one that ran the backups). Tenants
// whose records cannot be read are reported FAILED with the reason.
func (r *Repository) Health(ctx context.Context, opts *HealthOptions) (*HealthReport, error) {
	if opts == nil {
		opts = &HealthOptions{}
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	names := opts.Tenants
	if len(names) == 0 {
		var err error
		if names, err = r.r.TenantNames(ctx); err != nil {
			return nil, err
		}
	}
	slices.Sort(names)
	rep := &HealthReport{Time: now, Counts: map[State]int{}}
	// Tenants are looked at healthTenants at once: each costs round trips
	// (its envelope, its run records), and a monitor polling a thousand
	// tenants over an object store cannot wait for them one by one.
	perTenant := make([][]SourceHealth, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(healthTenants)
	for i, name := range names {
		g.Go(func() error {
			srcs, err := r.tenantHealth(gctx, name, opts, now)
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				srcs = []SourceHealth{{Tenant: name, State: StateFailed, LastError: err.Error(), StaleAfter: opts.staleAfter(name, "")}}
			}
			perTenant[i] = srcs
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, srcs := range perTenant {
		rep.Sources = append(rep.Sources, srcs...)
	}
	rep.OK = true
	for _, s := range rep.Sources {
		rep.Counts[s.State]++
		if s.State != StateOK {
			rep.OK = false
		}
	}
	return rep, nil
}

// healthTenants bounds the tenants Health reads at once (each reads its
// run records many at once too).
const healthTenants = 8

func (o *HealthOptions) staleAfter(tenant, source string) time.Duration {
	best, score := time.Duration(0), -1
	for _, p := range o.Policies {
		if (p.Tenant != "" && p.Tenant != tenant) || (p.Source != "" && p.Source != source) {
			continue
		}
		s := 0
		if p.Tenant != "" {
			s += 2
		}
		if p.Source != "" {
			s++
		}
		if s > score {
			best, score = p.StaleAfter, s
		}
	}
	if score >= 0 && best > 0 {
		return best
	}
	if o.StaleAfter > 0 {
		return o.StaleAfter
	}
	return DefaultStaleAfter
}

func (r *Repository) tenantHealth(ctx context.Context, name string, opts *HealthOptions, now time.Time) ([]SourceHealth, error) {
	t, err := r.r.Tenant(ctx, name, false)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	recs, bad, err := t.Records(ctx)
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, errors.Join(errors.New("unreadable run records"), bad[0])
	}
	bySource := map[string]*SourceHealth{}
	checkProblems, checkTime := int64(-1), time.Time{}
	for _, rec := range recs { // oldest first
		if rec.Kind == format.RunCheck {
			checkProblems, checkTime = rec.Problems, rec.End
		}
		if rec.Kind != format.RunBackup {
			continue
		}
		s := bySource[rec.Source]
		if s == nil {
			s = &SourceHealth{Tenant: name, Source: rec.Source}
			bySource[rec.Source] = s
		}
		s.Runs++
		s.LastRun = rec.End
		if rec.OK {
			s.LastSuccess, s.Snapshot, s.LastError = rec.End, rec.Snapshot, ""
			s.BytesRead, s.BytesAdded, s.Duration = rec.BytesRead, rec.BytesAdded, rec.End.Sub(rec.Start)
		} else {
			s.Failures++
			s.LastError = rec.Error
		}
	}
	if len(bySource) == 0 {
		return []SourceHealth{{Tenant: name, State: StateNever, StaleAfter: opts.staleAfter(name, ""),
			CheckProblems: checkProblems, CheckTime: checkTime}}, nil
	}
	var out []SourceHealth
	for _, s := range bySource {
		s.StaleAfter = opts.staleAfter(name, s.Source)
		s.CheckProblems, s.CheckTime = checkProblems, checkTime
		switch {
		case s.LastError != "":
			s.State = StateFailed
		case s.LastSuccess.IsZero():
			s.State = StateNever
		case now.Sub(s.LastSuccess) > s.StaleAfter:
			s.State = StateStale
		default:
			s.State = StateOK
		}
		if !s.LastSuccess.IsZero() {
			s.Age = now.Sub(s.LastSuccess)
		}
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b SourceHealth) int { return cmp.Compare(a.Source, b.Source) })
	return out, nil
}

// RunRecord is one recorded run of a backup, restore, check or drill.
type RunRecord struct {
	Kind       string // "backup", "restore", "check" or "drill"
	Source     string
	Host       string
	Start, End time.Time
	OK         bool
	Error      string
	Snapshot   string
	Files      int64
	BytesRead  int64
	BytesAdded int64
	Bytes      int64
	Problems   int64
	// Stages holds per-stage seconds for drills (fetch, decrypt,
	// decompress, verify, write).
	Stages map[string]float64
}

// Runs returns the tenant's recorded runs, oldest first.
func (t *Tenant) Runs(ctx context.Context) ([]RunRecord, error) {
	recs, bad, err := t.t.Records(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RunRecord, len(recs))
	for i, r := range recs {
		out[i] = RunRecord{Kind: r.Kind, Source: r.Source, Host: r.Host, Start: r.Start, End: r.End, OK: r.OK,
			Error: r.Error, Snapshot: r.Snapshot, Files: r.Files, BytesRead: r.BytesRead, BytesAdded: r.BytesAdded,
			Bytes: r.Bytes, Problems: r.Problems, Stages: r.Stages}
	}
	return out, badError(bad)
}
