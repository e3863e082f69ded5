package repo

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
)

// WriterOptions tune a Writer. The zero value is usable.
type WriterOptions struct {
	// PackSize is the target pack size; 0 takes the repository's.
	PackSize int
	// Sealers is the number of goroutines compressing and sealing chunks;
	// 0 means GOMAXPROCS.
	Sealers int
	// Uploads is the number of packs uploaded at once; 0 means 2.
	Uploads int
	// NoCompress stores every chunk uncompressed. Otherwise chunks are
	// compressed, when it pays, with the repository's codec
	// (format.Config.ChunkEncoding).
	NoCompress bool
	// IndexEvery writes an index object after this many packs are durable,
	// so an interrupted backup loses little dedup information; 0 means 8.
	IndexEvery int
}

// Writer stores new chunks of one tenant into packs. Chunks arrive from
// many goroutines through Add; sealing and uploads run on their own
// goroutines with bounded queues, so memory stays bounded by the options,
// whatever the input size.
//
// Ordering (docs/FORMAT.md, "Write ordering"): a pack is durable before an
// index names it, and Flush returns only when every added chunk is in a
// durable pack named by a durable index; a snapshot written after Flush
// therefore never references a chunk that is not stored.
type Writer struct {
	t    *Tenant
	idx  *Index
	gen  uint32
	keys *crypto.TenantKeys
	opts WriterOptions
	enc  byte // payload encoding chunks are compressed with (format.Encode)

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	pending map[crypto.ID]struct{} // claimed by this writer, not yet indexed

	jobs    chan sealJob // by value: no allocation per chunk
	uploads chan *format.PackBuilder
	// free holds the idle pack builders, by chunk kind: they bound pack
	// memory. Data builders number Sealers+Uploads (each sealer fills one,
	// uploads hold the others), so at most that many pack-sized buffers
	// exist; tree builders are as many but stay small unless the tree is
	// huge. Each sealer holds at most one builder of each kind, so a
	// sealer waiting for one always gets it when an upload ends.
	free [2]chan *format.PackBuilder
	// bufs holds idle chunk copies (Add to the sealers): a fixed free
	// list rather than a sync.Pool, which the GC empties, so that steady
	// state allocates nothing.
	bufs chan *[]byte

	sealers sync.WaitGroup
	uploadW sync.WaitGroup

	imu       sync.Mutex
	unflushed []format.PackEntry
	written   []format.PackEntry // indexed durably so far

	// Stats, updated atomically.
	NewChunks  atomic.Int64
	NewRaw     atomic.Int64 // plaintext bytes of new chunks
	BytesAdded atomic.Int64 // pack bytes written
	Packs      atomic.Int64

	closed bool
}

type sealJob struct {
	kind byte
	id   crypto.ID
	data []byte // the chunk at data[1:], a spare byte in front (EncodeFramed)
	buf  *[]byte
}

// NewWriter starts a writer adding to idx (the tenant's loaded index,
// updated as packs become durable).
func (t *Tenant) NewWriter(ctx context.Context, idx *Index, opts WriterOptions) *Writer {
	if opts.PackSize <= 0 {
		opts.PackSize = t.Repo.Config.PackSize
	}
	if opts.Sealers <= 0 {
		opts.Sealers = runtime.GOMAXPROCS(0)
	}
	if opts.Uploads <= 0 {
		opts.Uploads = 2
	}
	if opts.IndexEvery <= 0 {
		opts.IndexEvery = 8
	}
	gen, keys := t.Current()
	enc := t.Repo.Config.ChunkEncoding()
	if opts.NoCompress {
		enc = format.EncodingRaw
	}
	w := &Writer{
		t: t, idx: idx, gen: gen, keys: keys, opts: opts, enc: enc,
		pending: make(map[crypto.ID]struct{}),
		jobs:    make(chan sealJob, 2*opts.Sealers),
		uploads: make(chan *format.PackBuilder, opts.Uploads),
	}
	w.bufs = make(chan *[]byte, cap(w.jobs)+2*opts.Sealers)
	w.ctx, w.cancel = context.WithCancelCause(ctx)
	for k := range w.free {
		w.free[k] = make(chan *format.PackBuilder, opts.Sealers+opts.Uploads)
		for range cap(w.free[k]) {
			pb := format.NewPackBuilder()
			if k == int(format.KindData) {
				// Packs stay within PackSize; room for the header. Tree
				// packs are mostly small: their buffers grow as needed.
				pb.SizeHint = opts.PackSize + 64<<10
			}
			w.free[k] <- pb
		}
	}
	for range opts.Sealers {
		w.sealers.Add(1)
		go w.seal()
	}
	for range opts.Uploads {
		w.uploadW.Add(1)
		go w.upload()
	}
	return w
}

func (w *Writer) fail(err error) { w.cancel(err) }

// Err returns the error that stopped the writer, if any.
func (w *Writer) Err() error {
	if w.ctx.Err() == nil {
		return nil
	}
	return context.Cause(w.ctx)
}

// Known reports whether the chunk is already stored or being stored.
func (w *Writer) Known(id crypto.ID) bool {
	if w.idx.Has(id) {
		return true
	}
	w.mu.Lock()
	_, ok := w.pending[id]
	w.mu.Unlock()
	return ok
}

// Add stores a chunk unless it is already stored or being stored. It
// copies data before returning, so the caller may reuse its buffer. It
// reports whether the chunk was new. Add is safe for concurrent use.
func (w *Writer) Add(kind byte, id crypto.ID, data []byte) (bool, error) {
	if kind != format.KindData && kind != format.KindTree {
		return false, fmt.Errorf("internal error: chunk kind %d", kind)
	}
	if err := w.Err(); err != nil {
		return false, err
	}
	if w.idx.Has(id) {
		return false, nil
	}
	w.mu.Lock()
	if _, ok := w.pending[id]; ok {
		w.mu.Unlock()
		return false, nil
	}
	w.pending[id] = struct{}{}
	w.mu.Unlock()

	var bp *[]byte
	select {
	case bp = <-w.bufs:
	default:
		b := make([]byte, 0, 1+len(data))
		bp = &b
	}
	// One spare byte in front: a chunk stored raw is sealed from this
	// copy with its encoding byte, without another copy.
	buf := append(append((*bp)[:0], 0), data...)
	j := sealJob{kind: kind, id: id, data: buf, buf: bp}
	select {
	case w.jobs <- j:
		w.NewChunks.Add(1)
		w.NewRaw.Add(int64(len(data)))
		return true, nil
	case <-w.ctx.Done():
		return false, w.Err()
	}
}

// seal runs on Sealers goroutines. Each keeps one open pack per chunk
// kind: tree chunks go to packs of their own, so damage to a data pack
// costs the files that use it, never a whole snapshot's tree.
func (w *Writer) seal() {
	defer w.sealers.Done()
	var open [2]*format.PackBuilder // by kind
	var enc []byte                  // encoded payload, reused
	ship := func(kind byte) {
		pb := open[kind]
		open[kind] = nil
		if pb == nil {
			return
		}
		if pb.Count() == 0 {
			w.free[kind] <- pb
			return
		}
		select {
		case w.uploads <- pb:
		case <-w.ctx.Done():
		}
	}
	for j := range w.jobs {
		if w.ctx.Err() != nil {
			w.release(j)
			continue // drain
		}
		payload := format.EncodeFramed(enc[:0], j.data, w.enc)
		if &payload[0] != &j.data[0] {
			enc = payload // compressed: keep the grown buffer
		}
		// A chunk that would take the open pack past PackSize starts the
		// next one: packs stay within PackSize (unless one chunk alone is
		// larger), so their buffers settle at that size.
		if pb := open[j.kind]; pb != nil && pb.Count() > 0 && pb.Len()+len(payload)+crypto.Overhead > w.opts.PackSize {
			ship(j.kind)
		}
		if open[j.kind] == nil {
			var pb *format.PackBuilder
			select {
			case pb = <-w.free[j.kind]:
			case <-w.ctx.Done():
				w.release(j)
				continue
			}
			if err := pb.Reset(&w.keys.Data, w.gen, w.t.Handle); err != nil {
				w.fail(err)
				w.free[j.kind] <- pb
				w.release(j)
				continue
			}
			open[j.kind] = pb
		}
		open[j.kind].AddEncoded(j.kind, &j.id, payload, len(j.data)-1)
		w.release(j)
	}
	ship(format.KindData)
	ship(format.KindTree)
}

func (w *Writer) release(j sealJob) {
	*j.buf = j.data[:0]
	select {
	case w.bufs <- j.buf:
	default: // more in flight than the list holds: let it go
	}
}

func (w *Writer) upload() {
	defer w.uploadW.Done()
	for pb := range w.uploads {
		if w.ctx.Err() == nil {
			if err := w.putPack(pb); err != nil {
				w.fail(err)
			}
		}
		w.free[pb.Blobs()[0].Kind] <- pb // shipped packs are never empty
	}
}

func (w *Writer) putPack(pb *format.PackBuilder) error {
	data := pb.Finish()
	key := w.t.PackKey(pb.ID)
	start := time.Now()
	if err := putData(w.ctx, w.t.Repo.St, key, data); err != nil {
		return fmt.Errorf("writing pack %s: %w", key, err)
	}
	w.t.Repo.Log.Debug("pack stored", "pack", pb.ID.Short(), "bytes", len(data), "chunks", pb.Count(), "took", time.Since(start))
	w.BytesAdded.Add(int64(len(data)))
	w.Packs.Add(1)
	entry := format.PackEntry{ID: pb.ID, Gen: w.gen, Blobs: append([]format.BlobInfo(nil), pb.Blobs()...)}
	w.imu.Lock()
	w.unflushed = append(w.unflushed, entry)
	var flush []format.PackEntry
	if len(w.unflushed) >= w.opts.IndexEvery {
		flush, w.unflushed = w.unflushed, nil
	}
	w.imu.Unlock()
	if flush != nil {
		return w.writeIndex(flush)
	}
	return nil
}

// writeIndex makes packs known: first durably in an index object, then in
// memory (so a chunk is only deduplicated against once its index exists).
func (w *Writer) writeIndex(packs []format.PackEntry) error {
	if err := w.t.WriteIndex(w.ctx, packs); err != nil {
		return fmt.Errorf("writing index: %w", err)
	}
	for i := range packs {
		w.idx.Add(&packs[i])
	}
	w.imu.Lock()
	w.written = append(w.written, packs...)
	w.imu.Unlock()
	w.mu.Lock()
	for i := range packs {
		for _, b := range packs[i].Blobs {
			delete(w.pending, b.ID)
		}
	}
	w.mu.Unlock()
	return nil
}

// Close seals the open packs, waits for every upload, and writes the last
// index. After Close returns nil, every chunk added is durable and
// indexed. Close must be called once, after the last Add.
func (w *Writer) Close() error {
	if w.closed {
		return errors.New("writer closed twice")
	}
	w.closed = true
	close(w.jobs)
	w.sealers.Wait()
	close(w.uploads)
	w.uploadW.Wait()
	defer w.cancel(errors.New("writer closed"))
	if err := w.Err(); err != nil {
		return err
	}
	w.imu.Lock()
	flush := w.unflushed
	w.unflushed = nil
	w.imu.Unlock()
	if len(flush) > 0 {
		if err := w.writeIndex(flush); err != nil {
			return err
		}
	}
	w.mu.Lock()
	left := len(w.pending)
	w.mu.Unlock()
	if left != 0 {
		return fmt.Errorf("internal error: %d chunks added but not stored", left)
	}
	return nil
}

// Closed reports whether Close or Abort was called.
func (w *Writer) Closed() bool { return w.closed }

// Abort stops the writer without waiting for a clean end; packs already
// stored stay (a later prune removes them if no index names them).
func (w *Writer) Abort(cause error) {
	w.fail(cause)
	if !w.closed {
		w.closed = true
		close(w.jobs)
		w.sealers.Wait()
		close(w.uploads)
		w.uploadW.Wait()
	}
}

// Written returns the packs this writer stored and indexed.
func (w *Writer) Written() []format.PackEntry {
	w.imu.Lock()
	defer w.imu.Unlock()
	return append([]format.PackEntry(nil), w.written...)
}
