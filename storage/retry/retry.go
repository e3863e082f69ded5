// Package retry wraps a [storage.Storage] so that operations failing with
// an error wrapping [storage.ErrTransient] are retried, with exponential
// backoff and full jitter.
//
// Only transient errors are retried: missing objects, lost create-only
// races, refused credentials and malformed keys come back at once. Nothing
// is retried once the caller's context is done, and a context error is
// never retried even when a driver also marks it transient; backoff sleeps
// end as soon as the context is done.
//
// Beyond re-issuing calls, the wrapper resumes work in progress:
//
//   - a Get reader that fails mid-stream with a transient error reopens the
//     object at the offset it had reached and goes on, so the caller sees
//     one uninterrupted stream. This relies on objects being immutable, as
//     the storage contract has them: should the object be replaced by a
//     plain Put between the failure and the reopening, the stream would
//     join two versions (Reprise's sealed objects then fail authentication
//     above);
//   - a List that fails transiently is re-issued and skips the keys already
//     passed to the callback (List is in lexical order), so the callback
//     sees every key once; errors returned by the callback are never
//     retried;
//   - a create-only Put whose earlier attempt failed transiently, and whose
//     retry then finds the key taken, reads the object back: when it holds
//     exactly the bytes being written, the earlier attempt succeeded and
//     only its answer was lost, so Put reports success;
//   - likewise a Delete retried after a transient failure that then finds
//     the object missing reports success (the earlier attempt deleted it,
//     or someone else did: either way the object is gone).
package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/reprise-backup/reprise/storage"
)

// Options tunes [New]. Zero fields take their defaults.
type Options struct {
	// MaxAttempts bounds the calls made for one operation, the first
	// included (default 5). For a Get reader it bounds the consecutive
	// attempts that make no progress.
	MaxAttempts int
	// InitialBackoff is the upper bound of the first wait (default
	// 100ms); the bound doubles with each attempt. The actual wait is
	// drawn uniformly between zero and the bound (full jitter).
	InitialBackoff time.Duration
	// MaxBackoff caps the bound (default 10s).
	MaxBackoff time.Duration
	// Logger, if set, receives one Info record per retry. Nil logs
	// nothing.
	Logger *slog.Logger
}

// Store is the retrying wrapper returned by [New].
type Store struct {
	s storage.Storage
	o Options
}

var _ storage.Wrapper = (*Store)(nil)

// New returns s wrapped so that transient failures are retried. opts may
// be nil.
func New(s storage.Storage, opts *Options) storage.Storage {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
	return &Store{s: s, o: o}
}

// Unwrap returns the wrapped store.
func (r *Store) Unwrap() storage.Storage { return r.s }

// retryable reports whether err deserves another attempt.
func (r *Store) retryable(ctx context.Context, err error) bool {
	return ctx.Err() == nil && errors.Is(err, storage.ErrTransient) &&
		!errors.Is(err, context.Canceled)
}

// backoff returns the wait before attempt+1, after attempt failures.
func (r *Store) backoff(attempt int) time.Duration {
	bound := r.o.InitialBackoff
	for i := 1; i < attempt && bound < r.o.MaxBackoff; i++ {
		bound *= 2
	}
	bound = min(bound, r.o.MaxBackoff)
	return rand.N(bound + 1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// finalError carries an error do must return as is, unretried: an error
// of a List callback, which may well wrap ErrTransient itself.
type finalError struct{ err error }

func (f *finalError) Error() string { return f.err.Error() }

// do calls fn until it succeeds, fails for good, the context ends or the
// attempts run out. fn gets the attempt number, from 1.
func (r *Store) do(ctx context.Context, op, key string, fn func(attempt int) error) error {
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("storage/retry: %s %q: %w", op, key, err)
		}
		err := fn(attempt)
		var fe *finalError
		if errors.As(err, &fe) {
			return fe.err
		}
		if err == nil || !r.retryable(ctx, err) {
			return err
		}
		if attempt >= r.o.MaxAttempts {
			return fmt.Errorf("storage/retry: %s %q: giving up after %d attempts: %w", op, key, attempt, err)
		}
		d := r.backoff(attempt)
		r.log(ctx, op, key, attempt, d, err)
		if serr := sleep(ctx, d); serr != nil {
			return fmt.Errorf("storage/retry: %s %q: %w (while waiting to retry after: %v)", op, key, serr, err)
		}
	}
}

func (r *Store) log(ctx context.Context, op, key string, attempt int, wait time.Duration, err error) {
	if r.o.Logger == nil {
		return
	}
	r.o.Logger.LogAttrs(ctx, slog.LevelInfo, "storage: retrying after a transient failure",
		slog.String("op", op), slog.String("key", key), slog.Int("attempt", attempt),
		slog.Duration("wait", wait), slog.Any("error", err))
}

// Put implements [storage.Storage.Put].
func (r *Store) Put(ctx context.Context, key string, rd io.ReaderAt, size int64, opts *storage.PutOptions) error {
	createOnly := opts != nil && opts.IfNotExist
	return r.do(ctx, "put", key, func(attempt int) error {
		err := r.s.Put(ctx, key, rd, size, opts)
		if attempt > 1 && createOnly && errors.Is(err, storage.ErrExist) && r.holds(ctx, key, rd, size) {
			return nil // an earlier attempt stored it; its answer was lost
		}
		return err
	})
}

// holds reports whether the object under key is exactly size bytes of rd.
// Any error counts as "no".
func (r *Store) holds(ctx context.Context, key string, rd io.ReaderAt, size int64) bool {
	info, err := r.Stat(ctx, key)
	if err != nil || info.Size != size {
		return false
	}
	rc, err := r.Get(ctx, key, 0, -1)
	if err != nil {
		return false
	}
	defer rc.Close()
	const chunk = 256 << 10
	got := make([]byte, min(chunk, size))
	want := make([]byte, min(chunk, size))
	for off := int64(0); off < size; {
		n := int(min(chunk, size-off))
		if _, err := io.ReadFull(rc, got[:n]); err != nil {
			return false
		}
		if m, err := rd.ReadAt(want[:n], off); m < n && err != nil {
			return false
		}
		if !bytes.Equal(got[:n], want[:n]) {
			return false
		}
		off += int64(n)
	}
	var one [1]byte
	m, _ := rc.Read(one[:])
	return m == 0
}

// Get implements [storage.Storage.Get]. The reader resumes after
// transient failures, see the package documentation.
func (r *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := r.do(ctx, "get", key, func(int) error {
		var err error
		rc, err = r.s.Get(ctx, key, off, n)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &reader{st: r, ctx: ctx, key: key, off: off, remaining: n, rc: rc}, nil
}

type reader struct {
	st        *Store
	ctx       context.Context
	key       string
	off       int64 // offset of the next byte
	remaining int64 // bytes still wanted; < 0 means to the end
	rc        io.ReadCloser
	failures  int   // consecutive failed attempts without progress
	err       error // sticky error once given up or closed
}

var errClosed = errors.New("storage/retry: read from a closed reader")

func (rd *reader) Read(p []byte) (int, error) {
	for {
		if rd.err != nil {
			return 0, rd.err
		}
		if rd.rc == nil {
			if err := rd.reopen(); err != nil {
				rd.err = err
				return 0, err
			}
		}
		n, err := rd.rc.Read(p)
		rd.off += int64(n)
		if rd.remaining > 0 {
			rd.remaining -= int64(n)
		}
		if n > 0 {
			rd.failures = 0
		}
		if err == nil || err == io.EOF || !rd.st.retryable(rd.ctx, err) {
			return n, err
		}
		// A transient failure mid-stream: drop the stream and resume
		// at rd.off.
		rd.rc.Close()
		rd.rc = nil
		rd.failures++
		if rd.failures >= rd.st.o.MaxAttempts {
			rd.err = fmt.Errorf("storage/retry: get %q: reading at offset %d: giving up after %d attempts: %w",
				rd.key, rd.off, rd.failures, err)
			return n, rd.err
		}
		d := rd.st.backoff(rd.failures)
		rd.st.log(rd.ctx, "get (resume)", rd.key, rd.failures, d, err)
		if serr := sleep(rd.ctx, d); serr != nil {
			rd.err = fmt.Errorf("storage/retry: get %q: %w (while waiting to resume after: %v)", rd.key, serr, err)
			return n, rd.err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// reopen issues a new Get for the rest of the range, retrying transient
// failures within the reader's budget of attempts.
func (rd *reader) reopen() error {
	for {
		if err := rd.ctx.Err(); err != nil {
			return fmt.Errorf("storage/retry: get %q: %w", rd.key, err)
		}
		rc, err := rd.st.s.Get(rd.ctx, rd.key, rd.off, rd.remaining)
		if err == nil {
			rd.rc = rc
			return nil
		}
		if !rd.st.retryable(rd.ctx, err) {
			return err
		}
		rd.failures++
		if rd.failures >= rd.st.o.MaxAttempts {
			return fmt.Errorf("storage/retry: get %q: reopening at offset %d: giving up after %d attempts: %w",
				rd.key, rd.off, rd.failures, err)
		}
		d := rd.st.backoff(rd.failures)
		rd.st.log(rd.ctx, "get (reopen)", rd.key, rd.failures, d, err)
		if serr := sleep(rd.ctx, d); serr != nil {
			return fmt.Errorf("storage/retry: get %q: %w (while waiting to resume after: %v)", rd.key, serr, err)
		}
	}
}

func (rd *reader) Close() error {
	var err error
	if rd.rc != nil {
		err = rd.rc.Close()
		rd.rc = nil
	}
	rd.err = errClosed
	return err
}

// Stat implements [storage.Storage.Stat].
func (r *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	var info storage.Info
	err := r.do(ctx, "stat", key, func(int) error {
		var err error
		info, err = r.s.Stat(ctx, key)
		return err
	})
	return info, err
}

// List implements [storage.Storage.List]. A retried listing skips the keys
// already passed to fn.
func (r *Store) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	var last string
	started := false
	return r.do(ctx, "list", prefix, func(int) error {
		var fnErr error
		err := r.s.List(ctx, prefix, func(info storage.Info) error {
			if started && info.Key <= last {
				return nil // delivered by an earlier attempt
			}
			if err := fn(info); err != nil {
				fnErr = err
				return err
			}
			last, started = info.Key, true
			return nil
		})
		if fnErr != nil {
			return &finalError{fnErr}
		}
		return err
	})
}

// Delete implements [storage.Storage.Delete]. After a transient failure, a
// retry that finds the object gone counts as success.
func (r *Store) Delete(ctx context.Context, key string) error {
	return r.do(ctx, "delete", key, func(attempt int) error {
		err := r.s.Delete(ctx, key)
		if attempt > 1 && errors.Is(err, storage.ErrNotExist) {
			return nil
		}
		return err
	})
}

// Close closes the wrapped store.
func (r *Store) Close() error { return r.s.Close() }
