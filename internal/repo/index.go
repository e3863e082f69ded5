package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/storage"
)

// Loc locates a chunk: which pack, where in it, and how big.
type Loc struct {
	Pack      uint32 // position in Index.Packs
	Seq       uint32
	Offset    uint32
	SealedLen uint32
	RawLen    uint32
	Kind      byte
}

// PackRef names a pack and the generation whose key sealed it.
type PackRef struct {
	ID  crypto.ID
	Gen uint32
}

// Index maps chunk IDs to their location, for one tenant. It is safe for
// concurrent use.
type Index struct {
	mu    sync.RWMutex
	packs []PackRef
	m     map[crypto.ID]Loc
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{m: make(map[crypto.ID]Loc)} }

// Len is the number of chunks indexed.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.m)
}

// Lookup returns the location of a chunk.
func (x *Index) Lookup(id crypto.ID) (Loc, PackRef, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	l, ok := x.m[id]
	if !ok {
		return Loc{}, PackRef{}, false
	}
	return l, x.packs[l.Pack], true
}

// Has reports whether a chunk is indexed.
func (x *Index) Has(id crypto.ID) bool {
	x.mu.RLock()
	_, ok := x.m[id]
	x.mu.RUnlock()
	return ok
}

// PackAt returns the pack of a Loc (Loc.Pack).
func (x *Index) PackAt(i uint32) PackRef {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.packs[i]
}

// Packs returns the packs the index knows.
func (x *Index) Packs() []PackRef {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return append([]PackRef(nil), x.packs...)
}

// ForEach calls fn for every indexed chunk.
func (x *Index) ForEach(fn func(id crypto.ID, l Loc, p PackRef)) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for id, l := range x.m {
		fn(id, l, x.packs[l.Pack])
	}
}

// Add records the blobs of a pack. A chunk already indexed keeps its first
// location (two writers may store the same chunk; either copy serves).
func (x *Index) Add(p *format.PackEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := uint32(len(x.packs))
	x.packs = append(x.packs, PackRef{ID: p.ID, Gen: p.Gen})
	for _, b := range p.Blobs {
		if _, ok := x.m[b.ID]; ok {
			continue
		}
		x.m[b.ID] = Loc{Pack: n, Seq: b.Seq, Offset: b.Offset, SealedLen: b.SealedLen, RawLen: b.RawLen, Kind: b.Kind}
	}
}

// BadObject names a stored object that could not be used, and why.
type BadObject struct {
	Key string
	Err error
}

func (b BadObject) Error() string { return b.Key + ": " + b.Err.Error() }

// LoadIndex reads every index object of the tenant. Objects that fail to
// read or authenticate are returned in bad, not silently dropped: callers
// decide whether a partial index is good enough (a backup merely stores
// those chunks again; check reports them). An index object that vanished
// between listing and reading (a prune consolidated it) makes it start
// over, so no pack is missed.
func (t *Tenant) LoadIndex(ctx context.Context) (idx *Index, bad []BadObject, err error) {
	idx, bad, _, _, err = t.loadIndex(ctx, nil, false)
	return idx, bad, err
}

// LoadIndexForWrite is LoadIndex for backups: packs a prune has marked for
// deletion are left out, so that nothing new deduplicates against them.
func (t *Tenant) LoadIndexForWrite(ctx context.Context) (*Index, []BadObject, error) {
	stones, err := t.tombstones(ctx)
	if err != nil {
		return nil, nil, err
	}
	skip := map[crypto.ID]bool{}
	for _, s := range stones {
		for _, p := range s.Packs {
			skip[p] = true
		}
	}
	idx, bad, _, _, err := t.loadIndex(ctx, skip, false)
	return idx, bad, err
}

// loadIndex also returns the keys of the index objects it read and, with
// keepEntries, their contents as read (all blobs of each pack, in order).
func (t *Tenant) loadIndex(ctx context.Context, skip map[crypto.ID]bool, keepEntries bool) (idx *Index, bad []BadObject, keys []string, entries []format.PackEntry, err error) {
	for attempt := 0; ; attempt++ {
		var vanished bool
		idx, bad, keys, entries, vanished, err = t.loadIndexOnce(ctx, skip, keepEntries)
		if err != nil || !vanished || attempt == 4 {
			return idx, bad, keys, entries, err
		}
	}
}

// metaReaders bounds the index or snapshot objects read at once. A
// restore pays their reading before its first byte: up to this many, they
// all take one round trip (8 at once made a tenant of 9 index objects, or
// of 43 snapshots, pay 2 or 6). The bound is on the memory they take while
// being decoded.
const metaReaders = 32

func (t *Tenant) loadIndexOnce(ctx context.Context, skip map[crypto.ID]bool, keepEntries bool) (idx *Index, bad []BadObject, keys []string, entries []format.PackEntry, vanished bool, err error) {
	idx = NewIndex()
	prefix := t.DataPrefix() + "i/"
	if err := t.Repo.St.List(ctx, prefix, func(i storage.Info) error {
		keys = append(keys, i.Key)
		return nil
	}); err != nil {
		return nil, nil, nil, nil, false, fmt.Errorf("listing indexes: %w", err)
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(metaReaders)
	for _, key := range keys {
		g.Go(func() error {
			packs, err := t.readIndex(gctx, key)
			if err != nil {
				if ctxErr := gctx.Err(); ctxErr != nil {
					return ctxErr
				}
				if errors.Is(err, storage.ErrNotExist) {
					mu.Lock()
					vanished = true
					mu.Unlock()
					return nil
				}
				if isFatalStorage(err) {
					return err
				}
				mu.Lock()
				bad = append(bad, BadObject{Key: key, Err: err})
				mu.Unlock()
				return nil
			}
			for i := range packs {
				if !skip[packs[i].ID] {
					idx.Add(&packs[i])
				}
			}
			if keepEntries {
				mu.Lock()
				entries = append(entries, packs...)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, nil, nil, false, err
	}
	return idx, bad, keys, entries, vanished, nil
}

// isFatalStorage reports storage errors that say nothing about the object
// itself (credentials, transient outages): they stop the operation instead
// of marking the object bad.
func isFatalStorage(err error) bool {
	return errors.Is(err, storage.ErrPermission) || errors.Is(err, storage.ErrTransient)
}

func (t *Tenant) readIndex(ctx context.Context, key string) ([]format.PackEntry, error) {
	id, err := crypto.ParseID(key[strings.LastIndexByte(key, '/')+1:])
	if err != nil {
		return nil, fmt.Errorf("%w: index object name", format.ErrCorrupt)
	}
	var packs []format.PackEntry
	err = t.Repo.readVerified(ctx, key, func(b []byte) error {
		pt, err := t.openSealed(format.MagicIndex, &id, b)
		if err == nil {
			packs, err = format.UnmarshalIndex(pt)
		}
		return err
	})
	return packs, err
}

func (t *Tenant) openSealed(magic string, id *crypto.ID, b []byte) ([]byte, error) {
	gen, err := format.SealedGen(magic, b)
	if err != nil {
		return nil, err
	}
	keys, err := t.Keys(gen)
	if err != nil {
		return nil, err
	}
	payload, err := format.OpenObjectPayload(magic, &keys.Metadata, &t.Handle, id, b)
	if err != nil {
		return nil, err
	}
	if err := t.Repo.Config.CheckPayload(payload); err != nil {
		return nil, err
	}
	return format.Decode(nil, payload, -1)
}

// WriteIndex stores an index object listing packs, under a fresh random
// name (so concurrent writers never collide).
func (t *Tenant) WriteIndex(ctx context.Context, packs []format.PackEntry) error {
	id, err := crypto.RandomID()
	if err != nil {
		return err
	}
	gen, keys := t.Current()
	obj, err := format.SealObject(format.MagicIndex, &keys.Metadata, gen, &t.Handle, &id, format.MarshalIndex(packs))
	if err != nil {
		return err
	}
	return putData(ctx, t.Repo.St, t.IndexKey(id), obj)
}

func putBytes(ctx context.Context, st storage.Storage, key string, b []byte, createOnly bool) error {
	return st.Put(ctx, key, bytes.NewReader(b), int64(len(b)), &storage.PutOptions{IfNotExist: createOnly})
}

// Unwrap returns the cause.
func (b BadObject) Unwrap() error { return b.Err }
