package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/internal/repo"
)

// Dir restores the snapshot ref ("latest", an ID or a unique ID prefix) of
// tenant t into the directory target, which is created if needed: the
// backed-up directory's contents land directly under target. Modes and
// modification times are restored; ownership is not.
//
// If some paths fail, the others are still restored and the error matches
// ErrIncomplete (see IncompleteError). A cancelled context stops the
// restore promptly; files not finished are removed.
func Dir(ctx context.Context, t *reprise.Tenant, ref, target string, opts *Options) (*Result, error) {
	s, err := newSession(ctx, t, ref, opts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	d := &dirRestore{s: s, target: target, tasks: make(chan task, 4*s.opts.Concurrency)}
	var wg sync.WaitGroup
	for range s.opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.work(ctx)
		}()
	}
	walkErr := d.walk(ctx)
	close(d.tasks)
	wg.Wait()
	if walkErr == nil {
		walkErr = ctx.Err()
	}
	if walkErr != nil {
		err := fmt.Errorf("restore: %w", walkErr)
		s.record(err)
		return nil, err
	}
	d.finishLinksAndDirs()
	return s.result()
}

type dirRestore struct {
	s      *session
	target string
	tasks  chan task
	links  []format.Node
	dirs   []format.Node
}

type task struct {
	f   *fileState
	ref format.ChunkRef
	off int64
}

// fileState is a file being restored under a temporary name.
type fileState struct {
	path      string // in the snapshot
	final     string
	f         *os.File
	mode      uint32
	mtime     int64
	remaining atomic.Int64
	errMu     sync.Mutex
	err       error
}

func (f *fileState) setErr(err error) {
	f.errMu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.errMu.Unlock()
}

func (f *fileState) failed() bool {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return f.err != nil
}

func (d *dirRestore) local(p string) string {
	if p == "." {
		return d.target
	}
	return filepath.Join(d.target, filepath.FromSlash(p))
}

func (d *dirRestore) walk(ctx context.Context) error {
	tr := format.NewTreeReader(d.s.loader.StreamReader(ctx, d.s.snap.Tree))
	for {
		n, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reading the snapshot's tree: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		local := d.local(n.Path)
		switch n.Type {
		case format.TypeDir:
			// Owner-writable while restoring; the real mode is set at the end.
			if err := os.MkdirAll(local, 0o700); err != nil {
				d.s.fail(n.Path, err)
				continue
			}
			d.dirs = append(d.dirs, *n)
		case format.TypeSymlink:
			// Links are made last, so that no path restored later can
			// run through a link into somewhere outside the target.
			d.links = append(d.links, *n)
		case format.TypeFile:
			d.startFile(ctx, n)
		}
	}
}

func (d *dirRestore) startFile(ctx context.Context, n *format.Node) {
	final := d.local(n.Path)
	if d.s.opts.Resume && d.alreadyThere(final, n) {
		d.s.files.Add(1)
		d.s.verified.Add(1)
		return
	}
	if _, err := os.Lstat(final); err == nil && !d.s.opts.Overwrite && !d.s.opts.Resume {
		d.s.fail(n.Path, fmt.Errorf("%w (set Overwrite to replace it)", fs.ErrExist))
		return
	}
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		d.s.fail(n.Path, err)
		return
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(final)+".reprise-*")
	if err != nil {
		d.s.fail(n.Path, err)
		return
	}
	st := &fileState{path: n.Path, final: final, f: f, mode: n.Mode, mtime: n.MTime}
	if n.Size > 0 {
		// Pre-size the file: chunks are written in place with WriteAt,
		// in whatever order they arrive.
		if err := f.Truncate(int64(n.Size)); err != nil {
			st.setErr(err)
		}
	}
	st.remaining.Store(int64(len(n.Chunks)) + 1) // +1 held until all tasks are queued
	queued := 0
	var off int64
	for _, c := range n.Chunks {
		if ctx.Err() != nil {
			break
		}
		select {
		case d.tasks <- task{f: st, ref: c, off: off}:
			queued++
		case <-ctx.Done():
		}
		off += int64(c.Len)
	}
	if queued < len(n.Chunks) {
		st.setErr(ctx.Err())
		st.remaining.Add(-int64(len(n.Chunks) - queued))
	}
	d.done(st)
}

func (d *dirRestore) work(ctx context.Context) {
	var buf []byte
	var scratch repo.Scratch
	for t := range d.tasks {
		if !t.f.failed() {
			out, err := d.s.loader.Load(ctx, t.ref.ID, buf[:0], &scratch)
			if err == nil && len(out) != int(t.ref.Len) {
				err = &repo.ChunkError{ID: t.ref.ID, Err: fmt.Errorf("%w: %d bytes, tree says %d", format.ErrCorrupt, len(out), t.ref.Len)}
			}
			if err == nil {
				_, err = t.f.f.WriteAt(out, t.off)
			}
			if err != nil {
				t.f.setErr(err)
			} else {
				d.s.bytes.Add(int64(len(out)))
			}
			buf = out[:0]
		}
		d.done(t.f)
	}
}

// done counts one finished task of f; the last one finalizes the file.
func (d *dirRestore) done(f *fileState) {
	if f.remaining.Add(-1) != 0 {
		return
	}
	err := f.err
	if err == nil {
		err = f.f.Chmod(fs.FileMode(f.mode&0o777) | modeExtra(f.mode))
	}
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		mt := time.Unix(0, f.mtime)
		err = os.Chtimes(f.f.Name(), mt, mt)
	}
	if err == nil {
		err = os.Rename(f.f.Name(), f.final)
	}
	if err != nil {
		os.Remove(f.f.Name())
		if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			d.s.fail(f.path, err)
		}
		return
	}
	d.s.files.Add(1)
}

func (d *dirRestore) finishLinksAndDirs() {
	for _, l := range d.links {
		local := d.local(l.Path)
		if d.s.opts.Resume {
			if t, err := os.Readlink(local); err == nil && t == l.Target {
				lchtimes(local, time.Unix(0, l.MTime))
				d.s.links.Add(1)
				continue
			}
		}
		if d.s.opts.Overwrite || d.s.opts.Resume {
			if fi, err := os.Lstat(local); err == nil && !fi.IsDir() {
				os.Remove(local)
			}
		}
		if err := os.Symlink(l.Target, local); err != nil {
			d.s.fail(l.Path, err)
			continue
		}
		lchtimes(local, time.Unix(0, l.MTime))
		d.s.links.Add(1)
	}
	// Deepest first, so setting a parent's mtime comes after its children
	// are done changing it.
	slices.Reverse(d.dirs)
	for _, n := range d.dirs {
		local := d.local(n.Path)
		err := os.Chmod(local, fs.FileMode(n.Mode&0o777)|modeExtra(n.Mode))
		if err == nil {
			mt := time.Unix(0, n.MTime)
			err = os.Chtimes(local, mt, mt)
		}
		if err != nil {
			d.s.fail(n.Path, err)
			continue
		}
		d.s.dirs.Add(1)
	}
}

// modeExtra maps the setuid, setgid and sticky bits to fs.FileMode.
func modeExtra(m uint32) fs.FileMode {
	var out fs.FileMode
	if m&0o4000 != 0 {
		out |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= fs.ModeSticky
	}
	return out
}

// alreadyThere reports whether final holds exactly the file n describes,
// checked by hashing its content against the snapshot's chunk IDs (no
// fetch), and sets its mode and time if so.
func (d *dirRestore) alreadyThere(final string, n *format.Node) bool {
	fi, err := os.Lstat(final)
	if err != nil || !fi.Mode().IsRegular() || uint64(fi.Size()) != n.Size {
		return false
	}
	f, err := os.Open(final)
	if err != nil {
		return false
	}
	defer f.Close()
	var buf []byte
	for _, c := range n.Chunks {
		if cap(buf) < int(c.Len) {
			buf = make([]byte, c.Len)
		}
		buf = buf[:c.Len]
		if _, err := io.ReadFull(f, buf); err != nil {
			return false
		}
		if !d.s.loader.Matches(c.ID, buf) {
			return false
		}
	}
	if os.Chmod(final, fs.FileMode(n.Mode&0o777)|modeExtra(n.Mode)) != nil {
		return false
	}
	mt := time.Unix(0, n.MTime)
	return os.Chtimes(final, mt, mt) == nil
}
