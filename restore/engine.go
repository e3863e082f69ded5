package restore

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math/bits"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/sync/semaphore"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/directio"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/internal/repo"
)

// The restore engine.
//
// A restore is planned, then run by three stages:
//
//   - The planner reads the snapshot's tree and turns files into entries
//     (chunk, location in its pack, destination file and offset). For a
//     directory it collects a batch of entries (batchEntries, or
//     batchFiles files), sorts it by pack and offset and cuts it into
//     spans: runs of sealed chunks of one pack that are adjacent (or
//     separated by at most maxGap bytes) and together at most maxSpan
//     bytes. A chunk used many times in the batch sorts into one place
//     and is fetched and decoded once, then written to every place. A
//     stream is planned the same way by windows of consecutive chunks
//     (about a quarter of the budget each), which the writer then takes
//     in stream order (see copyOrdered).
//   - Fetchers (Options.Concurrency of them) read each span with one
//     ranged read, in two steps. A fetcher sends the request first, and
//     only once the store has answered does it take the span's bytes from
//     the memory budget (Options.MemoryLimit) and read them: the store's
//     latency is paid while the budget's bytes are being decoded and
//     written, not while they wait for data, so the budget needs to cover
//     the time to decode a span, not a round trip (a response not yet read
//     holds only the transport's buffers). Charges are taken strictly in
//     plan order (each waits for the one before, see charge), so the sealed
//     and (for streams) plaintext bytes in flight never exceed the cap
//     whatever the snapshot's size, and an ordered stream cannot deadlock:
//     a stream's window is charged whole, before any span of a later
//     window, so every span the writer waits for got its budget.
//   - Decoders (GOMAXPROCS of them, twice that for a directory, whose
//     decoders also wait on writes; restore.All shares them, and the
//     fetchers, between tenants: see workShare) authenticate, decrypt,
//     decompress and verify each chunk of a span, and write it with
//     WriteAt into its pre-sized file (an all-zero chunk is not written:
//     the file is sparse there), or, for a stream, into the span's
//     plaintext buffer that the writer copies out in order. A stream span
//     whose chunks are all stored raw (incompressible data) is decrypted
//     in place instead: its sealed bytes become its output, with no
//     plaintext buffer, no budget for one, and no copy.
//
// A span that cannot be read whole (missing or truncated pack, transport
// error) or a chunk that fails to open falls back to repo.Loader.Load,
// chunk by chunk: it reads other copies of a multi-site repository and
// names the failing chunk and object precisely.
//
// Memory: the budget, plus one decode buffer (up to the chunker's Max) per
// decoder, plus the plan (about 100 bytes per entry) of one or two
// batches, or of the stream windows queued for the writer (up to
// Concurrency of them). Requests sent ahead of the budget hold no bytes.

const (
	defaultConcurrency = 32
	defaultMemoryLimit = 64 << 20
	// maxSpanCap bounds one ranged read.
	maxSpanCap = 8 << 20
	// spansPerBudget is how many spans of the largest size the budget
	// holds.
	spansPerBudget = 16
	// maxGap is the largest hole between two wanted chunks of a pack that
	// a span reads through rather than issuing another request: at object
	// store latencies a request costs far more than 256 KiB of transfer.
	maxGap = 256 << 10
	// batchEntries and batchFiles bound a directory restore's plan, and
	// the files open at once.
	batchEntries = 16384
	batchFiles   = 512
)

// entry is one chunk to restore to one place.
type entry struct {
	id  crypto.ID
	loc repo.Loc
	f   *fileState // nil for a stream
	off int64      // offset in the file; for a stream, in its span's plaintext
	n   uint32     // length the tree gives
	sp  *span      // stream: the span that reads it
}

// span is one ranged read of a pack and the entries it serves.
type span struct {
	pack      repo.PackRef
	off, end  uint32 // [off, end) of the pack
	entries   []entry
	rawLen    int64 // stream: plaintext bytes of the entries
	cost      int64 // budget held for the sealed bytes, until decoded
	rawCost   int64 // stream: budget held for the plaintext, until written
	sealed    *[]byte
	out       *[]byte // stream: plaintext of the entries, in span order
	unwritten int     // stream: entries the writer has yet to copy out
	inPlace   bool    // stream: every chunk stored raw, decrypted inside sealed
	charge    *charge // taken from the budget before the span is read
	fetchErr  error
	err       error         // stream: the first failure
	done      chan struct{} // stream: closed when decoded
}

// engine runs the fetch and decode stages for one restore session.
type engine struct {
	s        *session
	l        *repo.Loader
	ordered  bool
	maxSpan  uint32
	window   int64 // stream: the estimated bytes of a window
	limit    int64
	budget   *semaphore.Weighted
	fetchq   chan *span
	decq     chan *span
	orderq   chan *window // stream: windows in order, for the writer
	fetchers sync.WaitGroup
	decoders sync.WaitGroup
	// ctx, growMu and closing let restores sharing Concurrency and
	// decoders (All) add fetchers and decoders while the engine runs (see
	// grow).
	ctx     context.Context
	growMu  sync.Mutex
	closing bool
	// lastCharge is closed when the charge created last is taken: the
	// next charge waits for it (planner goroutine only).
	lastCharge chan struct{}
	// finish is called once per entry of a directory restore when the
	// entry is done (written or failed).
	finish func(*fileState)
}

func newEngine(ctx context.Context, s *session, ordered bool, finish func(*fileState)) *engine {
	e := &engine{s: s, l: s.loader, ordered: ordered, finish: finish, limit: s.opts.MemoryLimit, ctx: ctx}
	e.budget = s.opts.budget
	if e.budget == nil {
		e.budget = semaphore.NewWeighted(e.limit)
	}
	e.lastCharge = make(chan struct{})
	close(e.lastCharge)
	// Spans large enough that a request's latency is paid per megabytes,
	// not per chunk, and small enough that the budget holds many of them
	// (spansPerBudget), so that every decoder has work. They do not
	// depend on Concurrency: requests wait for the store without budget.
	e.maxSpan = uint32(min(maxSpanCap, max(1<<20, e.limit/spansPerBudget)))
	// A quarter of the budget per window of a stream, so that the next
	// windows are fetched while the writer drains one.
	e.window = max(1, e.limit/4)
	e.fetchq = make(chan *span, s.opts.Concurrency)
	e.decq = make(chan *span, s.opts.Concurrency)
	if ordered {
		// Windows queued for the writer are the planner's lead over it:
		// the lead must let the fetchers' requests run a round trip
		// ahead, so it is bound by the fetch queue (a window has at
		// least one span), not here. A queued window holds only its plan.
		e.orderq = make(chan *window, s.opts.Concurrency)
	}
	decoders := s.opts.decoders
	if decoders <= 0 {
		decoders = defaultDecoders(ordered)
	}
	e.grow(s.opts.Concurrency, decoders)
	go func() {
		e.fetchers.Wait()
		close(e.decq)
	}()
	if s.opts.share != nil {
		s.opts.share.join(e, work{s.opts.Concurrency, decoders})
	}
	return e
}

// defaultDecoders is the number of decoders of a restore run on its own.
// Decoders also write (a directory restore), and a write blocks on the
// disk (O_DIRECT) or on dirty-page throttling: twice as many as cores
// keep the cores busy meanwhile.
func defaultDecoders(ordered bool) int {
	if ordered {
		return runtime.GOMAXPROCS(0)
	}
	return 2 * runtime.GOMAXPROCS(0)
}

// grow starts more fetchers and decoders, unless the engine is closing;
// it reports whether it did. Both queues are open until closing is set,
// and the fetchers and decoders running until they close, so neither
// WaitGroup is back at zero when it is added to.
func (e *engine) grow(fetchers, decoders int) bool {
	e.growMu.Lock()
	defer e.growMu.Unlock()
	if e.closing {
		return false
	}
	for range fetchers {
		e.fetchers.Add(1)
		go e.fetch(e.ctx)
	}
	for range decoders {
		e.decoders.Add(1)
		go e.decode(e.ctx)
	}
	return true
}

// close tells the engine no more spans come, and waits for the decoders
// (and so for the fetchers): their share, when shared, then goes to other
// engines.
func (e *engine) close() {
	e.growMu.Lock()
	e.closing = true
	e.growMu.Unlock()
	close(e.fetchq)
	if e.orderq != nil {
		close(e.orderq)
	}
	e.decoders.Wait()
	if e.s.opts.share != nil {
		e.s.opts.share.leave(e)
	}
}

// charge is an amount taken from the budget at once: one span's bytes for
// a directory, one window's for a stream. Charges are taken in the order
// they were created (plan order), each after the one before, by the first
// fetcher of one of their spans to have its request answered. Fetchers
// take spans from one FIFO queue, so the charge next in line always
// belongs to a span some fetcher holds: the chain cannot stall.
type charge struct {
	prev <-chan struct{} // closed when the charge before is taken (or failed)
	done chan struct{}
	n    int64
	once sync.Once
	err  error
}

// newCharge returns the next charge in plan order.
func (e *engine) newCharge(n int64) *charge {
	c := &charge{prev: e.lastCharge, done: make(chan struct{}), n: n}
	e.lastCharge = c.done
	return c
}

// take waits for the charges before c, then takes c from the budget; for
// every span of c it returns the same result.
func (e *engine) take(ctx context.Context, c *charge) error {
	c.once.Do(func() {
		defer close(c.done)
		select {
		case <-c.prev:
		case <-ctx.Done():
			c.err = ctx.Err()
			return
		}
		c.err = e.budget.Acquire(ctx, c.n)
	})
	return c.err
}

// submit queues a span of a directory restore, charged on its own. (A
// stream's spans are charged by window: see submitWindow.)
func (e *engine) submit(sp *span) {
	sp.cost = classSize(int64(sp.end - sp.off))
	// A span costlier than the whole budget (one chunk bigger than the
	// cap) takes all of it.
	sp.cost = min(sp.cost, e.limit)
	sp.charge = e.newCharge(sp.cost)
	e.fetchq <- sp
}

// failSpan fails every entry of a span that will not be read. A stream
// span's done channel must exist.
func (e *engine) failSpan(sp *span, err error) {
	if e.ordered {
		sp.err = err
		close(sp.done)
		return
	}
	for i := range sp.entries {
		sp.entries[i].f.setErr(err)
		e.finish(sp.entries[i].f)
	}
}

// release gives back the span's sealed bytes and their budget.
func (e *engine) release(sp *span) {
	putBuf(sp.sealed)
	sp.sealed = nil
	if sp.cost > 0 {
		e.budget.Release(sp.cost)
		sp.cost = 0
	}
}

// written gives back a stream span's plaintext and its budget (for a span
// decrypted in place, the sealed bytes' too).
func (e *engine) written(sp *span) {
	putBuf(sp.out)
	sp.out = nil
	if n := sp.rawCost + sp.cost; n > 0 {
		e.budget.Release(n)
		sp.rawCost, sp.cost = 0, 0
	}
}

func (e *engine) fetch(ctx context.Context) {
	defer e.fetchers.Done()
	for sp := range e.fetchq {
		n := sp.end - sp.off
		// The request first, then the budget (see the engine's comment).
		// A failed request still takes its charge: the decoders' fallback
		// needs the budget, and the next charge waits for this one.
		r, err := e.l.OpenRange(ctx, sp.pack, sp.off, n)
		if cerr := e.take(ctx, sp.charge); cerr != nil {
			if r != nil {
				r.Close()
			}
			sp.cost, sp.rawCost = 0, 0
			e.failSpan(sp, cerr)
			continue
		}
		if err != nil {
			sp.fetchErr = err
		} else {
			sp.sealed = getBuf(int(n))
			*sp.sealed, sp.fetchErr = r.ReadInto((*sp.sealed)[:0])
		}
		e.decq <- sp
	}
}

func (e *engine) decode(ctx context.Context) {
	defer e.decoders.Done()
	var scratch repo.Scratch
	var out []byte
	for sp := range e.decq {
		if e.ordered {
			e.decodeOrdered(ctx, sp, &scratch)
			continue
		}
		out = e.decodeDir(ctx, sp, &scratch, out)
		e.release(sp)
	}
}

// open returns the plaintext of entry en of sp appended to dst: from the
// span's bytes when they were read, through the loader (other copies,
// precise errors) otherwise.
func (e *engine) open(ctx context.Context, sp *span, en *entry, dst []byte, scratch *repo.Scratch) ([]byte, error) {
	if sp.fetchErr == nil {
		at := en.loc.Offset - sp.off
		out, err := e.l.Open(dst, en.id, en.loc, sp.pack, (*sp.sealed)[at:at+en.loc.SealedLen], scratch)
		if err == nil {
			return out, nil
		}
	}
	if ctx.Err() != nil {
		return dst, ctx.Err()
	}
	return e.l.Load(ctx, en.id, dst, scratch)
}

func (e *engine) decodeDir(ctx context.Context, sp *span, scratch *repo.Scratch, out []byte) []byte {
	var (
		err     error
		data    []byte    // the chunk last decoded, inside out
		decoded bool      // data (or err) holds chunk last
		last    crypto.ID // the chunk decoded last
	)
	for i := range sp.entries {
		en := &sp.entries[i]
		if en.f.failed() {
			e.finish(en.f)
			continue
		}
		// Entries of the same chunk sort next to each other: decode it
		// once, write it everywhere.
		if !decoded || last != en.id {
			// For O_DIRECT, the chunk is placed in out at the offset's
			// alignment, so that its aligned inside starts on an aligned
			// address (out itself is aligned).
			pad := 0
			if en.f.size >= directAtLeast && e.s.direct.Load() {
				pad = int(en.off & (directio.Align - 1))
			}
			if need := pad + int(en.n) + format.DecodeSlack; cap(out) < need {
				// Grown from what is needed, with a quarter to spare: a
				// restore of a small tenant must not clear megabytes per
				// decoder, and these buffers are outside the budget.
				out = directio.Buf(need + need/4)
			}
			out, err = e.open(ctx, sp, en, out[:pad], scratch)
			data = nil
			if err == nil {
				data = out[pad:]
			}
			decoded, last = true, en.id
		}
		werr := err
		if werr == nil && len(data) != int(en.n) {
			werr = &repo.ChunkError{ID: en.id, Err: fmt.Errorf("%w: %d bytes, tree says %d", format.ErrCorrupt, len(data), en.n)}
		}
		if werr == nil {
			werr = en.f.writeAt(data, en.off)
		}
		if werr != nil {
			en.f.setErr(werr)
		} else {
			e.s.wrote(int64(len(data)))
		}
		e.finish(en.f)
	}
	return out
}

func (e *engine) decodeOrdered(ctx context.Context, sp *span, scratch *repo.Scratch) {
	defer close(sp.done)
	if sp.inPlace && sp.fetchErr == nil {
		e.decodeInPlace(ctx, sp, scratch)
		return
	}
	sp.out = getBuf(int(sp.rawLen) + format.DecodeSlack)
	out := (*sp.out)[:0]
	for i := range sp.entries {
		en := &sp.entries[i]
		if i > 0 && sp.entries[i-1].id == en.id {
			en.off = sp.entries[i-1].off // the same chunk: decoded once
			continue
		}
		start := len(out)
		var err error
		out, err = e.open(ctx, sp, en, out, scratch)
		if err == nil && len(out)-start != int(en.n) {
			err = &repo.ChunkError{ID: en.id, Err: fmt.Errorf("%w: %d bytes, tree says %d", format.ErrCorrupt, len(out)-start, en.n)}
		}
		if err != nil {
			sp.err = err
			break
		}
		en.off = int64(start)
	}
	*sp.out = out
	e.release(sp) // the sealed bytes are no longer needed
}

// decodeInPlace decodes a stream span whose chunks are all stored raw
// (incompressible data) inside its sealed bytes: each chunk's plaintext is
// its sealed bytes less the encoding byte and the tag, so the span needs no
// plaintext buffer (nor budget for one) and nothing is copied. The sealed
// buffer becomes the span's output, held until written. A chunk that fails
// here (damaged, or not raw after all) is loaded again through the loader,
// which tries other copies, and put in its own place: its plaintext is
// shorter than its sealed bytes.
func (e *engine) decodeInPlace(ctx context.Context, sp *span, scratch *repo.Scratch) {
	buf := *sp.sealed
	var tmp []byte
	for i := range sp.entries {
		en := &sp.entries[i]
		if i > 0 && sp.entries[i-1].id == en.id {
			en.off = sp.entries[i-1].off // the same chunk: decoded once
			continue
		}
		at := en.loc.Offset - sp.off
		out, err := e.l.OpenInPlace(en.id, en.loc, sp.pack, buf[at:at+en.loc.SealedLen], scratch)
		if err == nil && len(out) == int(en.n) {
			en.off = int64(at) + 1 // after the encoding byte
			continue
		}
		if ctx.Err() != nil {
			sp.err = ctx.Err()
			break
		}
		tmp, err = e.l.Load(ctx, en.id, tmp[:0], scratch)
		if err == nil && len(tmp) != int(en.n) {
			err = &repo.ChunkError{ID: en.id, Err: fmt.Errorf("%w: %d bytes, tree says %d", format.ErrCorrupt, len(tmp), en.n)}
		}
		if err != nil {
			sp.err = err
			break
		}
		en.off = int64(at)
		copy(buf[at:], tmp)
	}
	// The sealed buffer is now the output: its budget (sp.cost) is given
	// back once the span is written.
	sp.out, sp.sealed = sp.sealed, nil
}

// planSorted cuts entries, sorted by pack and offset, into spans.
func (e *engine) planSorted(entries []entry) {
	slices.SortFunc(entries, func(a, b entry) int {
		if c := cmp.Compare(a.loc.Pack, b.loc.Pack); c != 0 {
			return c
		}
		return cmp.Compare(a.loc.Offset, b.loc.Offset)
	})
	e.cut(entries, e.submit)
}

// cut groups consecutive entries into spans and submits them. A span
// extends over the next entry when it is in the same pack, starts at most
// maxGap past the span's end (or is the chunk just read again), and keeps
// the span within maxSpan.
func (e *engine) cut(entries []entry, emit func(*span)) {
	idx := e.l.Index()
	for len(entries) > 0 {
		first := &entries[0]
		sp := &span{off: first.loc.Offset, end: first.loc.Offset + first.loc.SealedLen, rawLen: int64(first.n)}
		n := 1
		for ; n < len(entries); n++ {
			en, prev := &entries[n], &entries[n-1]
			if en.loc.Pack != first.loc.Pack {
				break
			}
			if en.id == prev.id {
				continue // decoded once, written to each place
			}
			if e.ordered && sp.rawLen+int64(en.n)+format.DecodeSlack > int64(e.maxSpan) {
				break // the span's plaintext is held until written
			}
			end := en.loc.Offset + en.loc.SealedLen
			if en.loc.Offset < sp.end || en.loc.Offset-sp.end > maxGap || end-sp.off > e.maxSpan {
				break
			}
			sp.end = end
			sp.rawLen += int64(en.n)
		}
		sp.entries = entries[:n:n]
		sp.pack = idx.PackAt(first.loc.Pack)
		entries = entries[n:]
		emit(sp)
	}
}

// Buffers come from per-size-class pools; a buffer is charged to the
// budget at its class size, so the budget bounds real memory. Classes are
// powers of two. (Quarter steps between them, tried to charge a span less
// than up to twice its size, split the buffers over more pools, whose idle
// buffers then doubled the peak heap of BenchmarkRestorePeakMemory, for no
// gain measurable through the latency benchmark's noise.)
var bufPools [64]sync.Pool

const minClass = 16 // 64 KiB

func class(n int64) int {
	if n <= 1<<minClass {
		return minClass
	}
	return bits.Len64(uint64(n - 1))
}

func classSize(n int64) int64 { return 1 << class(n) }

func getBuf(n int) *[]byte {
	c := class(int64(n))
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, 0, 1<<c)
	return &b
}

func putBuf(p *[]byte) {
	if p == nil || cap(*p) == 0 {
		return
	}
	c := class(int64(cap(*p)))
	if 1<<c != cap(*p) {
		return // grown by append past its class: let it go
	}
	*p = (*p)[:0]
	bufPools[c].Put(p)
}

var zeroBlock [64 << 10]byte

// isZero reports whether b holds only zero bytes; it stops at the first
// block that differs, so on ordinary data it costs almost nothing.
func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
