package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/restore"
)

// healthJSON is the output of "health --json".
type healthJSON struct {
	OK      bool               `json:"ok"`
	Time    time.Time          `json:"time"`
	Sources []sourceHealthJSON `json:"sources"`
}

type sourceHealthJSON struct {
	Tenant            string     `json:"tenant"`
	Source            string     `json:"source"`
	State             string     `json:"state"`
	LastSuccess       *time.Time `json:"last_success"` // null if never
	AgeSeconds        *float64   `json:"age_seconds"`  // null if never
	LastError         string     `json:"last_error"`
	Snapshot          string     `json:"snapshot"`
	BytesRead         int64      `json:"bytes_read"`
	BytesAdded        int64      `json:"bytes_added"`
	StaleAfterSeconds float64    `json:"stale_after_seconds"`
}

func cmdHealth(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var staleAfter time.Duration
	var asJSON bool
	fs := newFlagSet(e, commandByName("health"), &cf)
	fs.DurationVar(&staleAfter, "stale-after", 0, "a source whose last successful backup is older than this `duration` is STALE\n(e.g. 26h, 90m; default 25h)")
	fs.BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("health takes no arguments (got %q)", pos)
	}
	if staleAfter < 0 {
		return usageErrorf("--stale-after %v: want a positive duration", staleAfter)
	}
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	rep, err := sess.Repo.Health(ctx, &reprise.HealthOptions{StaleAfter: staleAfter})
	if err != nil {
		return fmt.Errorf("health could not be read: %w", err)
	}
	if asJSON {
		out := healthJSON{OK: rep.OK, Time: rep.Time, Sources: []sourceHealthJSON{}}
		for _, s := range rep.Sources {
			j := sourceHealthJSON{Tenant: s.Tenant, Source: s.Source, State: string(s.State), LastError: s.LastError,
				Snapshot: s.Snapshot, BytesRead: s.BytesRead, BytesAdded: s.BytesAdded, StaleAfterSeconds: s.StaleAfter.Seconds()}
			if !s.LastSuccess.IsZero() {
				t, age := s.LastSuccess, s.Age.Seconds()
				j.LastSuccess, j.AgeSeconds = &t, &age
			}
			out.Sources = append(out.Sources, j)
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return err
		}
	} else {
		printHealth(e, rep)
	}
	if rep.OK {
		return nil
	}
	var counts []string
	for _, st := range []reprise.State{reprise.StateStale, reprise.StateFailed, reprise.StateNever} {
		if n := rep.Counts[st]; n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, st))
		}
	}
	return fmt.Errorf("unhealthy: %s", strings.Join(counts, ", "))
}

func printHealth(e *env, rep *reprise.HealthReport) {
	if len(rep.Sources) == 0 {
		fmt.Fprintln(e.stdout, "no tenants")
		return
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tSOURCE\tSTATE\tLAST SUCCESS\tAGE\tSTALE AFTER\tSNAPSHOT\tLAST ERROR")
	for _, s := range rep.Sources {
		last, age, snap := "never", "-", "-"
		if !s.LastSuccess.IsZero() {
			last = s.LastSuccess.Local().Format("2006-01-02 15:04:05")
			age = formatDuration(s.Age)
		}
		if len(s.Snapshot) >= 8 {
			snap = s.Snapshot[:8]
		}
		src := s.Source
		if src == "" {
			src = "-"
		}
		msg := oneLine(s.LastError)
		if len(msg) > 80 {
			msg = msg[:77] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Tenant, src, s.State, last, age, formatDuration(s.StaleAfter), snap, msg)
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "%d source(s): %d OK, %d STALE, %d FAILED, %d NEVER\n", len(rep.Sources),
		rep.Counts[reprise.StateOK], rep.Counts[reprise.StateStale], rep.Counts[reprise.StateFailed], rep.Counts[reprise.StateNever])
}

// drillJSON is the output of "drill --json".
type drillJSON struct {
	Snapshot      string             `json:"snapshot"`
	ShortID       string             `json:"short_id"`
	Tenant        string             `json:"tenant"`
	Source        string             `json:"source"`
	SamplePercent float64            `json:"sample_percent"` // 0: every file
	Files         int64              `json:"files"`
	Bytes         int64              `json:"bytes"`
	Seconds       float64            `json:"seconds"`
	MBPerSecond   float64            `json:"mb_per_second"`
	Stages        map[string]float64 `json:"stages"` // seconds, summed over the workers
	Failed        []skippedJSON      `json:"failed"`
}

// drillStages is the order stages are printed in.
var drillStages = []string{"fetch", "decrypt", "decompress", "verify"}

func cmdDrill(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var tenant string
	var sample float64
	var asJSON bool
	fs := newFlagSet(e, commandByName("drill"), &cf)
	fs.StringVar(&tenant, "tenant", "", "`name` of the tenant (required)")
	fs.Float64Var(&sample, "sample", 0, "drill a random `PCT` percent of the files (0 < PCT <= 100; default all)")
	fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	switch {
	case tenant == "":
		return usageErrorf("--tenant is required")
	case len(pos) > 1:
		return usageErrorf("drill takes at most one snapshot: an ID, a unique ID prefix, or latest (the default)")
	case sample < 0 || sample > 100:
		return usageErrorf("--sample %v: want a percentage in (0, 100]", sample)
	}
	ref := "latest"
	if len(pos) == 1 {
		ref = pos[0]
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
	res, err := restore.Drill(ctx, t, ref, &restore.DrillOptions{Options: restore.Options{Logger: newLogger(e, cf.verbose)}, SamplePercent: sample})
	if errors.Is(err, reprise.ErrSnapshotNotFound) {
		return fmt.Errorf("tenant %q: %v (see 'reprise snapshots')", tenant, err)
	}
	if res == nil {
		return err
	}
	mbps := 0.0
	if res.Duration > 0 {
		mbps = float64(res.Bytes) / 1e6 / res.Duration.Seconds()
	}
	if asJSON {
		out := drillJSON{Snapshot: res.Snapshot.ID, ShortID: res.Snapshot.ShortID(), Tenant: tenant, Source: res.Snapshot.Source,
			SamplePercent: sample, Files: res.Files, Bytes: res.Bytes, Seconds: res.Duration.Seconds(), MBPerSecond: mbps,
			Stages: map[string]float64{}, Failed: []skippedJSON{}}
		for k, v := range res.Stages {
			out.Stages[k] = v.Seconds()
		}
		for _, f := range res.Failed {
			out.Failed = append(out.Failed, skippedJSON{Path: f.Path, Error: f.Err.Error()})
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return err
		}
	} else {
		for _, f := range res.Failed {
			fmt.Fprintf(e.stderr, "reprise: failed: %s\n", f.Error())
		}
		what := "every file"
		if sample > 0 && sample < 100 {
			what = fmt.Sprintf("a %g%% sample of the files", sample)
		}
		fmt.Fprintf(e.stdout, "drill of snapshot %s (%s, %s): %s, %s fetched, decrypted and verified in %s (%.1f MB/s); nothing written\n",
			res.Snapshot.ShortID(), res.Snapshot.Source, what, plural(res.Files, "file"), formatBytes(res.Bytes),
			formatDuration(res.Duration), mbps)
		var total time.Duration
		for _, d := range res.Stages {
			total += d
		}
		var parts []string
		names := slices.Clone(drillStages)
		for k := range res.Stages {
			if !slices.Contains(names, k) {
				names = append(names, k)
			}
		}
		for _, k := range names {
			d, ok := res.Stages[k]
			if !ok {
				continue
			}
			share := 0.0
			if total > 0 {
				share = 100 * float64(d) / float64(total)
			}
			parts = append(parts, fmt.Sprintf("%s %.3f s (%.0f%%)", k, d.Seconds(), share))
		}
		fmt.Fprintf(e.stdout, "stages (summed over the concurrent workers): %s\n", strings.Join(parts, ", "))
	}
	if err != nil {
		if errors.Is(err, restore.ErrIncomplete) {
			return fmt.Errorf("drill incomplete: %d file(s) would not restore (listed above)", len(res.Failed))
		}
		return err
	}
	return nil
}
