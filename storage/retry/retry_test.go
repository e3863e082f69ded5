package retry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/faulty"
	"github.com/reprise-backup/reprise/storage/retry"
	"github.com/reprise-backup/reprise/storage/storagetest"
)

var fast = &retry.Options{InitialBackoff: 50 * time.Microsecond, MaxBackoff: time.Millisecond}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return retry.New(storage.NewMem(), fast)
	}, nil)
}

// Over a store that fails often, the retrying wrapper still honours the
// whole contract. Two kinds of faults are left out, by design of the
// wrapper: Delete faults (a Delete retried after a failure that did not
// delete, finding nothing, reports success, where the suite wants
// ErrNotExist), and mid-stream read failures (a resumed reader assumes the
// object was not replaced meanwhile, which the suite's concurrent
// overwrite test does on purpose; TestGetResumesOverFaults covers them).
func TestConformanceOverFaults(t *testing.T) {
	seed := int64(0)
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		seed++
		f := faulty.New(storage.NewMem(), seed)
		f.SetRule(faulty.OpPut, faulty.Rule{ErrRate: 0.2, LostReplyRate: 0.2})
		f.SetRule(faulty.OpGet, faulty.Rule{ErrRate: 0.2})
		f.SetRule(faulty.OpStat, faulty.Rule{ErrRate: 0.2})
		f.SetRule(faulty.OpList, faulty.Rule{ErrRate: 0.3})
		t.Cleanup(func() {
			c := f.Total()
			if c.Errors+c.LostReplies+c.ReadErrors == 0 && c.Calls > 20 {
				t.Errorf("no fault injected in %d calls", c.Calls)
			}
		})
		return retry.New(f, &retry.Options{MaxAttempts: 15, InitialBackoff: 20 * time.Microsecond, MaxBackoff: 500 * time.Microsecond})
	}, &storagetest.Options{Objects: 600})
}

// flaky fails the first fail[op] calls of each operation with err.
type flaky struct {
	storage.Storage
	mu    sync.Mutex
	fail  map[string]int
	calls map[string]int
	err   error
}

func newFlaky(k int, err error) *flaky {
	if err == nil {
		err = fmt.Errorf("flaky: %w", storage.ErrTransient)
	}
	f := &flaky{Storage: storage.NewMem(), fail: map[string]int{}, calls: map[string]int{}, err: err}
	for _, op := range []string{"put", "get", "stat", "list", "delete"} {
		f.fail[op] = k
	}
	return f
}

func (f *flaky) hit(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if f.calls[op] <= f.fail[op] {
		return f.err
	}
	return nil
}

func (f *flaky) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *flaky) Put(ctx context.Context, key string, r io.ReaderAt, size int64, o *storage.PutOptions) error {
	if err := f.hit("put"); err != nil {
		return err
	}
	return f.Storage.Put(ctx, key, r, size, o)
}

func (f *flaky) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := f.hit("get"); err != nil {
		return nil, err
	}
	return f.Storage.Get(ctx, key, off, n)
}

func (f *flaky) Stat(ctx context.Context, key string) (storage.Info, error) {
	if err := f.hit("stat"); err != nil {
		return storage.Info{}, err
	}
	return f.Storage.Stat(ctx, key)
}

func (f *flaky) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	if err := f.hit("list"); err != nil {
		return err
	}
	return f.Storage.List(ctx, prefix, fn)
}

func (f *flaky) Delete(ctx context.Context, key string) error {
	if err := f.hit("delete"); err != nil {
		return err
	}
	return f.Storage.Delete(ctx, key)
}

// runOps runs one call of each operation and returns their errors.
func runOps(t *testing.T, s storage.Storage, inner storage.Storage) map[string]error {
	ctx := t.Context()
	if err := inner.Put(ctx, "k", bytes.NewReader([]byte("v")), 1, nil); err != nil {
		t.Fatal(err)
	}
	errs := map[string]error{}
	errs["put"] = s.Put(ctx, "k2", bytes.NewReader([]byte("v")), 1, nil)
	_, errs["get"] = storage.ReadAll(ctx, s, "k")
	_, errs["stat"] = s.Stat(ctx, "k")
	errs["list"] = s.List(ctx, "", func(storage.Info) error { return nil })
	errs["delete"] = s.Delete(ctx, "k")
	return errs
}

func TestRetriesTransient(t *testing.T) {
	f := newFlaky(3, nil)
	s := retry.New(f, fast)
	for op, err := range runOps(t, s, f.Storage) {
		if err != nil {
			t.Errorf("%s: %v", op, err)
		}
		if n := f.count(op); n != 4 {
			t.Errorf("%s: %d calls, want 4", op, n)
		}
	}
	if s.(storage.Wrapper).Unwrap() != f {
		t.Error("Unwrap")
	}
}

func TestGivesUp(t *testing.T) {
	f := newFlaky(100, nil)
	s := retry.New(f, &retry.Options{MaxAttempts: 3, InitialBackoff: time.Microsecond})
	for op, err := range runOps(t, s, f.Storage) {
		if !errors.Is(err, storage.ErrTransient) || !strings.Contains(err.Error(), "giving up after 3 attempts") {
			t.Errorf("%s: %v, want a transient error after 3 attempts", op, err)
		}
		if n := f.count(op); n != 3 {
			t.Errorf("%s: %d calls, want 3", op, n)
		}
	}
}

func TestPermanentNotRetried(t *testing.T) {
	for _, perm := range []error{
		fmt.Errorf("no: %w", storage.ErrPermission),
		fmt.Errorf("no: %w", storage.ErrNotExist),
		errors.New("something else"),
		// A transient-marked error that is a cancellation.
		fmt.Errorf("%w: %w", storage.ErrTransient, context.Canceled),
	} {
		f := newFlaky(1, perm)
		s := retry.New(f, fast)
		for op, err := range runOps(t, s, f.Storage) {
			if !errors.Is(err, perm) {
				t.Errorf("%v: %s: %v", perm, op, err)
			}
			if n := f.count(op); n != 1 {
				t.Errorf("%v: %s: %d calls, want 1", perm, op, n)
			}
		}
	}
}

func TestContextEndsBackoff(t *testing.T) {
	f := newFlaky(100, nil)
	s := retry.New(f, &retry.Options{InitialBackoff: time.Hour, MaxBackoff: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Stat(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stat = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("backoff outlived the context: %v", el)
	}
	if n := f.count("stat"); n > 2 {
		t.Fatalf("%d calls", n)
	}
	// A context done before the call: no call at all.
	ctx, cancel = context.WithCancel(t.Context())
	cancel()
	if err := s.Delete(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Delete = %v", err)
	}
	if n := f.count("delete"); n != 0 {
		t.Fatalf("%d delete calls under a cancelled context", n)
	}
}

// chunky serves Get readers that fail transiently after chunk bytes, and
// records the ranges asked for.
type chunky struct {
	storage.Storage
	chunk  int64
	mu     sync.Mutex
	ranges [][2]int64
}

func (c *chunky) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	c.mu.Lock()
	c.ranges = append(c.ranges, [2]int64{off, n})
	c.mu.Unlock()
	rc, err := c.Storage.Get(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	return &breaking{rc: rc, left: c.chunk}, nil
}

type breaking struct {
	rc   io.ReadCloser
	left int64
}

func (b *breaking) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, fmt.Errorf("connection reset: %w", storage.ErrTransient)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *breaking) Close() error { return b.rc.Close() }

func TestGetResumes(t *testing.T) {
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i % 251)
	}
	c := &chunky{Storage: storage.NewMem(), chunk: 1000}
	if err := c.Put(t.Context(), "k", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	s := retry.New(c, fast)
	got, err := storage.ReadAll(t.Context(), s, "k")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll: %d bytes, %v", len(got), err)
	}
	want := "[[0 -1] [1000 -1] [2000 -1] [3000 -1] [4000 -1] [5000 -1] [6000 -1] [7000 -1] [8000 -1] [9000 -1] [10000 -1]]"
	if fmt.Sprint(c.ranges) != want {
		t.Fatalf("ranges %v, want %v", c.ranges, want)
	}

	c.ranges = nil
	rc, err := s.Get(t.Context(), "k", 500, 2500)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data[500:3000]) {
		t.Fatalf("ranged: %d bytes, %v", len(got), err)
	}
	if fmt.Sprint(c.ranges) != "[[500 2500] [1500 1500] [2500 500]]" {
		t.Fatalf("ranges %v", c.ranges)
	}
	if _, err := rc.Read(make([]byte, 1)); err == nil {
		t.Fatal("Read after Close succeeded")
	}

	// No progress at all: gives up after MaxAttempts.
	c.chunk = 0
	s = retry.New(c, &retry.Options{MaxAttempts: 4, InitialBackoff: time.Microsecond})
	c.ranges = nil
	_, err = storage.ReadAll(t.Context(), s, "k")
	if !errors.Is(err, storage.ErrTransient) || !strings.Contains(err.Error(), "giving up") {
		t.Fatalf("ReadAll without progress = %v", err)
	}
	if len(c.ranges) != 4 {
		t.Fatalf("%d Gets, want 4", len(c.ranges))
	}
}

func TestGetResumesOverFaults(t *testing.T) {
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 13)
	}
	f := faulty.New(storage.NewMem(), 9)
	if err := f.Put(t.Context(), "k", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	f.SetRule(faulty.OpGet, faulty.Rule{ErrRate: 0.3, ReadErrRate: 0.5})
	s := retry.New(f, &retry.Options{MaxAttempts: 20, InitialBackoff: time.Microsecond, MaxBackoff: 10 * time.Microsecond})
	for range 5 {
		got, err := storage.ReadAll(t.Context(), s, "k")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("ReadAll: %d bytes, %v", len(got), err)
		}
	}
	if c := f.Counts(faulty.OpGet); c.ReadErrors == 0 {
		t.Fatalf("no read error injected: %+v", c)
	}
}

// listFlaky fails the first fails listings after cut entries.
type listFlaky struct {
	storage.Storage
	cut, fails int
}

func (l *listFlaky) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	n := 0
	return l.Storage.List(ctx, prefix, func(i storage.Info) error {
		if l.fails > 0 && n == l.cut {
			l.fails--
			return fmt.Errorf("page failed: %w", storage.ErrTransient)
		}
		n++
		return fn(i)
	})
}

func TestListResumes(t *testing.T) {
	l := &listFlaky{Storage: storage.NewMem(), cut: 3, fails: 2}
	for i := range 10 {
		if err := l.Put(t.Context(), fmt.Sprintf("k/%d", i), bytes.NewReader(nil), 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	s := retry.New(l, fast)
	var seen []string
	if err := s.List(t.Context(), "k/", func(i storage.Info) error { seen = append(seen, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seen) != "[k/0 k/1 k/2 k/3 k/4 k/5 k/6 k/7 k/8 k/9]" {
		t.Fatalf("seen %v", seen)
	}

	// A callback error is returned at once, even a transient one.
	f := newFlaky(0, nil)
	f.Put(t.Context(), "a", bytes.NewReader(nil), 0, nil)
	s = retry.New(f, fast)
	cbErr := fmt.Errorf("callback: %w", storage.ErrTransient)
	if err := s.List(t.Context(), "", func(storage.Info) error { return cbErr }); err != cbErr {
		t.Fatalf("List = %v, want the callback's error", err)
	}
	if n := f.count("list"); n != 1 {
		t.Fatalf("%d List calls, want 1", n)
	}
}

func TestLostReplies(t *testing.T) {
	ctx := t.Context()
	f := faulty.New(storage.NewMem(), 1)
	s := retry.New(f, fast)
	f.SetRule(faulty.OpPut, faulty.Rule{LostReplyRate: 1})
	f.SetRule(faulty.OpDelete, faulty.Rule{LostReplyRate: 1})
	create := &storage.PutOptions{IfNotExist: true}
	mine := []byte("lock held by me")
	// The first attempt stores the object and loses the answer; the
	// retry finds our own bytes: success.
	if err := s.Put(ctx, "lock", bytes.NewReader(mine), int64(len(mine)), create); err != nil {
		t.Fatalf("create-only Put with a lost reply: %v", err)
	}
	// Someone else's object: ErrExist, even after a lost reply.
	first := true // fail the first attempt only, before it reaches the store
	f.SetRule(faulty.OpPut, faulty.Rule{ErrRate: 1, KeyFilter: func(string) bool {
		hit := first
		first = false
		return hit
	}})
	other := []byte("lock held by someone")
	if err := s.Put(ctx, "lock", bytes.NewReader(other), int64(len(other)), create); !errors.Is(err, storage.ErrExist) {
		t.Fatalf("create-only Put over another's object = %v, want ErrExist", err)
	}
	if got, _ := storage.ReadAll(ctx, f.Unwrap(), "lock"); !bytes.Equal(got, mine) {
		t.Fatalf("object = %q", got)
	}
	// A Delete whose answer is lost: the retry finds nothing, success.
	if err := s.Delete(ctx, "lock"); err != nil {
		t.Fatalf("Delete with a lost reply: %v", err)
	}
	// A Delete of a missing object on the first attempt: ErrNotExist.
	if err := s.Delete(ctx, "lock"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Delete of a missing object = %v", err)
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	h := slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil)
	f := newFlaky(2, nil)
	s := retry.New(f, &retry.Options{InitialBackoff: time.Microsecond, Logger: slog.New(h)})
	if _, err := s.Stat(t.Context(), "missing"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(buf.String(), "retrying"); n != 2 {
		t.Fatalf("%d retry records, want 2:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "op=stat") || !strings.Contains(buf.String(), "attempt=1") {
		t.Fatalf("log lacks details:\n%s", buf.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
