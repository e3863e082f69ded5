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

// copyOrdered restores refs to w in order through the engine: a planner
// goroutine cuts them into spans of consecutive chunks, fetchers and
// decoders work ahead, and this goroutine writes each span when its turn
// comes. The memory budget bounds what is held ahead of the writer.
func (s *session) copyOrdered(ctx context.Context, refs []format.ChunkRef, w io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e := newEngine(ctx, s, true, nil)
	go func() {
		defer e.close()
		idx := s.loader.Index()
		const batch = 4096
		entries := make([]entry, 0, min(len(refs), batch))
		for i, r := range refs {
			loc, _, ok := idx.Lookup(r.ID)
			if !ok {
				// Everything before it is still written, then the error.
				e.cut(ctx, entries)
				e.failSpan(&span{}, &repo.ChunkError{ID: r.ID, Err: repo.ErrChunkMissing})
				return
			}
			entries = append(entries, entry{id: r.ID, loc: loc, n: r.Len})
			if len(entries) == batch || i == len(refs)-1 {
				e.cut(ctx, entries)
				entries = make([]entry, 0, min(len(refs)-i-1, batch))
			}
			if ctx.Err() != nil {
				return
			}
		}
	}()
	var err error
	for sp := range e.orderq {
		if err == nil {
			select {
			case <-sp.done:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err == nil {
			err = sp.err
		}
		if err == nil {
			if _, werr := w.Write(*sp.out); werr != nil {
				err = fmt.Errorf("writing output: %w", werr)
			} else {
				s.bytes.Add(int64(len(*sp.out)))
			}
		}
		if err != nil {
			// Stop the planner and the fetches, and drain what is queued
			// so that every goroutine ends.
			cancel()
			<-sp.done
		}
		e.written(sp)
		e.release(sp) // a span failed before decoding still holds these
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}
