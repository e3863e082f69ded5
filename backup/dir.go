package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/internal/format"
)

// Dir backs up the directory tree rooted at dir: regular files, directories
// and symbolic links, with their permission bits and modification times.
// Other kinds of files (devices, sockets, pipes) are left out. Paths that
// cannot be read are left out and listed in Result.Skipped; the backup
// still succeeds.
func Dir(ctx context.Context, t *reprise.Tenant, dir string, opts *Options) (*Result, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("backup: %s is not a directory", abs)
	}
	return FS(ctx, t, os.DirFS(abs), abs, opts)
}

// node is one entry of the tree on its way from the walker to the tree
// stream; files wait for their worker.
type node struct {
	format.Node
	done chan struct{} // files: closed when Chunks is set or err is
	err  error
}

// FS backs up the tree rooted at "." of fsys, recording source as the
// snapshot's source. Symbolic links are stored as links when fsys
// implements fs.ReadLinkFS (os.DirFS does).
func FS(ctx context.Context, t *reprise.Tenant, fsys fs.FS, source string, opts *Options) (*Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s, err := newSession(ctx, t, source, opts)
	if err != nil {
		return nil, err
	}
	order := make(chan *node, 1024) // bounds how far the walker runs ahead
	files := make(chan *node, 4*s.opts.Files)

	var wg sync.WaitGroup
	for range s.opts.Files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := s.newChunker()
			for n := range files {
				s.readFile(ctx, fsys, c, n)
			}
		}()
	}
	walkErr := make(chan error, 1)
	go func() {
		err := s.walk(ctx, fsys, order, files)
		close(files)
		close(order)
		walkErr <- err
	}()

	tree, err := s.storeTree(ctx, func(tw *format.TreeWriter) error {
		for n := range order {
			if n.done != nil {
				select {
				case <-n.done:
				case <-ctx.Done():
					return context.Cause(ctx)
				}
				if n.err != nil {
					if errors.Is(n.err, context.Canceled) || s.w.Err() != nil {
						return n.err
					}
					s.skip(n.Path, n.err)
					continue
				}
				s.files.Add(1)
			}
			if err := tw.Write(&n.Node); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		cancel(err)
	}
	for range order { // drain so the walker can finish
	}
	wg.Wait()
	if werr := <-walkErr; err == nil && werr != nil {
		err = werr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, s.abort(fmt.Errorf("backup: %w", err))
	}
	return s.finish(ctx, format.SnapshotDir, source, tree)
}

func (s *session) walk(ctx context.Context, fsys fs.FS, order, files chan<- *node) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			if p == "." {
				return err // the root itself is unreadable: fail the backup
			}
			s.skip(p, err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if p != "." && s.opts.Exclude != nil && s.opts.Exclude(p, d) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		var info fs.FileInfo
		if p == "." {
			info, err = fs.Stat(fsys, ".")
		} else {
			info, err = d.Info()
		}
		if err != nil {
			s.skip(p, err)
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		n := &node{Node: format.Node{Path: p, Mode: uint32(modeBits(info.Mode())), MTime: info.ModTime().UnixNano()}}
		switch m := info.Mode(); {
		case m.IsDir():
			n.Type = format.TypeDir
			s.dirs.Add(1)
		case m.IsRegular():
			n.Type = format.TypeFile
			n.Size = uint64(info.Size())
			n.done = make(chan struct{})
		case m&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(fsys, p)
			if err != nil {
				s.skip(p, err)
				return nil
			}
			n.Type, n.Target = format.TypeSymlink, target
			s.links.Add(1)
		default:
			s.log.Debug("leaving out special file", "path", p, "mode", m.String())
			return nil
		}
		select {
		case order <- n:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if n.done != nil {
			select {
			case files <- n:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		return nil
	})
}

// modeBits keeps the permission, setuid, setgid and sticky bits in their
// Unix positions.
func modeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

func (s *session) readFile(ctx context.Context, fsys fs.FS, c *chunker, n *node) {
	defer close(n.done)
	f, err := fsys.Open(n.Path)
	if err != nil {
		n.err = err
		return
	}
	defer f.Close()
	refs, size, err := c.run(ctx, f, format.KindData, nil)
	if err != nil {
		n.err = err
		return
	}
	// A file that grew or shrank while being read is stored as read: the
	// size always matches the chunks.
	n.Size, n.Chunks = uint64(size), refs
}
