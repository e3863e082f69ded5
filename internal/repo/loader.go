package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/storage"
)

// ErrChunkMissing reports a chunk that no index names.
var ErrChunkMissing = errors.New("chunk not in any index")

// ErrChunkMismatch reports a chunk whose plaintext does not hash to its ID.
var ErrChunkMismatch = errors.New("chunk content does not match its ID")

// ChunkError reports a chunk that could not be read, naming the chunk and
// the object it was read from.
type ChunkError struct {
	ID     crypto.ID
	Object string // pack object key; empty when the chunk is not indexed
	Err    error
}

func (e *ChunkError) Error() string {
	if e.Object == "" {
		return fmt.Sprintf("chunk %s: %v", e.ID.Short(), e.Err)
	}
	return fmt.Sprintf("chunk %s in %s: %v", e.ID.Short(), e.Object, e.Err)
}

func (e *ChunkError) Unwrap() error { return e.Err }

// Loader reads chunks back: a ranged read of the pack, authenticated
// decryption, decoding, and a check of the chunk's ID. It is safe for
// concurrent use; each goroutine passes its own Scratch.
type Loader struct {
	t   *Tenant
	idx *Index

	// Time spent per stage, in nanoseconds summed over all goroutines
	// (so it can exceed wall time): the cost profile a drill reports.
	Fetch, Decrypt, Decompress, Verify atomic.Int64

	mu      sync.Mutex
	ciphers map[crypto.ID]*crypto.ObjectCipher
}

// Scratch holds one goroutine's reusable buffers for Loader.
type Scratch struct {
	sealed []byte
	opener format.BlobOpener
	hasher map[uint32]*crypto.IDHasher
}

// NewLoader returns a loader over the tenant's index.
func (t *Tenant) NewLoader(idx *Index) *Loader {
	return &Loader{t: t, idx: idx, ciphers: map[crypto.ID]*crypto.ObjectCipher{}}
}

// Index returns the loader's index.
func (l *Loader) Index() *Index { return l.idx }

// PackCipher returns the (cached) cipher of a pack.
func (l *Loader) PackCipher(p PackRef) (*crypto.ObjectCipher, error) {
	l.mu.Lock()
	c, ok := l.ciphers[p.ID]
	l.mu.Unlock()
	if ok {
		return c, nil
	}
	keys, err := l.t.Keys(p.Gen)
	if err != nil {
		return nil, err
	}
	c, err = crypto.NewObjectCipher(&keys.Data, &p.ID)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	if len(l.ciphers) > 4096 { // bound the cache; rebuilding a cipher is cheap
		clear(l.ciphers)
	}
	l.ciphers[p.ID] = c
	l.mu.Unlock()
	return c, nil
}

func (l *Loader) hasherFor(s *Scratch, gen uint32) (*crypto.IDHasher, error) {
	if s.hasher == nil {
		s.hasher = map[uint32]*crypto.IDHasher{}
	}
	if h, ok := s.hasher[gen]; ok {
		return h, nil
	}
	keys, err := l.t.Keys(gen)
	if err != nil {
		return nil, err
	}
	h := crypto.NewIDHasher(&keys.ChunkID)
	s.hasher[gen] = h
	return h, nil
}

// Load appends the plaintext of chunk id to dst. When the copy read is bad
// (fails authentication, is truncated or corrupt) and the backend keeps
// several copies, the other copies are tried and the bad one is reported.
func (l *Loader) Load(ctx context.Context, id crypto.ID, dst []byte, s *Scratch) ([]byte, error) {
	loc, p, ok := l.idx.Lookup(id)
	if !ok {
		return nil, &ChunkError{ID: id, Err: ErrChunkMissing}
	}
	out, err := l.loadFrom(ctx, l.t.Repo.St, id, loc, p, dst, s)
	if err == nil || !(badCopy(err) || errors.Is(err, storage.ErrNotExist)) {
		return out, err
	}
	rep, ok := storage.AsReplicated(l.t.Repo.St)
	if !ok {
		return nil, err
	}
	key := l.t.PackKey(p.ID)
	for _, c := range rep.Replicas() {
		out, rerr := l.loadFrom(ctx, c.Storage, id, loc, p, dst, s)
		if rerr == nil {
			l.t.Repo.Log.Warn("a damaged copy was read around; run repair", "object", key, "site", c.Name)
			return out, nil
		}
		if badCopy(rerr) {
			rep.ReportBadCopy(c.Name, key, rerr)
		}
	}
	return nil, err
}

func (l *Loader) loadFrom(ctx context.Context, st storage.Storage, id crypto.ID, loc Loc, p PackRef, dst []byte, s *Scratch) ([]byte, error) {
	key := l.t.PackKey(p.ID)
	start := time.Now()
	rc, err := st.Get(ctx, key, int64(loc.Offset), int64(loc.SealedLen))
	if err != nil {
		if errors.Is(err, storage.ErrInvalidRange) {
			err = fmt.Errorf("%w: pack truncated: %w", format.ErrCorrupt, err)
		}
		return nil, &ChunkError{ID: id, Object: key, Err: err}
	}
	s.sealed = growLen(s.sealed, int(loc.SealedLen))
	_, err = io.ReadFull(rc, s.sealed)
	rc.Close()
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: pack truncated", format.ErrCorrupt)
		}
		return nil, &ChunkError{ID: id, Object: key, Err: err}
	}
	l.Fetch.Add(int64(time.Since(start)))
	return l.Open(dst, id, loc, p, s.sealed, s)
}

// ReadRange reads the bytes [off, off+n) of pack p into dst (grown as
// needed) with one ranged read: a restore reads several adjacent sealed
// chunks at once and opens each with Open. Errors are the storage's; a
// short object fails with format.ErrCorrupt. The caller falls back to Load,
// chunk by chunk, for precise errors and other copies.
func (l *Loader) ReadRange(ctx context.Context, p PackRef, off, n uint32, dst []byte) ([]byte, error) {
	r, err := l.OpenRange(ctx, p, off, n)
	if err != nil {
		return dst, err
	}
	return r.ReadInto(dst)
}

// OpenRange sends the request for the bytes [off, off+n) of pack p, and
// returns once the store answers, before the bytes are read: the first
// half of ReadRange. A restore opens ranges ahead of having the memory to
// hold them, so that a store's latency is paid while earlier ranges are
// decoded, not while memory waits empty. The caller must call ReadInto or
// Close.
func (l *Loader) OpenRange(ctx context.Context, p PackRef, off, n uint32) (*Range, error) {
	start := time.Now()
	rc, err := l.t.Repo.St.Get(ctx, l.t.PackKey(p.ID), int64(off), int64(n))
	if err != nil {
		return nil, err
	}
	return &Range{l: l, rc: rc, n: n, wait: time.Since(start)}, nil
}

// Range is a pack range whose request was answered (see OpenRange).
type Range struct {
	l    *Loader
	rc   io.ReadCloser
	n    uint32
	wait time.Duration // the request's time until the store answered
}

// ReadInto reads the range into dst (grown as needed) and closes it.
func (r *Range) ReadInto(dst []byte) ([]byte, error) {
	defer r.rc.Close()
	start := time.Now()
	dst = growLen(dst, int(r.n))
	if _, err := io.ReadFull(r.rc, dst); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: pack truncated", format.ErrCorrupt)
		}
		return dst, err
	}
	r.l.Fetch.Add(int64(r.wait + time.Since(start)))
	return dst, nil
}

// Close abandons the range unread.
func (r *Range) Close() error { return r.rc.Close() }

// Open authenticates, decrypts, decodes and verifies a sealed chunk already
// read from its pack, appending the plaintext to dst.
func (l *Loader) Open(dst []byte, id crypto.ID, loc Loc, p PackRef, sealed []byte, s *Scratch) ([]byte, error) {
	// The pack's key name is only built on failure: this runs once per
	// chunk, and a string per chunk would be the hot path's only
	// allocation.
	fail := func(err error) error { return &ChunkError{ID: id, Object: l.t.PackKey(p.ID), Err: err} }
	c, err := l.PackCipher(p)
	if err != nil {
		return nil, fail(err)
	}
	b := format.BlobInfo{Kind: loc.Kind, ID: id, Seq: loc.Seq, RawLen: loc.RawLen}
	start := len(dst)
	t0 := time.Now()
	payload, err := s.opener.Decrypt(c, p.Gen, &l.t.Handle, &b, sealed)
	if err != nil {
		return nil, fail(err)
	}
	t1 := time.Now()
	if err := l.t.Repo.Config.CheckPayload(payload); err != nil {
		return nil, fail(err)
	}
	out, err := format.Decode(dst, payload, int(b.RawLen))
	if err != nil {
		return nil, fail(err)
	}
	t2 := time.Now()
	if err := l.verify(s, p.Gen, out[start:], id); err != nil {
		return nil, fail(err)
	}
	t3 := time.Now()
	l.Decrypt.Add(int64(t1.Sub(t0)))
	l.Decompress.Add(int64(t2.Sub(t1)))
	l.Verify.Add(int64(t3.Sub(t2)))
	return out, nil
}

// OpenInPlace is Open for a chunk stored raw, decrypted inside sealed: the
// plaintext it returns aliases sealed, which it overwrites, and nothing is
// copied. A chunk that is not stored raw fails with ErrNotRaw (its bytes
// in sealed destroyed): the caller reads it again with Load.
func (l *Loader) OpenInPlace(id crypto.ID, loc Loc, p PackRef, sealed []byte, s *Scratch) ([]byte, error) {
	fail := func(err error) error { return &ChunkError{ID: id, Object: l.t.PackKey(p.ID), Err: err} }
	c, err := l.PackCipher(p)
	if err != nil {
		return nil, fail(err)
	}
	b := format.BlobInfo{Kind: loc.Kind, ID: id, Seq: loc.Seq, RawLen: loc.RawLen}
	t0 := time.Now()
	payload, err := s.opener.DecryptInPlace(c, p.Gen, &l.t.Handle, &b, sealed)
	if err != nil {
		return nil, fail(err)
	}
	if len(payload) == 0 || payload[0] != format.EncodingRaw {
		return nil, fail(ErrNotRaw)
	}
	out := payload[1:]
	if len(out) != int(b.RawLen) {
		return nil, fail(fmt.Errorf("%w: payload holds %d bytes, want %d", format.ErrCorrupt, len(out), b.RawLen))
	}
	t1 := time.Now()
	if err := l.verify(s, p.Gen, out, id); err != nil {
		return nil, fail(err)
	}
	l.Decrypt.Add(int64(t1.Sub(t0)))
	l.Verify.Add(int64(time.Since(t1)))
	return out, nil
}

// verify checks that plaintext hashes to id under generation gen's chunk
// ID key: the last check of Open and OpenInPlace.
func (l *Loader) verify(s *Scratch, gen uint32, plaintext []byte, id crypto.ID) error {
	h, err := l.hasherFor(s, gen)
	if err != nil {
		return err
	}
	if h.Sum(plaintext) != id {
		return ErrChunkMismatch
	}
	return nil
}

// ErrNotRaw reports a chunk OpenInPlace cannot open: it is compressed.
var ErrNotRaw = errors.New("chunk is not stored raw")

// RawSealedLen is the sealed length of a chunk of n bytes stored raw: an
// encoding byte and the AEAD tag more. (A compressed chunk is always
// shorter: compression is kept only when it saves 1/32.)
func RawSealedLen(n uint32) uint32 { return n + 1 + crypto.Overhead }

func growLen(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// StreamReader returns a reader over the concatenated plaintext of refs
// (used for tree streams). It loads up to streamAhead chunks ahead of the
// reader, concurrently, so a large tree over an object store costs about
// one round trip per streamAhead chunks, not one per chunk.
func (l *Loader) StreamReader(ctx context.Context, refs []format.ChunkRef) io.Reader {
	ctx, cancel := context.WithCancel(ctx)
	return &streamReader{ctx: ctx, cancel: cancel, l: l, refs: refs}
}

const streamAhead = 4

// EachNode reads the tree stored in refs and calls fn with each node, in
// order; it returns the first error reading or decoding the tree.
func (l *Loader) EachNode(ctx context.Context, refs []format.ChunkRef, fn func(*format.Node)) error {
	tr := format.NewTreeReader(l.StreamReader(ctx, refs))
	for {
		n, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		fn(n)
	}
}

type loaded struct {
	buf  []byte
	err  error
	done chan struct{}
}

type streamReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	l      *Loader
	refs   []format.ChunkRef // not yet requested
	ahead  []*loaded         // requested, in order
	buf    []byte
	pos    int
	err    error
}

func (r *streamReader) Read(p []byte) (int, error) {
	for r.pos == len(r.buf) {
		if r.err != nil {
			return 0, r.err
		}
		for len(r.ahead) < streamAhead && len(r.refs) > 0 {
			ref := r.refs[0]
			r.refs = r.refs[1:]
			ld := &loaded{done: make(chan struct{})}
			r.ahead = append(r.ahead, ld)
			go func() {
				defer close(ld.done)
				var s Scratch
				ld.buf, ld.err = r.l.Load(r.ctx, ref.ID, nil, &s)
				if ld.err == nil && len(ld.buf) != int(ref.Len) {
					ld.err = &ChunkError{ID: ref.ID, Err: fmt.Errorf("%w: length %d, tree says %d", format.ErrCorrupt, len(ld.buf), ref.Len)}
				}
			}()
		}
		if len(r.ahead) == 0 {
			r.cancel()
			return 0, io.EOF
		}
		ld := r.ahead[0]
		r.ahead = r.ahead[1:]
		<-ld.done
		r.buf, r.pos, r.err = ld.buf, 0, ld.err
		if r.err != nil {
			r.cancel() // stop the loads ahead
			r.buf = nil
			return 0, r.err
		}
	}
	n := copy(p, r.buf[r.pos:])
	r.pos += n
	return n, nil
}

// Matches reports whether data hashes to chunk id (under the key of the
// generation of the pack the index locates it in), without reading it.
func (l *Loader) Matches(id crypto.ID, data []byte) bool {
	_, p, ok := l.idx.Lookup(id)
	if !ok {
		return false
	}
	keys, err := l.t.Keys(p.Gen)
	if err != nil {
		return false
	}
	return crypto.NewIDHasher(&keys.ChunkID).Sum(data) == id
}
