// Package metered wraps a [storage.Storage] to count its operations, bytes,
// errors and latencies, and to log every operation at slog's Debug level.
//
// Keys are logged as they are: Reprise's keys are opaque hex names that
// reveal nothing of the data. The counters are plain numbers read with
// [Store.Stats]; exporting them (to Prometheus, say) is left to the caller.
package metered

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/reprise-backup/reprise/storage"
)

// Options tunes [New].
type Options struct {
	// Logger receives a Debug record per operation. Nil logs nothing.
	Logger *slog.Logger
}

// OpStats are the counters of one operation.
type OpStats struct {
	// Calls counts the calls, failed or not.
	Calls int64
	// Errors counts the failed calls, except those answered with
	// ErrNotExist or ErrExist, which are counted apart as they are often
	// expected. A Get whose reader fails midway counts once.
	Errors int64
	// NotExist counts ErrNotExist answers.
	NotExist int64
	// Exist counts ErrExist answers (lost create-only races).
	Exist int64
	// Bytes counts the bytes of successful Puts, and the bytes callers
	// read from Get readers.
	Bytes int64
	// Entries counts the objects passed to List callbacks.
	Entries int64
	// Latency is the total time spent in the calls; for Get, the time to
	// open the reader (time to first byte, roughly), not to drain it.
	Latency time.Duration
	// MaxLatency is the longest call.
	MaxLatency time.Duration
}

// MeanLatency returns Latency / Calls, or zero.
func (o OpStats) MeanLatency() time.Duration {
	if o.Calls == 0 {
		return 0
	}
	return o.Latency / time.Duration(o.Calls)
}

// Stats is a snapshot of the counters of every operation.
type Stats struct {
	Put, Get, Stat, List, Delete OpStats
}

// Store is the metering wrapper. It is safe for concurrent use.
type Store struct {
	s   storage.Storage
	log *slog.Logger

	mu sync.Mutex
	st Stats
}

var (
	_ storage.Storage = (*Store)(nil)
	_ storage.Wrapper = (*Store)(nil)
)

// New wraps s. opts may be nil.
func New(s storage.Storage, opts *Options) *Store {
	m := &Store{s: s}
	if opts != nil {
		m.log = opts.Logger
	}
	return m
}

// Stats returns a snapshot of the counters.
func (m *Store) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// Reset zeroes the counters.
func (m *Store) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st = Stats{}
}

// Unwrap returns the wrapped store.
func (m *Store) Unwrap() storage.Storage { return m.s }

// Close closes the wrapped store.
func (m *Store) Close() error { return m.s.Close() }

// record accounts for one finished call of the operation o points into.
func (m *Store) record(o func(*Stats) *OpStats, d time.Duration, err error, bytes, entries int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := o(&m.st)
	s.Calls++
	s.Latency += d
	s.MaxLatency = max(s.MaxLatency, d)
	s.Bytes += bytes
	s.Entries += entries
	countErr(s, err)
}

func countErr(s *OpStats, err error) {
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrNotExist):
		s.NotExist++
	case errors.Is(err, storage.ErrExist):
		s.Exist++
	default:
		s.Errors++
	}
}

func (m *Store) debug(ctx context.Context, msg string, attrs ...slog.Attr) {
	if m.log == nil || !m.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	m.log.LogAttrs(ctx, slog.LevelDebug, msg, attrs...)
}

func errAttr(err error) slog.Attr {
	if err == nil {
		return slog.Attr{}
	}
	return slog.Any("error", err)
}

func putStats(s *Stats) *OpStats    { return &s.Put }
func getStats(s *Stats) *OpStats    { return &s.Get }
func statStats(s *Stats) *OpStats   { return &s.Stat }
func listStats(s *Stats) *OpStats   { return &s.List }
func deleteStats(s *Stats) *OpStats { return &s.Delete }

// Put implements [storage.Storage.Put].
func (m *Store) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *storage.PutOptions) error {
	start := time.Now()
	err := m.s.Put(ctx, key, r, size, opts)
	d := time.Since(start)
	var n int64
	if err == nil {
		n = size
	}
	m.record(putStats, d, err, n, 0)
	m.debug(ctx, "storage put", slog.String("key", key), slog.Int64("size", size),
		slog.Bool("create_only", opts != nil && opts.IfNotExist), slog.Duration("dur", d), errAttr(err))
	return err
}

// Get implements [storage.Storage.Get]. Bytes are counted as the caller
// reads them.
func (m *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := m.s.Get(ctx, key, off, n)
	d := time.Since(start)
	m.record(getStats, d, err, 0, 0)
	m.debug(ctx, "storage get", slog.String("key", key), slog.Int64("off", off), slog.Int64("n", n),
		slog.Duration("dur", d), errAttr(err))
	if err != nil {
		return nil, err
	}
	return &reader{m: m, ctx: ctx, key: key, rc: rc}, nil
}

type reader struct {
	m      *Store
	ctx    context.Context
	key    string
	rc     io.ReadCloser
	failed bool
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	failed := err != nil && err != io.EOF && !r.failed
	if failed {
		r.failed = true
	}
	if n > 0 || failed {
		r.m.mu.Lock()
		r.m.st.Get.Bytes += int64(n)
		if failed {
			countErr(&r.m.st.Get, err)
		}
		r.m.mu.Unlock()
	}
	if failed {
		r.m.debug(r.ctx, "storage get: read failed", slog.String("key", r.key), errAttr(err))
	}
	return n, err
}

func (r *reader) Close() error { return r.rc.Close() }

// Stat implements [storage.Storage.Stat].
func (m *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	start := time.Now()
	info, err := m.s.Stat(ctx, key)
	d := time.Since(start)
	m.record(statStats, d, err, 0, 0)
	m.debug(ctx, "storage stat", slog.String("key", key), slog.Int64("size", info.Size),
		slog.Duration("dur", d), errAttr(err))
	return info, err
}

// List implements [storage.Storage.List]. Its latency includes the time
// spent in fn.
func (m *Store) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	start := time.Now()
	var entries int64
	err := m.s.List(ctx, prefix, func(info storage.Info) error {
		entries++
		return fn(info)
	})
	d := time.Since(start)
	m.record(listStats, d, err, 0, entries)
	m.debug(ctx, "storage list", slog.String("prefix", prefix), slog.Int64("entries", entries),
		slog.Duration("dur", d), errAttr(err))
	return err
}

// Delete implements [storage.Storage.Delete].
func (m *Store) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := m.s.Delete(ctx, key)
	d := time.Since(start)
	m.record(deleteStats, d, err, 0, 0)
	m.debug(ctx, "storage delete", slog.String("key", key), slog.Duration("dur", d), errAttr(err))
	return err
}
