package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/restore"
)

func cmdRestore(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var tenant, target string
	var toStdout, overwrite, resume bool
	fs := newFlagSet(e, commandByName("restore"), &cf)
	fs.StringVar(&tenant, "tenant", "", "`name` of the tenant to restore from (required)")
	fs.StringVar(&target, "target", "", "`directory` to restore into (created if needed); the snapshot's contents land directly under it")
	fs.BoolVar(&toStdout, "stdout", false, "write a stream snapshot to standard output")
	fs.BoolVar(&overwrite, "overwrite", false, "replace files that already exist in the target (default: leave them and report them as failed)")
	fs.BoolVar(&resume, "resume", false, "continue an interrupted restore into the same target: keep the files already complete, and the verified chunks of large files partly restored; fetch the rest")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	switch {
	case tenant == "":
		return usageErrorf("--tenant is required")
	case len(pos) != 1:
		return usageErrorf("restore takes one snapshot: an ID, a unique ID prefix, or latest")
	case (target == "") == !toStdout:
		return usageErrorf("restore needs exactly one of --target DIR and --stdout")
	case toStdout && (overwrite || resume):
		return usageErrorf("--overwrite and --resume go with --target")
	}
	ref := pos[0]

	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	r := sess.Repo
	t, err := openTenant(ctx, r, tenant)
	if err != nil {
		return err
	}
	defer t.Close()

	status := newStatusLine(e.stderr, e.progress && !cf.verbose)
	opts := &restore.Options{Overwrite: overwrite, Resume: resume, Logger: newLogger(e, cf.verbose)}
	if status != nil {
		opts.ProgressInterval = 200 * time.Millisecond
		opts.Progress = func(p restore.Progress) {
			if p.Done {
				status.clear()
				return
			}
			extra := ""
			if !toStdout {
				extra = fmt.Sprintf("%d files", p.Files)
			}
			status.update("restore", p.Bytes, p.TotalBytes, p.Elapsed, extra)
		}
		defer status.stop()
	}

	var res *restore.Result
	if toStdout {
		res, err = restore.Stream(ctx, t, ref, e.stdout, opts)
	} else {
		res, err = restore.Dir(ctx, t, ref, target, opts)
	}
	status.stop()
	if errors.Is(err, reprise.ErrSnapshotNotFound) {
		return fmt.Errorf("tenant %q: %v (see 'reprise snapshots')", tenant, err)
	}
	if err != nil && !errors.Is(err, restore.ErrIncomplete) {
		return err
	}
	if res != nil {
		for _, f := range res.Failed {
			fmt.Fprintf(e.stderr, "reprise: failed: %s\n", f.Error())
		}
	}
	// With --stdout, standard output holds the data: the summary goes to
	// the terminal only.
	if toStdout {
		if e.progress && res != nil {
			fmt.Fprintf(e.stderr, "snapshot %s restored: %s in %s (%s)\n", res.Snapshot.ShortID(),
				formatBytes(res.Bytes), formatDuration(res.Duration), formatRate(rate(res.Bytes, res.Duration)))
		}
	} else if res != nil {
		fmt.Fprintf(e.stdout, "snapshot %s restored to %s: %s, %s, %s, %s in %s (%s)\n",
			res.Snapshot.ShortID(), target, plural(res.Files, "file"), plural(res.Dirs, "dir"),
			plural(res.Symlinks, "symlink"), formatBytes(res.Bytes),
			formatDuration(res.Duration), formatRate(rate(res.Bytes, res.Duration)))
	}
	if err != nil {
		n := 0
		if res != nil {
			n = len(res.Failed)
		}
		return fmt.Errorf("restore incomplete: %d path(s) failed (listed above); the others are restored", n)
	}
	return nil
}
