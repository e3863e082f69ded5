package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/reprise-backup/reprise/internal/directio"
)

// FSOptions tunes [NewFS]. The zero value (or a nil pointer) gives the
// durable defaults.
type FSOptions struct {
	// NoSync skips every fsync. Writes become much faster but a crash of
	// the machine (not just of the process) may lose or truncate objects
	// written shortly before. For tests and scratch repositories only.
	NoSync bool
	// FileMode is the permission of stored objects; default 0o600.
	FileMode fs.FileMode
	// DirMode is the permission of created directories, before the
	// process umask; default 0o700.
	DirMode fs.FileMode
	// Buffered writes objects through the operating system's page cache.
	// By default, on Linux, objects of 1 MiB or more (packs) are
	// written with O_DIRECT where the filesystem supports it: a backup
	// then does not push the machine's working set (a database's hot
	// pages) out of the cache for data nobody reads soon, and skips the
	// copy into the cache, which costs a core about 2 ms per MiB on
	// virtual machines like this project's (measured: dd of 600 MiB,
	// 1.2-1.8 s of system time buffered, 0.07 s direct). NoSync implies
	// Buffered.
	Buffered bool
}

// FS stores objects as files under a root directory, one file per object;
// the slashes of a key separate directories. It is the driver behind plain
// paths and file:// URLs.
//
// Writes are atomic: Put writes a hidden temporary file in the object's
// directory, syncs it, then renames it into place (or, for a create-only
// put, hard-links it into place, which fails if the name is taken, even
// against other processes on the same filesystem), and syncs the
// directory. Temporary files start with a dot, so they never collide with
// a key and are never listed; those left by a crashed writer are harmless
// and [FS.CleanTemp] removes them. Create-only puts therefore need a
// filesystem with hard links (any POSIX one; not FAT).
//
// A filesystem cannot hold a file and a directory of the same name, so
// unlike object stores FS cannot hold both "a" and "a/b"; Put fails on
// such a collision. Reprise's key layout never produces one.
//
// Filesystem limits apply on top of the key syntax: most filesystems take
// at most 255 bytes per key segment. Symbolic links inside the directory
// are followed. A full disk or an exceeded quota is reported as such and
// not as transient. Should syncing the directory fail after the object
// was renamed into place, Put reports the error although the object is
// there (a retried create-only put then finds it taken).
//
// The directory need not exist: it is created, with any missing parents,
// by the first Put. Delete leaves emptied directories in place. Close is
// a no-op.
type FS struct {
	root     string
	noSync   bool
	buffered bool
	fileMode fs.FileMode
	dirMode  fs.FileMode
}

// tempPrefix starts the names of in-progress writes. ValidKey rejects
// segments starting with a dot, so these names are outside the key space.
const tempPrefix = ".reprise-tmp-"

// NewFS returns a filesystem store rooted at dir. The directory does not
// have to exist yet (it is created by the first Put, and reads see an
// empty store until then), but if the path exists it must be a directory.
func NewFS(dir string, opts *FSOptions) (*FS, error) {
	if dir == "" {
		return nil, errors.New("storage: fs: empty directory path")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: fs %q: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case err == nil && !fi.IsDir():
		return nil, fmt.Errorf("storage: fs %q: not a directory", abs)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, mapFSError("open", abs, err)
	}
	f := &FS{root: abs, fileMode: 0o600, dirMode: 0o700}
	if opts != nil {
		f.noSync = opts.NoSync
		f.buffered = opts.Buffered || opts.NoSync
		if opts.FileMode != 0 {
			f.fileMode = opts.FileMode.Perm()
		}
		if opts.DirMode != 0 {
			f.dirMode = opts.DirMode.Perm()
		}
	}
	return f, nil
}

// Root returns the absolute path of the store's directory.
func (f *FS) Root() string { return f.root }

func (f *FS) path(key string) string {
	return filepath.Join(f.root, filepath.FromSlash(key))
}

// copyChunk is the unit of copying in Put, between context checks.
const copyChunk = 4 << 20

var copyBufs = sync.Pool{New: func() any { b := directio.Buf(copyChunk)[:copyChunk]; return &b }}

// directAtLeast is the smallest object written with O_DIRECT (a pack,
// not metadata).
const directAtLeast = 1 << 20

// errCollision explains the one thing FS cannot store.
var errCollision = errors.New("key collides with a file or directory on its path (the filesystem driver cannot hold both \"a\" and \"a/b\")")

// Put implements [Storage.Put].
func (f *FS) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *PutOptions) error {
	if err := checkOp(ctx, "put", key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("storage: fs put %q: negative size %d", key, size)
	}
	ifNotExist := opts != nil && opts.IfNotExist
	final := f.path(key)
	dir := filepath.Dir(final)
	if ifNotExist {
		// Cheap early answer; the hard link below is the real test.
		if fi, err := os.Lstat(final); err == nil {
			if fi.IsDir() {
				return fmt.Errorf("storage: fs put %q: %w", key, errCollision)
			}
			return fmt.Errorf("storage: fs put %q: %w", key, ErrExist)
		}
	}

	tmp, err := f.createTemp(dir)
	if err != nil {
		return putError(key, err)
	}
	tmpName := tmp.Name()
	if srcErr, err := f.fill(ctx, tmp, r, size); err != nil {
		tmp.Close()
		os.Remove(tmpName)
		if srcErr {
			return fmt.Errorf("storage: fs put %q: %w", key, err)
		}
		return putError(key, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmpName)
		return putError(key, err)
	}
	// Last chance to honour a cancellation: after this the object is
	// visible.
	if err := ctx.Err(); err != nil {
		os.Remove(tmpName)
		return fmt.Errorf("storage: fs put %q: %w", key, err)
	}

	if ifNotExist {
		err = os.Link(tmpName, final)
		os.Remove(tmpName) // a leftover would be harmless; CleanTemp finds it
		if err != nil {
			if errors.Is(err, fs.ErrExist) {
				if fi, serr := os.Lstat(final); serr == nil && fi.IsDir() {
					return fmt.Errorf("storage: fs put %q: %w", key, errCollision)
				}
				return fmt.Errorf("storage: fs put %q: %w: %w", key, ErrExist, err)
			}
			return putError(key, err)
		}
	} else if err := os.Rename(tmpName, final); err != nil {
		os.Remove(tmpName)
		if fi, serr := os.Lstat(final); serr == nil && fi.IsDir() {
			return fmt.Errorf("storage: fs put %q: %w: %w", key, errCollision, err)
		}
		return putError(key, err)
	}
	if err := f.syncDir(dir); err != nil {
		return putError(key, err)
	}
	return nil
}

// fill copies size bytes of r into w, checking ctx between chunks, and
// syncs w. srcErr tells errors of r (and of ctx), which must not be mapped
// to sentinels, from filesystem errors.
func (f *FS) fill(ctx context.Context, w *os.File, r io.ReaderAt, size int64) (srcErr bool, err error) {
	if f.fileMode != 0o600 { // os.CreateTemp uses 0o600
		if err := w.Chmod(f.fileMode); err != nil {
			return false, err
		}
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	// Whole aligned blocks go straight to the disk (see FSOptions.
	// Buffered); the tail, and everything on filesystems that refuse
	// O_DIRECT, through the cache.
	direct := !f.buffered && size >= directAtLeast && setDirect(w, true) == nil
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return true, err
		}
		want := int(min(int64(len(buf)), size-off))
		n, rerr := r.ReadAt(buf[:want], off)
		if n > 0 {
			if direct && n%directio.Align != 0 {
				direct = false
				if err := setDirect(w, false); err != nil {
					return false, err
				}
			}
			if _, werr := w.WriteAt(buf[:n], off); werr != nil {
				if !direct || !errors.Is(werr, syscall.EINVAL) {
					return false, werr
				}
				// Refused at write time (alignment the device wants
				// larger): go on through the cache.
				direct = false
				if err := setDirect(w, false); err != nil {
					return false, err
				}
				if _, werr := w.WriteAt(buf[:n], off); werr != nil {
					return false, werr
				}
			}
			off += int64(n)
		}
		if rerr == io.EOF && n == want {
			rerr = nil // EOF together with the final bytes is fine
		}
		if rerr != nil {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return true, fmt.Errorf("reading source at offset %d of %d: %w", off, size, rerr)
		}
		if n == 0 {
			return true, fmt.Errorf("reading source at offset %d of %d: %w", off, size, io.ErrNoProgress)
		}
	}
	if !f.noSync {
		if err := w.Sync(); err != nil {
			return false, err
		}
	}
	return false, nil
}

// createTemp creates a temporary file in dir, creating dir if needed.
func (f *FS) createTemp(dir string) (*os.File, error) {
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return tmp, err
	}
	if err := f.mkdirs(dir); err != nil {
		return nil, err
	}
	return os.CreateTemp(dir, tempPrefix+"*")
}

// mkdirs is os.MkdirAll that also syncs the parent of every directory it
// creates, so that a synced object cannot sit in a directory whose entry
// is lost in a crash.
func (f *FS) mkdirs(dir string) error {
	err := os.Mkdir(dir, f.dirMode)
	switch {
	case err == nil:
		return f.syncDir(filepath.Dir(dir))
	case errors.Is(err, fs.ErrExist):
		if fi, serr := os.Stat(dir); serr == nil && !fi.IsDir() {
			return errCollision
		}
		return nil // possibly created by a concurrent writer
	case errors.Is(err, fs.ErrNotExist):
		parent := filepath.Dir(dir)
		if parent == dir {
			return err
		}
		if err := f.mkdirs(parent); err != nil {
			return err
		}
		return f.mkdirs(dir)
	}
	return err
}

func (f *FS) syncDir(dir string) error {
	if f.noSync || runtime.GOOS == "windows" {
		return nil // directories cannot be synced on Windows
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Get implements [Storage.Get]. The reader streams from the open file, so
// it keeps reading the object it opened even if it is deleted or replaced
// meanwhile; it fails once ctx is done.
func (f *FS) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := checkOp(ctx, "get", key); err != nil {
		return nil, err
	}
	file, err := os.Open(f.path(key))
	if err != nil {
		return nil, mapFSError("get", key, err)
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, mapFSError("get", key, err)
	}
	if !fi.Mode().IsRegular() {
		file.Close()
		return nil, fmt.Errorf("storage: fs get %q: %w", key, ErrNotExist)
	}
	length, err := clampRange(off, n, fi.Size())
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("storage: fs get %q: %w", key, err)
	}
	return &ctxReader{ctx: ctx, r: io.NewSectionReader(file, off, length), closer: file}, nil
}

// Stat implements [Storage.Stat].
func (f *FS) Stat(ctx context.Context, key string) (Info, error) {
	if err := checkOp(ctx, "stat", key); err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(f.path(key))
	if err != nil {
		return Info{}, mapFSError("stat", key, err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("storage: fs stat %q: %w", key, ErrNotExist)
	}
	return Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements [Storage.List]. It walks the directories under the
// prefix depth first, in an order that yields keys in lexical order, and
// skips temporary files and any name that is not a valid key.
func (f *FS) List(ctx context.Context, prefix string, fn func(Info) error) error {
	if err := checkList(ctx, prefix); err != nil {
		return err
	}
	keyDir, namePrefix := "", prefix
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		keyDir, namePrefix = prefix[:i+1], prefix[i+1:]
	}
	return f.walk(ctx, keyDir, namePrefix, fn)
}

type fsEntry struct {
	name  string
	sort  string // name, plus "/" for a directory
	dir   bool
	entry fs.DirEntry
	info  fs.FileInfo // set for followed symlinks
}

// walk lists the directory of keyDir ("" or ending with "/"), restricted
// at this level to names starting with namePrefix.
//
// Reading directories in name order would not give lexical key order:
// for the keys "a/b/c" and "a/b-c", the directory "b" sorts before the
// file "b-c", yet "a/b-c" < "a/b/c" because '-' and '.' sort before '/'.
// Sorting a directory by "name/" instead of "name" fixes that.
func (f *FS) walk(ctx context.Context, keyDir, namePrefix string, fn func(Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storage: fs list: %w", err)
	}
	if len(keyDir) >= 1024 {
		return nil // no valid key below; also stops symlink loops
	}
	dirPath := filepath.Join(f.root, filepath.FromSlash(keyDir))
	des, err := os.ReadDir(dirPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil // missing prefix directory: nothing to list
		}
		return mapFSError("list", keyDir, err)
	}
	ents := make([]fsEntry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		if !strings.HasPrefix(name, namePrefix) || !ValidKey(name) {
			continue // temp files, foreign files, other prefixes
		}
		e := fsEntry{name: name, sort: name, entry: de}
		switch t := de.Type(); {
		case t.IsDir():
			e.dir = true
		case t.IsRegular():
		case t&fs.ModeSymlink != 0:
			fi, err := os.Stat(filepath.Join(dirPath, name))
			if err != nil {
				continue // dangling link
			}
			switch {
			case fi.IsDir():
				e.dir = true
			case fi.Mode().IsRegular():
				e.info = fi
			default:
				continue
			}
		default:
			continue // sockets, devices, pipes
		}
		if e.dir {
			e.sort += "/"
		}
		ents = append(ents, e)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].sort < ents[j].sort })
	for _, e := range ents {
		key := keyDir + e.name
		if e.dir {
			if err := f.walk(ctx, key+"/", "", fn); err != nil {
				return err
			}
			continue
		}
		if !ValidKey(key) {
			continue
		}
		fi := e.info
		if fi == nil {
			fi, err = e.entry.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // deleted while listing
				}
				return mapFSError("list", key, err)
			}
		}
		if err := fn(Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements [Storage.Delete]. Emptied directories are left in
// place.
func (f *FS) Delete(ctx context.Context, key string) error {
	if err := checkOp(ctx, "delete", key); err != nil {
		return err
	}
	p := f.path(key)
	fi, err := os.Lstat(p)
	if err != nil {
		return mapFSError("delete", key, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("storage: fs delete %q: %w", key, ErrNotExist)
	}
	if err := os.Remove(p); err != nil {
		return mapFSError("delete", key, err)
	}
	if err := f.syncDir(filepath.Dir(p)); err != nil {
		return mapFSError("delete", key, err)
	}
	return nil
}

// Close implements [Storage.Close]; it does nothing.
func (f *FS) Close() error { return nil }

// CleanTemp removes the temporary files of writes that started more than
// olderThan ago, as left behind by crashed writers, and returns how many it
// removed. Writes in progress are not affected as long as olderThan exceeds
// the duration of the longest write (an hour is a safe choice). Temporary
// files are never visible as objects, so running it is optional.
func (f *FS) CleanTemp(olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	var errs []error
	err := filepath.WalkDir(f.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // vanished (or the root does not exist yet)
			}
			errs = append(errs, err)
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			return nil
		}
		if err := os.Remove(p); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			return nil
		}
		removed++
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("storage: fs clean temp: %w", errors.Join(errs...))
	}
	return removed, nil
}

// putError maps a filesystem error of Put: on the way to a key, a file
// where a directory should be (or the reverse) is a collision, not a
// missing object.
func putError(key string, err error) error {
	if errors.Is(err, errCollision) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) {
		return fmt.Errorf("storage: fs put %q: %w: %w", key, errCollision, err)
	}
	return mapFSError("put", key, err)
}

// mapFSError wraps err with the sentinel it stands for, keeping err in the
// chain.
func mapFSError(op, key string, err error) error {
	var sentinel error
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		sentinel = ErrNotExist
	case errors.Is(err, fs.ErrExist):
		sentinel = ErrExist
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		sentinel = ErrPermission
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("storage: fs %s %q: the repository's filesystem is full or over quota (free space and run again; not retried): %w", op, key, err)
	default:
		return fmt.Errorf("storage: fs %s %q: %w", op, key, err)
	}
	return fmt.Errorf("storage: fs %s %q: %w: %w", op, key, sentinel, err)
}
