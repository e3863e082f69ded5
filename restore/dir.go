package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/internal/directio"
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
		s.stopProgress()
		return nil, fmt.Errorf("restore: %w", err)
	}
	d := &dirRestore{s: s, target: target}
	walkErr := d.run(ctx)
	if walkErr != nil {
		err := fmt.Errorf("restore: %w", walkErr)
		s.record(err)
		return nil, err
	}
	d.finishLinksAndDirs()
	return s.result()
}

// dirRestore restores (or, for a drill, reads and verifies) the files of
// a directory snapshot through the engine.
type dirRestore struct {
	s      *session
	target string
	drill  bool                    // read and verify only
	keep   func(*format.Node) bool // drill: which files to read
	e      *engine
	batch  []entry
	files  int // files in the batch
	links  []format.Node
	dirs   []format.Node
	// A snapshot may hold a file named as another's partial copy (backed
	// up from a target a failed restore left it in). Such names seen in
	// the tree, and the partial names in use, keep the two apart.
	seenPartials, usedPartials map[string]bool
}

// run walks the tree, plans the files in batches and waits for the
// engine to finish them.
func (d *dirRestore) run(ctx context.Context) error {
	d.e = newEngine(ctx, d.s, false, d.done)
	err := d.walk(ctx)
	d.flush(ctx) // whatever happened: every entry must finish
	d.e.close()
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// fileState is a file being restored under a temporary name, created when
// its first chunk arrives.
type fileState struct {
	path      string // in the snapshot
	final     string
	size      int64
	mode      uint32
	mtime     int64
	drill     bool
	remaining atomic.Int64

	openOnce sync.Once
	f        *os.File
	df       *os.File     // the same file with O_DIRECT, or nil
	direct   *atomic.Bool // the session's: O_DIRECT still in use
	openErr  error
	// partial: restored under partialName, left in place if the restore
	// fails, for Options.Resume to keep its verified chunks.
	partial bool

	errMu sync.Mutex
	err   error
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

// open creates the temporary file, pre-sized (sparse) to the file's size,
// once. It runs on the decoders, so small files are created in parallel.
func (f *fileState) open() error {
	f.openOnce.Do(func() {
		var tf *os.File
		var err error
		if f.partial {
			// A stale partial copy is removed, not truncated: whatever
			// the target holds under that name (another file's hard
			// link...) is left alone.
			name := partialName(f.final)
			tf, err = createIn(f.final, func() (*os.File, error) {
				if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return nil, err
				}
				return openPartial(name, os.O_CREATE|os.O_EXCL)
			})
		} else {
			tf, err = createIn(f.final, func() (*os.File, error) {
				return os.CreateTemp(filepath.Dir(f.final), "."+filepath.Base(f.final)+".reprise-*")
			})
		}
		if err == nil {
			err = f.adopt(tf, 0)
		}
		f.openErr = err
	})
	return f.openErr
}

// createIn runs create, and again after creating final's directory if it
// did not exist.
func createIn(final string, create func() (*os.File, error)) (*os.File, error) {
	tf, err := create()
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(final), 0o700); err == nil {
			tf, err = create()
		}
	}
	return tf, err
}

// adopt makes tf, of size cur, the file's temporary file: sized to the
// file's size (sparse), with an O_DIRECT descriptor too when asked. Called
// once, inside openOnce; on failure tf is closed (and removed, unless
// partial).
func (f *fileState) adopt(tf *os.File, cur int64) error {
	if cur != f.size {
		if err := tf.Truncate(f.size); err != nil {
			tf.Close()
			if !f.partial {
				os.Remove(tf.Name())
			}
			return err
		}
	}
	f.f = tf
	if f.size >= directAtLeast && f.direct.Load() {
		if df, err := openDirect(tf.Name()); err == nil {
			f.df = df
		} else {
			f.direct.Store(false) // refused here: refused everywhere
		}
	}
	return nil
}

// partialAtLeast is the smallest file restored under a fixed temporary
// name (partialName) that a failed or interrupted restore leaves in
// place: Options.Resume then keeps every chunk of it that hashes right
// and fetches only the others. Smaller files are restored again whole.
const partialAtLeast = 16 << 20

// partialName is the temporary name of a file of partialAtLeast or more.
func partialName(final string) string {
	return filepath.Join(filepath.Dir(final), "."+filepath.Base(final)+partialSuffix)
}

const partialSuffix = ".reprise-partial"

// mapSet sets m[k], making m if needed.
func mapSet(m map[string]bool, k string) map[string]bool {
	if m == nil {
		m = map[string]bool{}
	}
	m[k] = true
	return m
}

// openPartial opens (with flag) a partial file, refusing anything but a
// regular file of one link: the target may hold anything under that name,
// and a resumed restore writes into it.
func openPartial(name string, flag int) (*os.File, error) {
	pf, err := openNoFollow(name, os.O_RDWR|flag)
	if err != nil {
		return nil, err
	}
	if fi, err := pf.Stat(); err != nil || !fi.Mode().IsRegular() || !singleLink(fi) {
		pf.Close()
		return nil, fmt.Errorf("%s: %w: not a regular file of one link", name, fs.ErrExist)
	}
	return pf, nil
}

// resumePartial looks for the partial file a failed restore left for n
// and checks each of its chunks against n's chunk IDs. If any is there,
// the partial file becomes f's temporary file and have says which chunks
// need no fetching; otherwise have is nil and the file is restored anew.
func (f *fileState) resumePartial(l *repo.Loader, n *format.Node) (have []bool, kept int64) {
	pf, err := openPartial(partialName(f.final), 0)
	if err != nil {
		return nil, 0
	}
	fi, err := pf.Stat()
	if err != nil {
		pf.Close()
		return nil, 0
	}
	have, kept = matchChunks(pf, fi.Size(), l, n.Chunks, false)
	if kept == 0 {
		pf.Close()
		return nil, 0
	}
	f.openOnce.Do(func() { f.openErr = f.adopt(pf, fi.Size()) })
	if f.openErr != nil {
		return nil, 0
	}
	return have, kept
}

// writeAt writes a verified chunk in place. An all-zero chunk is skipped:
// the pre-sized file reads as zeros there, and stays sparse.
func (f *fileState) writeAt(b []byte, off int64) error {
	if f.drill {
		return nil
	}
	if err := f.open(); err != nil {
		return err
	}
	if isZero(b) {
		return nil
	}
	if f.df != nil {
		// The aligned inside goes to the disk directly when the buffer
		// lines up (the decoder places chunks so that it does); the edges
		// through the cache. No page is written both ways: a page holds
		// either aligned inside bytes of one chunk, or edge bytes only.
		lo := (off + directio.Align - 1) &^ (directio.Align - 1)
		hi := (off + int64(len(b))) &^ (directio.Align - 1)
		if hi > lo && directio.Aligned(b[lo-off:]) {
			if lo > off {
				if _, err := f.f.WriteAt(b[:lo-off], off); err != nil {
					return err
				}
			}
			if _, err := f.df.WriteAt(b[lo-off:hi-off], lo); err != nil {
				if !errors.Is(err, syscall.EINVAL) {
					return err
				}
				f.direct.Store(false) // refused at write time: buffered from now on
				if _, err := f.f.WriteAt(b[lo-off:hi-off], lo); err != nil {
					return err
				}
			}
			if end := off + int64(len(b)); end > hi {
				if _, err := f.f.WriteAt(b[hi-off:], hi); err != nil {
					return err
				}
			}
			return nil
		}
	}
	_, err := f.f.WriteAt(b, off)
	return err
}

// directAtLeast is the smallest file written with O_DIRECT.
const directAtLeast = 1 << 20

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
		if d.drill {
			if n.Type == format.TypeFile && d.keep(n) {
				d.startFile(ctx, n)
			}
			continue
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

// startFile plans a file: one entry per chunk, into the current batch.
func (d *dirRestore) startFile(ctx context.Context, n *format.Node) {
	final := d.local(n.Path)
	if !d.drill {
		// A file named as another's partial copy is the snapshot's: noted
		// first, so that no partial copy is made, or removed, under its
		// name; refused if one already is.
		if strings.HasSuffix(final, partialSuffix) {
			if d.usedPartials[final] {
				d.s.fail(n.Path, fmt.Errorf("%w: the name of the partial copy of a file restored alongside it", fs.ErrExist))
				return
			}
			d.seenPartials = mapSet(d.seenPartials, final)
		}
		if d.s.opts.Resume && d.alreadyThere(final, n) {
			d.s.files.Add(1)
			d.s.verified.Add(1)
			if n.Size >= partialAtLeast && !d.seenPartials[partialName(final)] {
				os.Remove(partialName(final)) // left by an earlier failure, if any
			}
			return
		}
		if _, err := os.Lstat(final); err == nil && !d.s.opts.Overwrite && !d.s.opts.Resume {
			d.s.fail(n.Path, fmt.Errorf("%w (set Overwrite to replace it)", fs.ErrExist))
			return
		}
	}
	st := &fileState{path: n.Path, final: final, size: int64(n.Size), mode: n.Mode, mtime: n.MTime, drill: d.drill, direct: &d.s.direct}
	if !d.drill && n.Size >= partialAtLeast && !d.seenPartials[partialName(final)] {
		st.partial = true
		d.usedPartials = mapSet(d.usedPartials, partialName(final))
	}
	var sum uint64
	for _, c := range n.Chunks {
		sum += uint64(c.Len)
	}
	if sum != n.Size {
		st.setErr(fmt.Errorf("%w: chunks hold %d bytes, tree says %d", format.ErrCorrupt, sum, n.Size))
		st.remaining.Store(1)
		d.done(st)
		return
	}
	// A large file a failed restore left partly written: its chunks that
	// hash right are kept, only the others are fetched.
	var have []bool
	if st.partial && d.s.opts.Resume {
		var kept int64
		if have, kept = st.resumePartial(d.s.loader, n); kept > 0 {
			d.s.resumed.Add(kept)
			d.s.log.Debug("resuming a partly restored file", "path", n.Path, "kept", kept, "size", n.Size)
		}
	}
	missing := len(n.Chunks)
	for _, h := range have {
		if h {
			missing--
		}
	}
	st.remaining.Store(int64(missing) + 1) // +1 held until every entry is planned
	idx := d.s.loader.Index()
	var off int64
	for i, c := range n.Chunks {
		if have != nil && have[i] {
			off += int64(c.Len)
			continue
		}
		loc, _, ok := idx.Lookup(c.ID)
		if !ok {
			st.setErr(&repo.ChunkError{ID: c.ID, Err: repo.ErrChunkMissing})
			d.done(st)
		} else {
			// The batch grows as needed (no span refers to it before the
			// flush): a small restore does not clear a 1.4 MB plan.
			d.batch = append(d.batch, entry{id: c.ID, loc: loc, f: st, off: off, n: c.Len})
			if len(d.batch) == batchEntries {
				d.flush(ctx)
			}
		}
		off += int64(c.Len)
	}
	if d.files++; d.files >= batchFiles {
		d.flush(ctx)
	}
	d.done(st)
}

// flush hands the batch to the engine. The spans keep the batch's array,
// so the next batch gets a new one.
func (d *dirRestore) flush(ctx context.Context) {
	if len(d.batch) > 0 {
		d.e.planSorted(d.batch)
	}
	d.batch, d.files = nil, 0
}

// done counts one finished entry of f; the last one finalizes the file:
// mode, time, and the rename to its final name.
func (d *dirRestore) done(f *fileState) {
	if f.remaining.Add(-1) != 0 {
		return
	}
	err := f.err // every other entry is done: no lock needed
	if f.drill {
		if err != nil {
			d.failed(f.path, err)
		} else {
			d.s.files.Add(1)
		}
		return
	}
	if err == nil {
		err = f.open() // a file without chunks
	}
	if f.f == nil {
		d.failed(f.path, err)
		return
	}
	if err == nil {
		err = f.f.Chmod(fs.FileMode(f.mode&0o777) | modeExtra(f.mode))
	}
	// A partial copy has a fixed name, which a snapshot may hold too (one
	// backed up from a target a failed restore left it in): whatever was
	// restored there must not be renamed into place as this file.
	var mine os.FileInfo
	if err == nil && f.partial {
		mine, err = f.f.Stat()
	}
	if f.df != nil {
		if cerr := f.df.Close(); err == nil {
			err = cerr
		}
	}
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err == nil && mine != nil {
		if there, lerr := os.Lstat(f.f.Name()); lerr != nil || !os.SameFile(mine, there) {
			err = fmt.Errorf("%s was replaced while the file was restored: %w", f.f.Name(), fs.ErrExist)
		}
	}
	if err == nil {
		mt := time.Unix(0, f.mtime)
		err = os.Chtimes(f.f.Name(), mt, mt)
	}
	if err == nil {
		err = os.Rename(f.f.Name(), f.final)
	}
	if err != nil {
		if !f.partial {
			os.Remove(f.f.Name())
		}
		d.failed(f.path, err)
		return
	}
	d.s.files.Add(1)
}

// failed reports a path, unless the restore as a whole was cancelled.
func (d *dirRestore) failed(path string, err error) {
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		d.s.fail(path, err)
	}
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
	have, _ := matchChunks(f, fi.Size(), d.s.loader, n.Chunks, true)
	f.Close()
	if have == nil {
		return false
	}
	if os.Chmod(final, fs.FileMode(n.Mode&0o777)|modeExtra(n.Mode)) != nil {
		return false
	}
	mt := time.Unix(0, n.MTime)
	return os.Chtimes(final, mt, mt) == nil
}

// matchChunks reads chunks from f at their offsets (within size bytes),
// on every core, and reports which hash to their IDs and how many bytes
// those hold: a resume checks what a restore already wrote, maybe most of
// a terabyte, before it goes on. With all, it stops at the first chunk
// that does not match and then returns nil.
func matchChunks(f io.ReaderAt, size int64, l *repo.Loader, chunks []format.ChunkRef, all bool) ([]bool, int64) {
	offs := make([]int64, len(chunks))
	var off int64
	for i, c := range chunks {
		offs[i] = off
		off += int64(c.Len)
	}
	have := make([]bool, len(chunks))
	var next, kept atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(chunks)) {
		wg.Go(func() {
			var buf []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= len(chunks) || all && failed.Load() {
					return
				}
				c := chunks[i]
				ok := offs[i]+int64(c.Len) <= size
				if ok {
					buf = slices.Grow(buf[:0], int(c.Len))[:c.Len]
					_, err := f.ReadAt(buf, offs[i])
					ok = err == nil && l.Matches(c.ID, buf)
				}
				if ok {
					have[i] = true // each i is one worker's
					kept.Add(int64(c.Len))
				} else if all {
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	if all && failed.Load() {
		return nil, 0
	}
	return have, kept.Load()
}
