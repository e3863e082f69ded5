package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/restore"
)

func cmdForget(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var tenant string
	var p reprise.Retention
	var dry, prune, asJSON bool
	var grace time.Duration
	fs := newFlagSet(e, commandByName("forget"), &cf)
	fs.StringVar(&tenant, "tenant", "", "`name` of the tenant (required)")
	fs.IntVar(&p.KeepLast, "keep-last", 0, "keep the `N` newest snapshots")
	fs.IntVar(&p.KeepHourly, "keep-hourly", 0, "keep the newest snapshot of each of the last `N` hours")
	fs.IntVar(&p.KeepDaily, "keep-daily", 0, "keep the newest snapshot of each of the last `N` days")
	fs.IntVar(&p.KeepWeekly, "keep-weekly", 0, "keep the newest snapshot of each of the last `N` weeks")
	fs.IntVar(&p.KeepMonthly, "keep-monthly", 0, "keep the newest snapshot of each of the last `N` months")
	fs.IntVar(&p.KeepYearly, "keep-yearly", 0, "keep the newest snapshot of each of the last `N` years")
	fs.DurationVar(&p.KeepWithin, "keep-within", 0, "keep every snapshot within `DURATION` of the newest")
	fs.BoolVar(&dry, "dry-run", false, "show what would be kept and forgotten, change nothing")
	fs.BoolVar(&prune, "prune", false, "prune afterwards (reclaims space in a later prune, after the grace period)")
	fs.DurationVar(&grace, "grace", 0, "with --prune: grace period before marked data is deleted (default 1h)")
	fs.BoolVar(&asJSON, "json", false, "print the decisions as JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("forget takes no arguments (got %q)", pos)
	}
	if tenant == "" {
		return usageErrorf("--tenant is required")
	}
	if p.IsZero() {
		return usageErrorf("give at least one --keep-* rule: a policy that keeps nothing would forget every snapshot")
	}
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	t, err := openTenant(ctx, sess.Repo, tenant)
	if err != nil {
		return err
	}
	defer t.Close()
	ds, err := t.Forget(ctx, p, &reprise.ForgetOptions{DryRun: dry})
	if asJSON {
		type dj struct {
			ID            string     `json:"id"`
			Time          time.Time  `json:"time"`
			Keep          bool       `json:"keep"`
			Reasons       []string   `json:"reasons"`
			Retained      bool       `json:"retained,omitempty"`
			RetainedUntil *time.Time `json:"retained_until,omitempty"`
		}
		out := make([]dj, len(ds))
		for i, d := range ds {
			out[i] = dj{ID: d.Snapshot.ID, Time: d.Snapshot.Time, Keep: d.Keep, Reasons: nonNil(d.Reasons), Retained: d.Retained}
			if !d.RetainedUntil.IsZero() {
				out[i].RetainedUntil = &ds[i].RetainedUntil
			}
		}
		if jerr := writeJSON(e.stdout, out); jerr != nil {
			return jerr
		}
	} else {
		kept, retained := 0, 0
		for _, d := range ds {
			verb := "forget"
			reasons := strings.Join(d.Reasons, ", ")
			switch {
			case d.Keep:
				verb, kept = "keep  ", kept+1
			case dry:
				verb = "would forget"
			case d.Retained:
				verb, retained = "retained", retained+1
				reasons = "the storage retains it"
				if !d.RetainedUntil.IsZero() {
					reasons += " until " + d.RetainedUntil.Local().Format("2006-01-02 15:04:05")
				}
			}
			fmt.Fprintf(e.stdout, "%s %s %s  %s\n", verb, d.Snapshot.ShortID(), d.Snapshot.Time.Local().Format("2006-01-02 15:04:05"), reasons)
		}
		fmt.Fprintf(e.stdout, "%d snapshot(s) kept, %d forgotten%s\n", kept, len(ds)-kept-retained, map[bool]string{true: " (dry run: nothing changed)"}[dry])
		if retained > 0 {
			fmt.Fprintf(e.stdout, "%d snapshot(s) to forget are under retention (object lock) and stay: forget again once it ends\n", retained)
		}
	}
	if err != nil {
		return err
	}
	if prune && !dry {
		rep, err := sess.Repo.Prune(ctx, &reprise.PruneOptions{Grace: grace}, tenant)
		if err != nil {
			return err
		}
		printPrune(e, rep, false)
	}
	return nil
}

func cmdPrune(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var dry, asJSON bool
	var grace time.Duration
	fs := newFlagSet(e, commandByName("prune"), &cf)
	fs.DurationVar(&grace, "grace", 0, "how long marked data waits before deletion (default 1h)")
	fs.BoolVar(&dry, "dry-run", false, "show what would be done, change nothing")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("prune takes no arguments (got %q)", pos)
	}
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	rep, err := sess.Repo.Prune(ctx, &reprise.PruneOptions{Grace: grace, DryRun: dry})
	if err != nil {
		return err
	}
	printPrune(e, rep, asJSON)
	return nil
}

func printPrune(e *env, rep *reprise.PruneReport, asJSON bool) {
	if asJSON {
		writeJSON(e.stdout, rep)
		return
	}
	fmt.Fprintf(e.stdout, "prune: %d snapshot(s), %d chunk(s) in use, %d unused; %d pack(s) deleted (%s), %d newly marked, %d waiting, %d repacked (%s copied), %d index object(s) consolidated\n",
		rep.Snapshots, rep.ChunksUsed, rep.ChunksUnused, rep.PacksDeleted, formatBytes(rep.BytesDeleted),
		rep.PacksMarked, rep.PacksWaiting, rep.PacksRepacked, formatBytes(rep.BytesRepacked), rep.IndexesRemoved)
	if rep.RunningBackups {
		fmt.Fprintln(e.stdout, "prune: backups are running: marked data waits until they finish")
	}
	if rep.PacksRetained > 0 || rep.IndexesRetained > 0 {
		fmt.Fprintf(e.stdout, "prune: %d pack(s) and %d index object(s) are under retention (object lock) and stay; a later prune deletes them once it ends\n",
			rep.PacksRetained, rep.IndexesRetained)
	}
	if rep.RecordsRemoved > 0 {
		fmt.Fprintf(e.stdout, "prune: %d run record(s) older than the records' retention removed\n", rep.RecordsRemoved)
	}
	if rep.LeasesRemoved > 0 {
		fmt.Fprintf(e.stdout, "prune: %d lease object(s) of finished backups removed\n", rep.LeasesRemoved)
	}
}

func cmdRestoreAll(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var target, prioFile string
	var parallel int
	var asJSON, overwrite, resume bool
	fs := newFlagSet(e, commandByName("restore-all"), &cf)
	fs.StringVar(&target, "target", "", "`DIR` to restore into, one subdirectory per tenant (required)")
	fs.StringVar(&prioFile, "priority", "", "`FILE` of 'tenant priority' lines; higher first, then smallest first")
	fs.IntVar(&parallel, "parallel", 0, "tenants restored at once (default 32; requests and decoders are shared between them)")
	fs.BoolVar(&overwrite, "overwrite", false, "replace files that already exist")
	fs.BoolVar(&resume, "resume", false, "continue an interrupted restore-all into the same target: keep what is already complete and verified, fetch the rest")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object per tenant result")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("restore-all takes no arguments (got %q)", pos)
	}
	if target == "" {
		return usageErrorf("--target is required")
	}
	prio := map[string]int{}
	if prioFile != "" {
		f, err := os.Open(prioFile)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			i := strings.LastIndexAny(line, " \t")
			v, err := strconv.Atoi(strings.TrimSpace(line[max(i, 0):]))
			if i < 0 || err != nil {
				f.Close()
				return fmt.Errorf("%s:%d: want 'tenant priority'", prioFile, n)
			}
			prio[strings.TrimSpace(line[:i])] = v
		}
		f.Close()
	}
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	opts := &restore.AllOptions{Priority: prio, Parallel: parallel}
	opts.Overwrite, opts.Resume = overwrite, resume
	// A line per tenant as it finishes, and in between (on a terminal) a
	// status line with the bytes written so far, running tenants included:
	// the last tenant of a smallest-first order is the largest, and may
	// take hours alone.
	status := newStatusLine(e.stderr, e.progress && !cf.verbose && !asJSON)
	if status != nil {
		opts.ProgressInterval = 200 * time.Millisecond
		opts.OnTick = func(p restore.AllProgress) {
			status.update("restore-all", p.Bytes, p.TotalBytes, p.Elapsed,
				fmt.Sprintf("%d/%d tenants done, %d running", p.TenantsDone+p.TenantsFailed, p.TenantsTotal, p.TenantsRunning))
		}
		defer status.stop()
	}
	opts.OnProgress = func(p restore.AllProgress) {
		if asJSON {
			return
		}
		res := "ok"
		if p.Last.Err != nil {
			res = "FAILED: " + p.Last.Err.Error()
		}
		status.clear()
		fmt.Fprintf(e.stderr, "[%d/%d] %s %s (%s restored, %s elapsed, ETA %s)\n", p.TenantsDone+p.TenantsFailed, p.TenantsTotal,
			p.Last.Tenant, res, formatBytes(p.Bytes), formatDuration(p.Elapsed), formatDuration(p.ETA))
	}
	results, err := restore.All(ctx, sess.Repo, target, opts)
	status.stop()
	if asJSON {
		type rj struct {
			Tenant   string  `json:"tenant"`
			Dir      string  `json:"dir"`
			Snapshot string  `json:"snapshot"`
			Files    int64   `json:"files"`
			Bytes    int64   `json:"bytes"`
			Seconds  float64 `json:"seconds"`
			Error    string  `json:"error,omitempty"`
		}
		out := make([]rj, len(results))
		for i, r := range results {
			out[i] = rj{Tenant: r.Tenant, Dir: r.Dir, Snapshot: r.Snapshot, Seconds: r.Finished.Seconds()}
			if r.Result != nil {
				out[i].Files, out[i].Bytes = r.Result.Files, r.Result.Bytes
			}
			if r.Err != nil {
				out[i].Error = r.Err.Error()
			}
		}
		if jerr := writeJSON(e.stdout, out); jerr != nil {
			return jerr
		}
	}
	if err != nil && !errors.Is(err, restore.ErrIncomplete) {
		return err
	}
	if err != nil {
		return fmt.Errorf("some tenants failed: %w", err)
	}
	return nil
}
