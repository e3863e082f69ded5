package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/reprise-backup/reprise/backup"
)

// backupJSON is the output of "backup --json".
type backupJSON struct {
	Snapshot   string        `json:"snapshot"` // full ID
	ShortID    string        `json:"short_id"`
	Tenant     string        `json:"tenant"`
	Time       time.Time     `json:"time"`
	Kind       string        `json:"kind"`
	Source     string        `json:"source"`
	Files      int64         `json:"files"`
	Dirs       int64         `json:"dirs"`
	Symlinks   int64         `json:"symlinks"`
	Chunks     int64         `json:"chunks"`
	NewChunks  int64         `json:"new_chunks"`
	BytesRead  int64         `json:"bytes_read"`
	BytesAdded int64         `json:"bytes_added"` // bytes newly written to storage
	Seconds    float64       `json:"seconds"`
	Skipped    []skippedJSON `json:"skipped"`
	// UnderReplicated counts, in a multi-site repository, the objects of
	// this backup that missed a site (0 otherwise).
	UnderReplicated int64 `json:"under_replicated"`
}

type skippedJSON struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

func cmdBackup(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var tenant, name, host string
	var fromStdin, asJSON, noCompress bool
	var tags stringList
	fs := newFlagSet(e, commandByName("backup"), &cf)
	fs.StringVar(&tenant, "tenant", "", "`name` of the tenant to back up into, created if new (required)")
	fs.BoolVar(&fromStdin, "stdin", false, "back up standard input as a stream snapshot (needs --name)")
	fs.StringVar(&name, "name", "", "`name` of the stream with --stdin, e.g. dump.sql")
	fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	fs.Var(&tags, "tag", "`tag` to store with the snapshot (repeatable)")
	fs.StringVar(&host, "host", "", "`host` name recorded in the snapshot (default: this host's)")
	fs.BoolVar(&noCompress, "no-compress", false, "store chunks uncompressed (for data known to be incompressible)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	switch {
	case tenant == "":
		return usageErrorf("--tenant is required")
	case fromStdin && len(pos) != 0:
		return usageErrorf("--stdin takes no PATH (got %q)", pos)
	case fromStdin && name == "":
		return usageErrorf("--stdin needs --name, e.g. --name dump.sql")
	case !fromStdin && name != "":
		return usageErrorf("--name goes with --stdin")
	case !fromStdin && len(pos) != 1:
		return usageErrorf("backup takes one PATH, or --stdin --name NAME")
	}

	if !fromStdin {
		// Before opening (and perhaps creating) the tenant.
		if fi, err := os.Stat(pos[0]); err != nil {
			return err
		} else if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory (to back up a single stream, use --stdin --name NAME)", pos[0])
		}
	}
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	r := sess.Repo
	t, err := r.Tenant(ctx, tenant)
	if err != nil {
		return fmt.Errorf("tenant %q: %w", tenant, err)
	}
	defer t.Close()

	status := newStatusLine(e.stderr, e.progress && !asJSON && !cf.verbose)
	opts := &backup.Options{Tags: tags, Host: host, NoCompress: noCompress, Logger: newLogger(e, cf.verbose)}
	var total atomic.Int64 // bytes to read, when known
	if status != nil {
		opts.ProgressInterval = 200 * time.Millisecond
		opts.Progress = func(p backup.Progress) {
			if p.Done {
				status.clear()
				return
			}
			extra := fmt.Sprintf("%s added", formatBytes(p.BytesAdded))
			if !fromStdin {
				extra = fmt.Sprintf("%d files, %s", p.Files, extra)
			}
			status.update("backup", p.BytesRead, total.Load(), p.Elapsed, extra)
		}
		defer status.stop()
	}

	var res *backup.Result
	if fromStdin {
		res, err = backup.Stream(ctx, t, name, newCancelableReader(ctx, e.stdin), opts)
	} else {
		dir := pos[0]
		if status != nil {
			// Size the tree while the backup runs, for the ETA.
			scanCtx, stopScan := context.WithCancel(ctx)
			defer stopScan()
			go func() { total.Store(treeSize(scanCtx, dir)) }()
		}
		res, err = backup.Dir(ctx, t, dir, opts)
	}
	status.stop()
	if err != nil {
		return err
	}

	for _, s := range res.Skipped {
		fmt.Fprintf(e.stderr, "reprise: warning: skipped %s\n", s.Error())
	}
	if res.UnderReplicated > 0 {
		fmt.Fprintf(e.stderr, "reprise: warning: under-replicated: %d objects missed a site; run reprise repair\n", res.UnderReplicated)
	}
	if asJSON {
		out := backupJSON{
			Snapshot: res.Snapshot.ID, ShortID: res.Snapshot.ShortID(), Tenant: tenant, Time: res.Snapshot.Time,
			Kind: res.Snapshot.Kind, Source: res.Snapshot.Source,
			Files: res.Files, Dirs: res.Dirs, Symlinks: res.Symlinks, Chunks: res.Chunks, NewChunks: res.NewChunks,
			BytesRead: res.BytesRead, BytesAdded: res.BytesAdded, Seconds: res.Duration.Seconds(),
			Skipped: []skippedJSON{}, UnderReplicated: res.UnderReplicated,
		}
		for _, s := range res.Skipped {
			out.Skipped = append(out.Skipped, skippedJSON{Path: s.Path, Error: s.Err.Error()})
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return err
		}
	} else {
		what := plural(res.Files, "file") + ", " + plural(res.Dirs, "dir")
		if fromStdin {
			what = "stream " + name
		}
		added := fmt.Sprintf("%s added (dedup %s)", formatBytes(res.BytesAdded), ratio(res.BytesRead, res.BytesAdded))
		if res.BytesAdded == 0 {
			added = "nothing new to store"
		}
		fmt.Fprintf(e.stdout, "snapshot %s saved: %s, %s read, %s, %s (%s)\n",
			res.Snapshot.ShortID(), what, formatBytes(res.BytesRead), added,
			formatDuration(res.Duration), formatRate(rate(res.BytesRead, res.Duration)))
	}
	if n := len(res.Skipped); n > 0 {
		return &exitErr{code: exitPartial, err: fmt.Errorf("snapshot %s saved, but %d path(s) could not be read and are not in it", res.Snapshot.ShortID(), n)}
	}
	return nil
}

// treeSize sums the sizes of the regular files under dir, skipping what it
// cannot read. It stops early, returning 0, when ctx is cancelled.
func treeSize(ctx context.Context, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			n = 0
			return filepath.SkipAll
		}
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// cancelableReader reads r on a goroutine of its own, so that a Read
// blocked on a stalled pipe returns as soon as ctx is cancelled (a signal
// stops the backup even when the producer on the other side of the pipe
// is stuck). The reading goroutine may stay blocked until the process
// exits.
type cancelableReader struct {
	ctx  context.Context
	ch   <-chan readResult
	left []byte // of the last block received, not yet returned
	err  error  // sticky
}

type readResult struct {
	b   []byte
	err error
}

func newCancelableReader(ctx context.Context, r io.Reader) *cancelableReader {
	ch := make(chan readResult, 4)
	go func() {
		defer close(ch)
		for {
			b := make([]byte, 256<<10)
			n, err := r.Read(b)
			select {
			case ch <- readResult{b[:n], err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return &cancelableReader{ctx: ctx, ch: ch}
}

func (c *cancelableReader) Read(p []byte) (int, error) {
	for len(c.left) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		select {
		case res, ok := <-c.ch:
			if !ok { // only after an error was sent, or on cancellation
				if c.err = c.ctx.Err(); c.err == nil {
					c.err = io.ErrUnexpectedEOF
				}
				continue
			}
			c.left, c.err = res.b, res.err
		case <-c.ctx.Done():
			c.err = c.ctx.Err()
		}
	}
	n := copy(p, c.left)
	c.left = c.left[n:]
	return n, nil
}
