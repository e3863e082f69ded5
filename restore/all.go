package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/reprise-backup/reprise"
)

// AllOptions tune a multi-tenant restore. The zero value restores every
// tenant's latest snapshot, smallest first.
type AllOptions struct {
	// Options applies to each tenant's restore. Options.Concurrency is
	// the global number of ranged reads in flight, shared by the tenants
	// restored at once (0 means 32), and so are the decoders (twice
	// GOMAXPROCS, as for one restore): each tenant starts with its
	// 1/Parallel of both (one at least), and once the last tenant has
	// started, the share of each one that finishes goes to those still
	// running, so that the last and largest, restored alone at the end,
	// has all of them. (The reads of a tenant's tree, a few chunks ahead,
	// come on top.) Options.MemoryLimit is the global memory budget,
	// shared by all of them (0 means 64 MiB).
	Options
	// Tenants limits the restore to these tenants; empty means all.
	Tenants []string
	// Priority orders tenants: higher first; equal priorities go smallest
	// first, so that most customers are back soonest.
	Priority map[string]int
	// Parallel is the number of tenants restored at once; 0 means 32.
	// Small tenants are bound by round trips, not bandwidth, so many at
	// once bring most customers back soonest; and since requests and
	// decoders are shared, not multiplied, a high Parallel costs little
	// more than each tenant's plan and open files.
	Parallel int
	// OnProgress, when set, receives an event whenever a tenant finishes,
	// with Last set to its result.
	OnProgress func(AllProgress)
	// OnTick, when set, receives an event about every
	// Options.ProgressInterval (0 means a second) while tenants are
	// restored, Last nil: the bytes count what running tenants have
	// written so far too, so that a large tenant restored for hours, last
	// of a smallest-first order, still shows progress. OnTick and
	// OnProgress are never called at the same time.
	OnTick func(AllProgress)
}

// AllProgress reports a running multi-tenant restore.
type AllProgress struct {
	TenantsDone, TenantsFailed, TenantsTotal int
	TenantsRunning                           int   // being restored now
	Bytes                                    int64 // written so far, by finished and running tenants
	TotalBytes                               int64 // the latest snapshots' sizes, added up
	Elapsed                                  time.Duration
	ETA                                      time.Duration // from the byte rate so far; 0 when unknown
	Last                                     *TenantResult // the tenant just finished (OnProgress), nil for OnTick
}

// TenantResult is the outcome of one tenant's restore.
type TenantResult struct {
	Tenant   string
	Dir      string // where it was restored
	Snapshot string
	Result   *Result
	Err      error
	Finished time.Duration // since the start of All
}

const (
	defaultParallel = 32
	// maxScanners bounds the tenants opened and looked up at once before a
	// restore.All starts: a few small reads each.
	maxScanners = 64
)

// All restores the latest snapshot of many tenants into target/<tenant>,
// concurrently under one budget, in priority order (explicit priority,
// then smallest first). One tenant failing does not stop the others: each
// has its result. The error is non-nil only if the restore could not run
// at all, or (wrapping ErrIncomplete) when some tenant failed.
func All(ctx context.Context, r *reprise.Repository, target string, opts *AllOptions) ([]TenantResult, error) {
	if opts == nil {
		opts = &AllOptions{}
	}
	o := *opts
	if o.Concurrency <= 0 {
		o.Concurrency = defaultConcurrency
	}
	if o.Parallel <= 0 {
		o.Parallel = defaultParallel
	}
	if o.MemoryLimit <= 0 {
		o.MemoryLimit = defaultMemoryLimit
	}
	o.budget = semaphore.NewWeighted(o.MemoryLimit)
	names := o.Tenants
	var opened []*reprise.Tenant
	if len(names) == 0 {
		// Every tenant: opened at once, each envelope read once.
		var err error
		if opened, err = r.OpenTenants(ctx); err != nil {
			return nil, err
		}
		names = make([]string, len(opened))
		for i, t := range opened {
			names[i] = t.Name()
		}
	}
	type job struct {
		name string
		size int64
		snap string
		t    *reprise.Tenant // opened by the scan; closed once restored
		err  error
		dir  string
	}
	jobs := make([]*job, 0, len(names))
	used := map[string]bool{}
	for i, n := range names {
		j := &job{name: n, dir: filepath.Join(target, dirName(n, used))}
		if opened != nil {
			j.t = opened[i]
		}
		jobs = append(jobs, j)
	}
	// Find every tenant's latest snapshot and its size, for the order:
	// concurrently, since each costs round trips and a thousand of them
	// one after the other would delay the first restore by seconds.
	scan := make(chan *job)
	var scanners sync.WaitGroup
	for range min(len(jobs), maxScanners) {
		scanners.Add(1)
		go func() {
			defer scanners.Done()
			for j := range scan {
				if j.t == nil {
					t, err := r.OpenTenant(ctx, j.name)
					if err != nil {
						j.err = err
						continue
					}
					j.t = t
				}
				// The tenant is kept open for the restore: opening it
				// again costs its envelope's round trips (a tenant holds
				// only its keys, so a thousand open ones cost little).
				if s, err := j.t.Snapshot(ctx, "latest"); err != nil {
					j.err = err
					j.t.Close()
					j.t = nil
				} else {
					j.size, j.snap = s.Stats.Bytes, s.ID
				}
			}
		}()
	}
	for _, j := range jobs {
		scan <- j
	}
	close(scan)
	scanners.Wait()
	slices.SortStableFunc(jobs, func(a, b *job) int {
		if c := cmp.Compare(o.Priority[b.name], o.Priority[a.name]); c != 0 {
			return c
		}
		return cmp.Compare(a.size, b.size)
	})
	var total int64
	for _, j := range jobs {
		total += j.size
	}
	start := time.Now()
	results := make([]TenantResult, len(jobs))
	var done, failed, running atomic.Int64
	var written atomic.Int64
	var mu sync.Mutex // serializes the callbacks
	progress := func(last *TenantResult) AllProgress {
		p := AllProgress{TenantsDone: int(done.Load()), TenantsFailed: int(failed.Load()), TenantsTotal: len(jobs),
			TenantsRunning: int(running.Load()), Bytes: written.Load(), TotalBytes: total, Elapsed: time.Since(start), Last: last}
		if p.Bytes > 0 && p.Bytes < total {
			p.ETA = time.Duration(float64(p.Elapsed) * float64(total-p.Bytes) / float64(p.Bytes))
		}
		return p
	}
	if o.OnTick != nil {
		every := o.ProgressInterval
		if every <= 0 {
			every = time.Second
		}
		stop := make(chan struct{})
		var ticks sync.WaitGroup
		ticks.Add(1)
		go func() {
			defer ticks.Done()
			tk := time.NewTicker(every)
			defer tk.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tk.C:
					mu.Lock()
					o.OnTick(progress(nil))
					mu.Unlock()
				}
			}
		}()
		defer func() {
			close(stop)
			ticks.Wait()
		}()
	}
	share := newWorkShare(o.Concurrency, defaultDecoders(false), len(jobs))
	per := share.start(o.Parallel)
	sem := make(chan struct{}, o.Parallel)
	var wg sync.WaitGroup
	for i, j := range jobs {
		m := share.member()
		if ctx.Err() != nil {
			m.done()
			results[i] = TenantResult{Tenant: j.name, Dir: j.dir, Err: ctx.Err()}
			if j.t != nil {
				j.t.Close()
			}
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer m.done()
			res := TenantResult{Tenant: j.name, Dir: j.dir, Snapshot: j.snap, Err: j.err}
			if res.Err == nil {
				topts := o.Options
				topts.Concurrency, topts.decoders = per.fetchers, per.decoders
				topts.share, topts.written = m, &written
				running.Add(1)
				res.Result, res.Err = Dir(ctx, j.t, j.snap, j.dir, &topts)
				running.Add(-1)
				j.t.Close()
			}
			res.Finished = time.Since(start)
			if res.Err != nil {
				failed.Add(1)
			} else {
				done.Add(1)
			}
			results[i] = res
			if o.OnProgress != nil {
				mu.Lock()
				o.OnProgress(progress(&res))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var errs []error
	for _, res := range results {
		if res.Err != nil {
			errs = append(errs, fmt.Errorf("tenant %q: %w", res.Tenant, res.Err))
		}
	}
	if len(errs) > 0 {
		return results, fmt.Errorf("%w: %d of %d tenants failed: %w", ErrIncomplete, len(errs), len(jobs), errors.Join(errs...))
	}
	return results, nil
}

// dirName turns a tenant name into a directory name that is safe and
// unique among those already used.
func dirName(name string, used map[string]bool) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	d := b.String()
	if d == "" || d == "." || d == ".." {
		d = "_" + d
	}
	base := d
	for i := 2; used[d]; i++ {
		d = fmt.Sprintf("%s~%d", base, i)
	}
	used[d] = true
	return d
}
