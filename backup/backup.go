// Package backup writes snapshots of directory trees and streams into a
// Reprise repository.
//
// A backup runs as a pipeline over all cores with bounded memory: a walker
// lists the tree in lexical order; several workers read files at once, cut
// them into content-defined chunks (keyed by the tenant, see package chunk)
// and hash each chunk into its ID; chunks the tenant already stores are
// only referenced (deduplication across files and snapshots); new ones are
// compressed when that pays, sealed into packs and uploaded by their own
// goroutines. The tree (names, modes, times, chunk lists) is itself
// chunked and stored, and the snapshot object that points at it is
// written last, after every pack and index it depends on is durable: an
// interrupted backup leaves a valid repository, and the next one stores
// only what is missing.
//
// Many processes, on many machines, may back up into one repository at the
// same time, for different tenants or the same one: every object gets a
// fresh random name, and no lock is taken.
package backup

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/internal/repo"
	"github.com/reprise-backup/reprise/internal/ticker"
	"github.com/reprise-backup/reprise/storage/multisite"
)

// Options tune a backup. The zero value gives sane defaults.
type Options struct {
	// Tags are stored with the snapshot.
	Tags []string
	// Host is recorded in the snapshot; empty means os.Hostname.
	Host string
	// Time is recorded as the snapshot's time; zero means when the backup
	// starts. Set it when importing history (and in tests of retention).
	Time time.Time
	// Files is the number of files read and chunked at once; 0 means
	// GOMAXPROCS.
	Files int
	// Uploads is the number of packs uploaded at once; 0 means 2.
	Uploads int
	// NoCompress stores chunks uncompressed (for data known to be
	// incompressible; detection is automatic and cheap otherwise).
	// Without it, chunks are compressed with the repository's codec,
	// chosen when it was created (reprise.InitOptions.Codec).
	NoCompress bool
	// Exclude, when it returns true, leaves a path (slash-separated,
	// relative to the backup root) out of the snapshot; for a directory,
	// its whole subtree.
	Exclude func(path string, d fs.DirEntry) bool
	// Progress, when set, is called about every ProgressInterval from a
	// goroutine of its own, and once at the end.
	Progress         func(Progress)
	ProgressInterval time.Duration
	// Logger receives warnings (unreadable files) and debug logs; nil
	// discards them.
	Logger *slog.Logger
}

// Progress reports a running backup.
type Progress struct {
	Files      int64 // files done
	BytesRead  int64 // file or stream bytes read
	BytesAdded int64 // bytes written to packs
	Elapsed    time.Duration
	Done       bool
}

// Result describes a finished backup.
type Result struct {
	Snapshot reprise.Snapshot
	// Files, Dirs and Symlinks count what the snapshot holds.
	Files, Dirs, Symlinks int64
	// Chunks counts chunk references; NewChunks the chunks stored by
	// this backup (the others were already in the repository).
	Chunks, NewChunks int64
	// BytesRead is the size of the data backed up; BytesAdded the bytes
	// written to the repository's packs (after dedup, compression and
	// encryption).
	BytesRead, BytesAdded int64
	Duration              time.Duration
	// Skipped lists the paths that could not be read (they are not in the
	// snapshot); the backup itself succeeded.
	Skipped []*PathError
	// UnderReplicated counts, in a multi-site repository, the objects of
	// this backup durable under the write quorum but missing from some
	// site (down or slow): the backup is safe, redundancy is not complete
	// until Repository.Repair (or the multisite store's CatchUp) runs.
	UnderReplicated int64
}

// PathError reports a path that could not be backed up.
type PathError struct {
	Path string
	Err  error
}

func (e *PathError) Error() string { return e.Path + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *PathError) Unwrap() error { return e.Err }

// session is one backup run.
type session struct {
	opts         Options
	source       string
	ms           *multisite.Store
	missedBefore int64
	lease        *repo.Lease
	t            *repo.Tenant
	w            *repo.Writer
	split        *chunk.Splitter
	hasher       *crypto.IDHasher
	log          *slog.Logger
	start        time.Time

	files, dirs, links atomic.Int64
	chunks, bytesRead  atomic.Int64
	skippedMu          sync.Mutex
	skipped            []*PathError
	ticker             *ticker.Ticker
}

func newSession(ctx context.Context, pt *reprise.Tenant, source string, opts *Options) (*session, error) {
	s := &session{start: time.Now(), source: source}
	var err error
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.Files <= 0 {
		s.opts.Files = runtime.GOMAXPROCS(0)
	}
	if s.opts.Host == "" {
		s.opts.Host, _ = os.Hostname()
	}
	s.log = s.opts.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.t = repo.Unwrap(pt)
	if ms := repo.FindMultisite(s.t.Repo.St); ms != nil {
		s.ms, s.missedBefore = ms, ms.Stats().UnderReplicated
	}
	// The lease tells a concurrent prune that this backup may reference
	// whatever the index holds now; it is taken before the index is read.
	if s.lease, err = s.t.TakeLease(ctx, s.start); err != nil {
		return nil, err
	}
	idx, bad, err := s.t.LoadIndexForWrite(ctx)
	if err != nil {
		s.lease.Release()
		return nil, err
	}
	for _, b := range bad {
		// Chunks named only by an unreadable index are stored again:
		// safe, costs space; check reports the object.
		s.log.Warn("ignoring unreadable index object", "object", b.Key, "err", b.Err)
	}
	_, keys := s.t.Current()
	s.hasher = crypto.NewIDHasher(&keys.ChunkID)
	s.split = s.t.Splitter()
	s.w = s.t.NewWriter(ctx, idx, repo.WriterOptions{Uploads: s.opts.Uploads, NoCompress: s.opts.NoCompress})
	var tick func()
	if s.opts.Progress != nil {
		tick = func() { s.opts.Progress(s.progress(false)) }
	}
	s.ticker = ticker.Start(s.opts.ProgressInterval, tick, nil)
	return s, nil
}

func (s *session) progress(done bool) Progress {
	return Progress{
		Files: s.files.Load(), BytesRead: s.bytesRead.Load(), BytesAdded: s.w.BytesAdded.Load(),
		Elapsed: time.Since(s.start), Done: done,
	}
}

func (s *session) stopProgress() { s.ticker.Stop() }

func (s *session) skip(p string, err error) {
	s.log.Warn("skipping unreadable path", "path", p, "err", err)
	s.skippedMu.Lock()
	s.skipped = append(s.skipped, &PathError{Path: p, Err: err})
	s.skippedMu.Unlock()
}

// chunker reads one stream into chunk references, storing new chunks.
type chunker struct {
	s      *session
	c      *chunk.Chunker
	hasher *crypto.IDHasher
}

func (s *session) newChunker() *chunker {
	return &chunker{s: s, c: chunk.NewChunker(nil, s.split, nil), hasher: s.hasher.Clone()}
}

func (c *chunker) run(ctx context.Context, r io.Reader, kind byte, refs []format.ChunkRef) ([]format.ChunkRef, int64, error) {
	c.c.Reset(r)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return refs, n, err
		}
		data, err := c.c.Next()
		if err == io.EOF {
			return refs, n, nil
		}
		if err != nil {
			return refs, n, err
		}
		id := c.hasher.Sum(data)
		if _, err := c.s.w.Add(kind, id, data); err != nil {
			return refs, n, err
		}
		refs = append(refs, format.ChunkRef{ID: id, Len: uint32(len(data))})
		n += int64(len(data))
		if kind == format.KindData {
			c.s.bytesRead.Add(int64(len(data)))
			c.s.chunks.Add(1)
		}
	}
}

// finish stores the tree stream, waits until every chunk is durable, and
// writes the snapshot.
func (s *session) finish(ctx context.Context, kind, source string, tree []format.ChunkRef) (*Result, error) {
	if err := s.w.Close(); err != nil {
		return nil, s.abort(err)
	}
	id, err := crypto.RandomID()
	if err != nil {
		return nil, s.abort(err)
	}
	res := &Result{
		Files: s.files.Load(), Dirs: s.dirs.Load(), Symlinks: s.links.Load(),
		Chunks: s.chunks.Load(), NewChunks: s.w.NewChunks.Load(),
		BytesRead: s.bytesRead.Load(), BytesAdded: s.w.BytesAdded.Load(),
		Skipped: s.skipped,
	}
	snap := &format.Snapshot{
		ID: id, Time: s.snapTime(), Host: s.opts.Host, Kind: kind, Source: source, Tags: s.opts.Tags, Tree: tree,
		Stats: format.SnapshotStats{
			Files: res.Files, Dirs: res.Dirs, Symlinks: res.Symlinks, Bytes: res.BytesRead,
			Chunks: res.Chunks, NewChunks: res.NewChunks, BytesAdded: res.BytesAdded,
		},
	}
	res.Duration = time.Since(s.start)
	if s.ms != nil {
		res.UnderReplicated = s.ms.Stats().UnderReplicated - s.missedBefore
	}
	snap.Stats.Seconds = res.Duration.Seconds()
	if err := s.t.WriteSnapshot(ctx, snap); err != nil {
		return nil, s.abort(err)
	}
	s.stopProgress()
	if s.opts.Progress != nil {
		s.opts.Progress(s.progress(true))
	}
	res.Snapshot, err = pt(ctx, s, id)
	if err != nil {
		return nil, err
	}
	s.lease.Release()
	s.record(ctx, &format.Record{
		Kind: format.RunBackup, Source: source, Host: s.opts.Host, Start: s.start, End: time.Now(), OK: true,
		Snapshot: id.String(), Files: res.Files, BytesRead: res.BytesRead, BytesAdded: res.BytesAdded,
	})
	if s.ms != nil {
		res.UnderReplicated = s.ms.Stats().UnderReplicated - s.missedBefore
		if res.UnderReplicated > 0 {
			s.log.Warn("backup is under-replicated: some sites missed writes; run repair", "objects", res.UnderReplicated)
		}
	}
	s.log.Info("backup done", "snapshot", id.Short(), "files", res.Files, "bytes_read", res.BytesRead,
		"bytes_added", res.BytesAdded, "new_chunks", res.NewChunks, "took", res.Duration)
	return res, nil
}

func pt(ctx context.Context, s *session, id crypto.ID) (reprise.Snapshot, error) {
	snap, err := s.t.ReadSnapshot(ctx, id)
	if err != nil {
		return reprise.Snapshot{}, fmt.Errorf("reading back the snapshot just written: %w", err)
	}
	return reprise.Snapshot{ID: snap.ID.String(), Time: snap.Time, Host: snap.Host, Kind: snap.Kind,
		Source: snap.Source, Tags: snap.Tags, Stats: snap.Stats}, nil
}

func (s *session) abort(err error) error {
	s.stopProgress()
	if !s.w.Closed() {
		s.w.Abort(err)
	}
	s.lease.Release()
	// A failed run is recorded too: health reports it as FAILED.
	s.record(context.Background(), &format.Record{
		Kind: format.RunBackup, Source: s.source, Host: s.opts.Host, Start: s.start, End: time.Now(),
		Error: err.Error(), Files: s.files.Load(), BytesRead: s.bytesRead.Load(), BytesAdded: s.w.BytesAdded.Load(),
	})
	return err
}

// record stores a run record, best effort: a repository that refuses it
// (append-only credentials, an outage) must not fail the backup itself.
func (s *session) record(ctx context.Context, rec *format.Record) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.t.WriteRecord(ctx, rec); err != nil {
		s.log.Warn("could not store the run record", "err", err)
	}
}

// Stream backs up the bytes of r as a snapshot of kind "stream" called
// name (for example the output of pg_dump). Restore gives the same bytes.
func Stream(ctx context.Context, t *reprise.Tenant, name string, r io.Reader, opts *Options) (*Result, error) {
	if name == "" || !format.ValidPath(name) || name == "." || path.Base(name) != name {
		return nil, fmt.Errorf("backup: invalid stream name %q: want one path element", name)
	}
	s, err := newSession(ctx, t, name, opts)
	if err != nil {
		return nil, err
	}
	c := s.newChunker()
	refs, n, err := c.run(ctx, r, format.KindData, nil)
	if err != nil {
		return nil, s.abort(fmt.Errorf("backup: reading stream %q: %w", name, err))
	}
	s.files.Add(1)
	tree, err := s.storeTree(ctx, func(tw *format.TreeWriter) error {
		return tw.Write(&format.Node{Path: name, Type: format.TypeFile, Mode: 0o600, MTime: s.start.UnixNano(), Size: uint64(n), Chunks: refs})
	})
	if err != nil {
		return nil, s.abort(err)
	}
	return s.finish(ctx, format.SnapshotStream, name, tree)
}

// storeTree encodes the tree with fill and stores it as chunks, returning
// the chunk list for the snapshot object.
func (s *session) storeTree(ctx context.Context, fill func(*format.TreeWriter) error) ([]format.ChunkRef, error) {
	pr, pw := io.Pipe()
	type out struct {
		refs []format.ChunkRef
		err  error
	}
	done := make(chan out, 1)
	go func() {
		refs, _, err := s.newChunker().run(ctx, pr, format.KindTree, nil)
		pr.CloseWithError(err)
		done <- out{refs, err}
	}()
	tw := format.NewTreeWriter(pw)
	err := fill(tw)
	if err == nil {
		err = tw.Close()
	}
	pw.CloseWithError(err)
	o := <-done
	if err != nil {
		return nil, err
	}
	if o.err != nil {
		return nil, o.err
	}
	return o.refs, nil
}

func (s *session) snapTime() time.Time {
	if !s.opts.Time.IsZero() {
		return s.opts.Time.UTC()
	}
	return s.start.UTC()
}
