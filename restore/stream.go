package restore

import (
	"context"
	"fmt"
	"io"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/internal/repo"
)

// Stream writes the contents of stream snapshot ref to w, in order (for
// example into psql). Chunks are fetched and decoded in parallel ahead of
// the writer within a bounded window, so memory stays bounded whatever the
// stream's size. On any error nothing more is written and the error names
// the chunk and object at fault.
func Stream(ctx context.Context, t *reprise.Tenant, ref string, w io.Writer, opts *Options) (*Result, error) {
	s, err := newSession(ctx, t, ref, opts)
	if err != nil {
		return nil, err
	}
	if s.snap.Kind != format.SnapshotStream {
		s.stopProgress()
		return nil, fmt.Errorf("restore: snapshot %s is a %s snapshot of %s; restore it to a directory", s.snap.ID.Short(), s.snap.Kind, s.snap.Source)
	}
	tr := format.NewTreeReader(s.loader.StreamReader(ctx, s.snap.Tree))
	var file *format.Node
	for {
		n, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			err = fmt.Errorf("restore: reading the snapshot's tree: %w", err)
			s.record(err)
			return nil, err
		}
		if n.Type == format.TypeFile {
			if file != nil {
				s.stopProgress()
				return nil, fmt.Errorf("restore: %w: stream snapshot holds more than one file", format.ErrCorrupt)
			}
			c := *n
			c.Chunks = append([]format.ChunkRef(nil), n.Chunks...)
			file = &c
		}
	}
	if file == nil {
		s.stopProgress()
		return nil, fmt.Errorf("restore: %w: stream snapshot holds no stream", format.ErrCorrupt)
	}
	if err := s.copyOrdered(ctx, file.Chunks, w); err != nil {
		err = fmt.Errorf("restore: %w", err)
		s.record(err)
		return nil, err
	}
	s.files.Add(1)
	return s.result()
}

type pending struct {
	ref  format.ChunkRef
	buf  []byte
	err  error
	done chan struct{}
}

// copyOrdered fetches refs with s.opts.Concurrency workers and writes them
// to w in order; at most 2×Concurrency chunks are held at once.
func (s *session) copyOrdered(ctx context.Context, refs []format.ChunkRef, w io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	window := 2 * s.opts.Concurrency
	order := make(chan *pending, window)
	work := make(chan *pending, window)
	free := make(chan []byte, window) // bounds the chunks in flight
	for range window {
		free <- nil
	}
	go func() {
		defer close(order)
		defer close(work)
		for _, r := range refs {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			p := &pending{ref: r, buf: buf, done: make(chan struct{})}
			order <- p // never blocks: free bounds what is in flight to window
			work <- p
		}
	}()
	for range s.opts.Concurrency {
		go func() {
			var scratch repo.Scratch
			for p := range work {
				p.buf, p.err = s.loader.Load(ctx, p.ref.ID, p.buf[:0], &scratch)
				if p.err == nil && len(p.buf) != int(p.ref.Len) {
					p.err = &repo.ChunkError{ID: p.ref.ID, Err: fmt.Errorf("%w: %d bytes, tree says %d", format.ErrCorrupt, len(p.buf), p.ref.Len)}
				}
				close(p.done)
			}
		}()
	}
	for p := range order {
		select {
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if p.err != nil {
			return p.err
		}
		if _, err := w.Write(p.buf); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
		s.bytes.Add(int64(len(p.buf)))
		free <- p.buf[:0]
	}
	return ctx.Err()
}
