package storage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// Mem is an in-memory [Storage], for tests and benchmarks. It follows the
// contract exactly like the durable drivers do: data is copied in on Put
// (a caller mutating its buffer afterwards does not change the object) and
// readers never expose the stored bytes to mutation.
//
// The zero value is not usable; call [NewMem]. Close is a no-op and the
// objects stay available afterwards, since mem://NAME URLs hand the same
// Mem to every opener in the process.
type Mem struct {
	mu   sync.RWMutex
	objs map[string]memObject
	keys *keyList // the keys of objs, in order
}

type memObject struct {
	data    []byte // never modified once stored
	modTime time.Time
}

// NewMem returns an empty in-memory store.
func NewMem() *Mem {
	return &Mem{objs: make(map[string]memObject), keys: newKeyList()}
}

// memChunk is how much Put copies between context checks.
const memChunk = 1 << 20

// Put implements [Storage.Put].
func (m *Mem) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *PutOptions) error {
	if err := checkOp(ctx, "put", key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("storage: mem put %q: negative size %d", key, size)
	}
	ifNotExist := opts != nil && opts.IfNotExist
	if ifNotExist {
		// Fail early without copying; the check is repeated under the
		// write lock below.
		m.mu.RLock()
		_, taken := m.objs[key]
		m.mu.RUnlock()
		if taken {
			return fmt.Errorf("storage: mem put %q: %w", key, ErrExist)
		}
	}
	data := make([]byte, size)
	if err := readFull(ctx, r, data, memChunk); err != nil {
		return fmt.Errorf("storage: mem put %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storage: mem put %q: %w", key, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, taken := m.objs[key]
	if taken && ifNotExist {
		return fmt.Errorf("storage: mem put %q: %w", key, ErrExist)
	}
	if !taken {
		m.keys.insert(key)
	}
	m.objs[key] = memObject{data: data, modTime: time.Now()}
	return nil
}

// readFull fills p from r at offset 0, chunk bytes at a time, checking ctx
// between chunks. A reader ending early yields io.ErrUnexpectedEOF.
func readFull(ctx context.Context, r io.ReaderAt, p []byte, chunk int) error {
	var off int
	for off < len(p) {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(off+chunk, len(p))
		n, err := r.ReadAt(p[off:end], int64(off))
		off += n
		if err == io.EOF && off == end {
			err = nil // allowed at the very end of the data
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("reading source at offset %d: %w", off, err)
		}
		if n == 0 {
			return fmt.Errorf("reading source at offset %d: %w", off, io.ErrNoProgress)
		}
	}
	return nil
}

// Get implements [Storage.Get].
func (m *Mem) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := checkOp(ctx, "get", key); err != nil {
		return nil, err
	}
	m.mu.RLock()
	o, ok := m.objs[key]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("storage: mem get %q: %w", key, ErrNotExist)
	}
	size := int64(len(o.data))
	length, err := clampRange(off, n, size)
	if err != nil {
		return nil, fmt.Errorf("storage: mem get %q: %w", key, err)
	}
	// o.data is never written after Put, so reading it without the lock
	// is safe, and bytes.Reader copies out, so callers cannot mutate it.
	return &ctxReader{ctx: ctx, r: bytes.NewReader(o.data[off : off+length])}, nil
}

// clampRange validates [off, off+n) against size and returns the length to
// read, following the rules of [Storage.Get].
func clampRange(off, n, size int64) (int64, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d: %w", off, ErrInvalidRange)
	}
	if off > size {
		return 0, fmt.Errorf("offset %d beyond size %d: %w", off, size, ErrInvalidRange)
	}
	avail := size - off
	if n < 0 || n > avail {
		n = avail
	}
	return n, nil
}

// ctxReader fails reads once ctx is done, like a network body would.
type ctxReader struct {
	ctx    context.Context
	r      io.Reader
	closer io.Closer
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (c *ctxReader) Close() error {
	if c.closer != nil {
		return c.closer.Close()
	}
	return nil
}

// Stat implements [Storage.Stat].
func (m *Mem) Stat(ctx context.Context, key string) (Info, error) {
	if err := checkOp(ctx, "stat", key); err != nil {
		return Info{}, err
	}
	m.mu.RLock()
	o, ok := m.objs[key]
	m.mu.RUnlock()
	if !ok {
		return Info{}, fmt.Errorf("storage: mem stat %q: %w", key, ErrNotExist)
	}
	return Info{Key: key, Size: int64(len(o.data)), ModTime: o.modTime}, nil
}

// List implements [Storage.List]. It takes a snapshot of the matching
// objects first, so fn may call the store (even delete) without deadlock.
func (m *Mem) List(ctx context.Context, prefix string, fn func(Info) error) error {
	if err := checkList(ctx, prefix); err != nil {
		return err
	}
	m.mu.RLock()
	infos := make([]Info, 0, 16)
	m.keys.prefix(prefix, func(k string) {
		o := m.objs[k]
		infos = append(infos, Info{Key: k, Size: int64(len(o.data)), ModTime: o.modTime})
	})
	m.mu.RUnlock()
	for i, info := range infos {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("storage: mem list %q: %w", prefix, err)
			}
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements [Storage.Delete].
func (m *Mem) Delete(ctx context.Context, key string) error {
	if err := checkOp(ctx, "delete", key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[key]; !ok {
		return fmt.Errorf("storage: mem delete %q: %w", key, ErrNotExist)
	}
	delete(m.objs, key)
	m.keys.remove(key)
	return nil
}

// Close implements [Storage.Close]; it does nothing.
func (m *Mem) Close() error { return nil }

// checkOp runs the checks every keyed operation starts with.
func checkOp(ctx context.Context, op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storage: %s %q: %w", op, key, err)
	}
	if !ValidKey(key) {
		return fmt.Errorf("storage: %s %q: %w", op, key, ErrInvalidKey)
	}
	return nil
}

func checkList(ctx context.Context, prefix string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storage: list %q: %w", prefix, err)
	}
	if !ValidPrefix(prefix) {
		return fmt.Errorf("storage: list %q: %w", prefix, ErrInvalidKey)
	}
	return nil
}
