// Package restore reads snapshots back out of a Reprise repository: a
// directory snapshot into a directory, a stream snapshot into an
// io.Writer.
//
// Restores are planned, then run in parallel (see engine.go for the
// details): the chunks of a batch of files are sorted by pack and offset,
// adjacent ones are fetched together with one ranged read, a chunk used
// several times is fetched and decoded once, many reads are in flight at
// once (Options.Concurrency), their requests sent ahead of the memory
// budget, to hide an object store's latency, and every
// core authenticates, decrypts, decompresses and checks chunks against
// their ID. Chunks are written with WriteAt straight into their place in
// pre-sized files (all-zero chunks are skipped, leaving holes); a stream
// is written in order through a bounded reorder window. Memory is capped
// by Options.MemoryLimit whatever the snapshot's size, and restore.All
// shares one budget, and its requests and decoders, between many tenants
// restored in priority order.
//
// A file is written under a temporary name and renamed
// into place only once every chunk of it is written and verified, so an
// interrupted or failed restore never leaves a file that looks complete
// but is not. A file of 16 MiB or more keeps its partial copy
// (".<name>.reprise-partial") when its restore fails, so that
// Options.Resume fetches only the chunks it lacks. A chunk that fails
// (missing, corrupt, truncated, moved) fails only the files that use it:
// the others are restored, and the error names each failed file, chunk
// and object.
package restore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/internal/repo"
	"github.com/reprise-backup/reprise/internal/ticker"
)

// Options tune a restore. The zero value gives sane defaults.
type Options struct {
	// Concurrency is the number of ranged reads in flight; 0 means 32.
	// A read sends its request ahead of the memory budget and waits for
	// its share of MemoryLimit only to take in the bytes, so latency is
	// hidden by requests, not memory: it takes about bandwidth x latency /
	// span size of them (a span is one ranged read of up to MemoryLimit/16,
	// 4 MiB by default: 32 cover 3 GB/s at 40 ms). A request waiting for
	// its turn holds a connection and the transport's buffers, not the
	// bytes. Decoding (decryption, decompression, verification) runs on
	// GOMAXPROCS goroutines whatever this is.
	Concurrency int
	// MemoryLimit caps the bytes of fetched data (and, for a stream, of
	// decoded data waiting to be written in order) held at once; 0 means
	// 64 MiB. Memory stays within it whatever the snapshot's size, plus a
	// decode buffer of up to one chunk per decoder (GOMAXPROCS of them,
	// twice that for a directory) and a plan of about 100 bytes per chunk
	// for up to 16384 chunks (a directory) or up to Concurrency windows of
	// MemoryLimit/4 (a stream), and the chunk list of the file being
	// planned, which the tree format stores in one piece: 36 bytes per
	// chunk, 36 MB for a 1 TB file at the default 1 MiB average chunk.
	// The tree itself is read a few chunks ahead, outside the budget.
	MemoryLimit int64
	// Overwrite replaces files that already exist in the target. Without
	// it, an existing file is left alone and reported as failed.
	Overwrite bool
	// Resume continues an interrupted restore into the same target: a
	// file already in place whose content hashes to the snapshot's chunk
	// IDs is kept without fetching anything; others are restored again,
	// but for files of 16 MiB or more, whose partial copy a failed or
	// interrupted restore leaves under a temporary name: every chunk of it
	// that hashes right is kept, and only the others are fetched.
	Resume bool
	// Direct writes the 4 KiB-aligned inside of each chunk of a file of
	// 1 MiB or more with O_DIRECT, on Linux (the edges, small files and
	// filesystems without O_DIRECT go through the page cache): a restore
	// of terabytes then does not churn the cache of the machine it runs
	// on, nor pay the copy into it, but each write waits for the disk. Off
	// by default: measured on this project's machine, restoring 1 GiB took
	// 3.2-3.4 s direct against 1.9-2.2 s through the cache, which reaches
	// the disk after the restore returns.
	Direct bool
	// Progress, when set, is called about every ProgressInterval, and
	// once at the end.
	Progress         func(Progress)
	ProgressInterval time.Duration
	// Logger receives warnings and debug logs; nil discards them.
	Logger *slog.Logger

	// budget and share, when set (by All), are shared by several
	// restores: the memory budget, and Concurrency and decoders; decoders
	// is the engine's initial number of them (0: defaultDecoders).
	budget   *semaphore.Weighted
	share    *shareMember
	decoders int
	// written, when set (by All), counts the bytes written by every
	// restore sharing it, as they are written.
	written *atomic.Int64
}

// Progress reports a running restore.
type Progress struct {
	Files      int64 // files completed
	Bytes      int64 // bytes written
	TotalBytes int64 // bytes the snapshot holds (from its statistics)
	Elapsed    time.Duration
	Done       bool
}

// Result describes a finished restore.
type Result struct {
	Snapshot              reprise.Snapshot
	Files, Dirs, Symlinks int64
	Bytes                 int64
	// Verified counts files found already complete in the target and kept
	// (Options.Resume); they are included in Files.
	Verified int64
	// Resumed counts the bytes of partly restored files that a failed
	// restore left, found written and verified and kept (Options.Resume):
	// they were not fetched again, and are not in Bytes.
	Resumed  int64
	Duration time.Duration
	// Failed lists the paths that could not be restored.
	Failed []*FileError
}

// FileError reports a path that could not be restored, and why. The cause
// wraps the repository's errors (reprise.ErrAuth for a corrupt or moved
// chunk, reprise.ErrChunkMissing, storage errors...).
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return e.Path + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *FileError) Unwrap() error { return e.Err }

// ErrIncomplete is matched (errors.Is) by the error of a restore in which
// some paths failed; the Result and the IncompleteError list them.
var ErrIncomplete = errors.New("restore incomplete")

type session struct {
	opts   Options
	t      *repo.Tenant
	loader *repo.Loader
	snap   *format.Snapshot
	log    *slog.Logger
	start  time.Time

	files, dirs, links, bytes, verified, resumed atomic.Int64

	// direct: large files get an O_DIRECT descriptor too (Options.
	// Direct); cleared for the rest of the restore when the target
	// refuses it.
	direct atomic.Bool

	failMu sync.Mutex
	failed []*FileError

	ticker *ticker.Ticker
}

func newSession(ctx context.Context, pt *reprise.Tenant, ref string, opts *Options) (*session, error) {
	s := &session{start: time.Now()}
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.Concurrency <= 0 {
		s.opts.Concurrency = defaultConcurrency
	}
	if s.opts.MemoryLimit <= 0 {
		s.opts.MemoryLimit = defaultMemoryLimit
	}
	s.direct.Store(s.opts.Direct)
	s.log = s.opts.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.t = repo.Unwrap(pt)
	// The snapshot and the index are read concurrently: over an object
	// store each costs round trips, and a restore pays them before its
	// first byte.
	var (
		idx *repo.Index
		bad []repo.BadObject
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		s.snap, err = s.t.FindSnapshot(gctx, ref)
		return err
	})
	g.Go(func() (err error) {
		idx, bad, err = s.t.LoadIndex(gctx)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, b := range bad {
		s.log.Warn("unreadable index object: chunks it names may be reported missing", "object", b.Key, "err", b.Err)
	}
	s.loader = s.t.NewLoader(idx)
	var tick func()
	if s.opts.Progress != nil {
		tick = func() { s.opts.Progress(s.progress(false)) }
	}
	s.ticker = ticker.Start(s.opts.ProgressInterval, tick, func() {
		if s.opts.Progress != nil {
			s.opts.Progress(s.progress(true))
		}
	})
	return s, nil
}

// wrote counts n bytes written.
func (s *session) wrote(n int64) {
	s.bytes.Add(n)
	if s.opts.written != nil {
		s.opts.written.Add(n)
	}
}

func (s *session) progress(done bool) Progress {
	return Progress{Files: s.files.Load(), Bytes: s.bytes.Load(), TotalBytes: s.snap.Stats.Bytes,
		Elapsed: time.Since(s.start), Done: done}
}

func (s *session) fail(path string, err error) {
	s.log.Warn("restore failed for path", "path", path, "err", err)
	s.failMu.Lock()
	s.failed = append(s.failed, &FileError{Path: path, Err: err})
	s.failMu.Unlock()
}

// record stores a run record of this restore, best effort: read-only
// credentials must not make a restore fail.
func (s *session) record(err error) {
	rec := &format.Record{Kind: format.RunRestore, Source: s.snap.Source, Start: s.start, End: time.Now(),
		OK: err == nil, Snapshot: s.snap.ID.String(), Files: s.files.Load(), Bytes: s.bytes.Load()}
	if err != nil {
		rec.Error = err.Error()
	}
	s.writeRecord(rec)
}

func (s *session) writeRecord(rec *format.Record) {
	s.stopProgress()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if werr := s.t.WriteRecord(ctx, rec); werr != nil {
		s.log.Warn("could not store the run record", "err", werr)
	}
}

// stopProgress ends the progress goroutine, once.
func (s *session) stopProgress() { s.ticker.Stop() }

func (s *session) result() (*Result, error) {
	s.stopProgress()
	r := &Result{
		Snapshot: reprise.Snapshot{ID: s.snap.ID.String(), Time: s.snap.Time, Host: s.snap.Host, Kind: s.snap.Kind,
			Source: s.snap.Source, Tags: s.snap.Tags, Stats: s.snap.Stats},
		Files: s.files.Load(), Dirs: s.dirs.Load(), Symlinks: s.links.Load(), Bytes: s.bytes.Load(),
		Verified: s.verified.Load(), Resumed: s.resumed.Load(), Duration: time.Since(s.start), Failed: s.failed,
	}
	if len(s.failed) == 0 {
		s.record(nil)
		return r, nil
	}
	err := &IncompleteError{Failed: s.failed}
	s.record(err)
	return r, err
}

// IncompleteError is the error of a restore in which some paths failed.
// errors.Is(err, ErrIncomplete) holds, and errors.Is/As reach each path's
// cause (for example reprise.ErrAuth) through it.
type IncompleteError struct {
	Failed []*FileError
}

func (e *IncompleteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "restore incomplete: %d path(s) failed", len(e.Failed))
	for i, f := range e.Failed {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(e.Failed)-i)
			break
		}
		b.WriteString("; ")
		b.WriteString(f.Error())
	}
	return b.String()
}

// Is reports whether target is ErrIncomplete.
func (e *IncompleteError) Is(target error) bool { return target == ErrIncomplete }

// Unwrap returns the failures.
func (e *IncompleteError) Unwrap() []error {
	errs := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		errs[i] = f
	}
	return errs
}
