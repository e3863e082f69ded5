package restore

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"

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
// goroutine cuts them into windows of consecutive chunks, each window into
// spans, fetchers and decoders work ahead, and this goroutine writes each
// chunk when its turn comes. The memory budget bounds what is held ahead
// of the writer.
//
// A window's entries are sorted by pack and offset before they are cut
// into spans, as a directory's are: a backup's sealers fill several packs
// at once, so consecutive chunks of a stream alternate between packs, and
// cutting in stream order made a request per chunk.
func (s *session) copyOrdered(ctx context.Context, refs []format.ChunkRef, w io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e := newEngine(ctx, s, true, nil)
	go func() {
		defer e.close()
		idx := s.loader.Index()
		var entries []entry
		var size int64 // the window's estimated cost
		for i, r := range refs {
			loc, _, ok := idx.Lookup(r.ID)
			if !ok {
				// Everything before it is still written, then the error.
				e.submitWindow(entries)
				sp := &span{entries: []entry{{id: r.ID}}, done: make(chan struct{})}
				sp.entries[0].sp = sp
				e.failSpan(sp, &repo.ChunkError{ID: r.ID, Err: repo.ErrChunkMissing})
				e.orderq <- &window{order: []*entry{&sp.entries[0]}, spans: []*span{sp}}
				return
			}
			entries = append(entries, entry{id: r.ID, loc: loc, n: r.Len, off: int64(len(entries))})
			size += int64(loc.SealedLen)
			if loc.SealedLen != repo.RawSealedLen(r.Len) {
				size += int64(r.Len) // a plaintext buffer too (see submitWindow)
			}
			if size >= e.window || len(entries) == windowEntries || i == len(refs)-1 {
				e.submitWindow(entries)
				entries, size = nil, 0
			}
			if ctx.Err() != nil {
				return
			}
		}
	}()
	var err error
	for win := range e.orderq {
		for _, en := range win.order {
			if err != nil {
				break
			}
			sp := en.sp
			select {
			case <-sp.done:
			case <-ctx.Done():
				err = ctx.Err()
				continue
			}
			if err = sp.err; err != nil {
				continue
			}
			if _, werr := w.Write((*sp.out)[en.off : en.off+int64(en.n)]); werr != nil {
				err = fmt.Errorf("writing output: %w", werr)
				continue
			}
			s.wrote(int64(en.n))
			if sp.unwritten--; sp.unwritten == 0 {
				e.written(sp)
			}
		}
		if err != nil {
			// Stop the planner and the fetches, and drain what is queued
			// so that every goroutine ends.
			cancel()
			for _, sp := range win.spans {
				<-sp.done
				e.written(sp)
				e.release(sp) // a span failed before decoding still holds these
			}
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// window is a run of consecutive chunks of a stream, cut into spans
// (sorted by pack and offset) that are charged to the budget together.
type window struct {
	order []*entry // the entries in stream order; entry.sp is its span
	spans []*span
}

// windowEntries bounds the chunks of one window.
const windowEntries = 4096

// submitWindow sorts a window's entries (whose off holds their position
// in the stream) by pack and offset, cuts them into spans that share one
// charge for the window's whole cost, and queues the window for the
// writer and the spans for the fetchers. Charging a window whole is what
// keeps an ordered restore from deadlocking: the writer takes the chunks
// of a window in an order unrelated to its spans', but every span of the
// window it works on got its budget before any span of a later window
// (charges are taken in order), and the writer gives budget back as it
// writes.
func (e *engine) submitWindow(entries []entry) {
	if len(entries) == 0 {
		return
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if c := cmp.Compare(a.loc.Pack, b.loc.Pack); c != 0 {
			return c
		}
		if c := cmp.Compare(a.loc.Offset, b.loc.Offset); c != 0 {
			return c
		}
		return cmp.Compare(a.off, b.off)
	})
	win := &window{order: make([]*entry, len(entries))}
	var total int64
	e.cut(entries, func(sp *span) {
		sp.done = make(chan struct{})
		sp.cost = classSize(int64(sp.end - sp.off))
		sp.inPlace = true
		for i := range sp.entries {
			if en := &sp.entries[i]; en.loc.SealedLen != repo.RawSealedLen(en.n) {
				sp.inPlace = false
				break
			}
		}
		if !sp.inPlace {
			sp.rawCost = classSize(sp.rawLen + format.DecodeSlack)
		}
		sp.unwritten = len(sp.entries)
		total += sp.cost + sp.rawCost
		for i := range sp.entries {
			en := &sp.entries[i]
			win.order[en.off] = en
			en.sp = sp
		}
		win.spans = append(win.spans, sp)
	})
	// A window costlier than the whole budget (a chunk bigger than the
	// cap) takes all of it: its first spans are charged, the rest ride
	// free.
	if total > e.limit {
		left := e.limit
		for _, sp := range win.spans {
			sp.cost = min(sp.cost, left)
			left -= sp.cost
			sp.rawCost = min(sp.rawCost, left)
			left -= sp.rawCost
		}
		total = e.limit
	}
	c := e.newCharge(total)
	e.orderq <- win
	for _, sp := range win.spans {
		sp.charge = c
		e.fetchq <- sp
	}
}
