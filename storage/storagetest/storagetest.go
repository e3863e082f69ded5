// Package storagetest is the conformance suite of [storage.Storage]: every
// driver and every wrapper runs [Run] in its tests, so that they all honour
// the contract documented in package storage the same way, and [Bench]
// measures their throughput.
//
// A driver's test typically reads:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Storage {
//			s, err := mydriver.New(...) // fresh and empty
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		}, nil)
//	}
//
// The suite calls newStore once per subtest and never closes the store
// itself. Subtests run one after the other; each uses its own store.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reprise-backup/reprise/storage"
)

// Options tunes [Run]. The zero value (or nil) runs the full suite with
// defaults.
type Options struct {
	// MultipartSize, if > 0, is the driver's multipart threshold; the
	// suite then writes an object larger than twice that. Otherwise the
	// large object is 4 MiB (1 MiB under -short).
	MultipartSize int64
	// Concurrency is the number of goroutines of the concurrent tests
	// (default 8).
	Concurrency int
	// Objects is the number of objects written by the listing and
	// pagination test (default 2500, 300 under -short). Make it exceed the
	// backend's page size (1000 for S3).
	Objects int
	// AppendOnly declares a store that refuses to delete or overwrite
	// (storage/appendonly): every Delete of a valid key, and every plain
	// Put onto an existing key, must fail with an error wrapping
	// storage.ErrPermission and change nothing. The tests that need
	// deletes or overwrites (Overwrite, CreateOnly after its refusal,
	// Empty, ListDeleteInCallback, Missing, Delete, ConcurrentOverwrite)
	// check exactly that instead; the rest of the suite runs unchanged.
	AppendOnly bool
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Concurrency <= 0 {
		r.Concurrency = 8
	}
	if r.Objects <= 0 {
		r.Objects = 2500
		if testing.Short() {
			r.Objects = 300
		}
	}
	return r
}

// Run runs the conformance suite against stores made by newStore, which
// must return a fresh, empty store on each call and arrange its cleanup
// (closing it, removing its data) with t.Cleanup.
//
// The subtests, by name:
//
//   - PutGetStat: round trip of an object, Info of Stat and List.
//   - Overwrite: a plain put replaces an object.
//   - CreateOnly: IfNotExist succeeds on a free key, then fails with
//     ErrExist leaving the first bytes intact; works again after Delete.
//     (The refused puts always carry bytes different from the stored
//     ones: a retrying wrapper may take identical bytes, after a lost
//     reply, for its own earlier success.)
//   - CreateOnlyRace: Concurrency goroutines create the same key; exactly
//     one wins and the stored bytes are the winner's.
//   - Ranges: every rule of Get's range (whole, middle, to the end with
//     n < 0, cut at the end, off == size gives empty, off > size and
//     off < 0 give ErrInvalidRange, zero length, huge n).
//   - Empty: zero-byte objects.
//   - Large: an object above MultipartSize (or of a few MiB), whole and
//     ranged across the part boundary.
//   - ListMany: Objects objects in several prefixes, listed whole and by
//     prefix, complete, in lexical order, each once (exercises paging).
//   - ListPrefix: List takes a string prefix, not a directory: "p/a/b"
//     matches "p/a/b/1", "p/a/bc" and "p/a/b-c" (listed in byte order,
//     where '-' and '.' sort before '/'), while "p/a/b/" matches only
//     "p/a/b/1" and "p/a/b/2", never the sibling "p/a/bc".
//   - ListCallbackError: an error of the callback stops List and comes
//     back from it (errors.Is), with no further calls.
//   - ListDeleteInCallback: the callback may delete the listed objects.
//   - Missing: Get (any range), Stat and Delete of a missing key, or of a
//     key that is only a prefix of stored keys, fail with ErrNotExist.
//   - Delete: a deleted object is gone from Get, Stat and List.
//   - InvalidKeys: malformed keys fail with ErrInvalidKey in every
//     operation and store nothing; malformed List prefixes too; long
//     valid keys work.
//   - CanceledContext: with a cancelled context every operation fails
//     with errors.Is(err, context.Canceled), a Put stores nothing and a
//     Delete deletes nothing; so does a context cancelled during a Put.
//   - FailingReader: a Put whose reader fails midway (or ends early)
//     fails and leaves no object; over an existing object it leaves the
//     old bytes; a later create-only put of the key still succeeds.
//   - Isolation: the store copies data: changing the caller's buffers
//     after Put or after Get changes nothing stored, and Put does not
//     read its reader after returning.
//   - ConcurrentWriters: Concurrency goroutines write distinct keys.
//   - ConcurrentOverwrite: concurrent plain puts and whole reads of one
//     key: every read and the final object are exactly one writer's bytes.
//
// With Options.AppendOnly the deleting and overwriting steps expect
// storage.ErrPermission and unchanged objects instead (see AppendOnly).
func Run(t *testing.T, newStore func(t *testing.T) storage.Storage, opts *Options) {
	o := opts.withDefaults()
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Storage, o Options)
	}{
		{"PutGetStat", testPutGetStat},
		{"Overwrite", testOverwrite},
		{"CreateOnly", testCreateOnly},
		{"CreateOnlyRace", testCreateOnlyRace},
		{"Ranges", testRanges},
		{"Empty", testEmpty},
		{"Large", testLarge},
		{"ListMany", testListMany},
		{"ListPrefix", testListPrefix},
		{"ListCallbackError", testListCallbackError},
		{"ListDeleteInCallback", testListDeleteInCallback},
		{"Missing", testMissing},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"CanceledContext", testCanceledContext},
		{"FailingReader", testFailingReader},
		{"Isolation", testIsolation},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentOverwrite", testConcurrentOverwrite},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			tc.fn(t, s, o)
		})
	}
}

// ---- helpers ----

// data returns n deterministic pseudo-random bytes.
func data(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func put(t testing.TB, s storage.Storage, key string, b []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, bytes.NewReader(b), int64(len(b)), nil); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(b), err)
	}
}

func get(t testing.TB, s storage.Storage, key string, off, n int64) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key, off, n)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", key, off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): reading: %v", key, off, n, err)
	}
	return b
}

// wantContent checks the whole object under key.
func wantContent(t testing.TB, s storage.Storage, key string, want []byte) {
	t.Helper()
	got := get(t, s, key, 0, -1)
	if !bytes.Equal(got, want) {
		t.Fatalf("object %q: got %s, want %s", key, describe(got), describe(want))
	}
}

func describe(b []byte) string {
	if len(b) <= 32 {
		return fmt.Sprintf("%q", b)
	}
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%d bytes (sha256 %x…, starting %q)", len(b), sum[:8], b[:16])
}

func wantMissing(t testing.TB, s storage.Storage, key string) {
	t.Helper()
	if info, err := s.Stat(t.Context(), key); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat(%q) = %+v, %v; want ErrNotExist", key, info, err)
	}
}

func listAll(t testing.TB, s storage.Storage, prefix string) []storage.Info {
	t.Helper()
	var infos []storage.Info
	err := s.List(t.Context(), prefix, func(i storage.Info) error {
		infos = append(infos, i)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return infos
}

func keysOf(infos []storage.Info) []string {
	keys := make([]string, len(infos))
	for i, info := range infos {
		keys[i] = info.Key
	}
	return keys
}

func wantKeys(t testing.TB, s storage.Storage, prefix string, want ...string) {
	t.Helper()
	got := keysOf(listAll(t, s, prefix))
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List(%q) = %q, want %q", prefix, got, want)
	}
}

func checkModTime(t testing.TB, what string, mt time.Time) {
	t.Helper()
	if !mt.IsZero() && (mt.Before(time.Now().Add(-time.Hour)) || mt.After(time.Now().Add(time.Hour))) {
		t.Errorf("%s: ModTime %v is more than an hour away from now", what, mt)
	}
}

// wantRefused checks that err is an append-only store's refusal.
func wantRefused(t testing.TB, what string, err error) {
	t.Helper()
	if !errors.Is(err, storage.ErrPermission) {
		t.Fatalf("%s on an append-only store = %v, want an error wrapping ErrPermission", what, err)
	}
}

// ---- tests ----

func testPutGetStat(t *testing.T, s storage.Storage, o Options) {
	ctx := t.Context()
	b := data(1, 1000)
	put(t, s, "obj/one", b)
	wantContent(t, s, "obj/one", b)
	info, err := s.Stat(ctx, "obj/one")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Key != "obj/one" || info.Size != 1000 {
		t.Fatalf("Stat = %+v, want key obj/one, size 1000", info)
	}
	checkModTime(t, "Stat", info.ModTime)
	put(t, s, "top", []byte("x"))
	put(t, s, "a/b/c/d/e/f/g", []byte("deep"))
	infos := listAll(t, s, "")
	if got := keysOf(infos); !slices.Equal(got, []string{"a/b/c/d/e/f/g", "obj/one", "top"}) {
		t.Fatalf("List = %q", got)
	}
	if infos[1].Size != 1000 || infos[0].Size != 4 || infos[2].Size != 1 {
		t.Fatalf("List sizes = %+v", infos)
	}
	for _, i := range infos {
		checkModTime(t, "List "+i.Key, i.ModTime)
	}
	wantContent(t, s, "a/b/c/d/e/f/g", []byte("deep"))
}

func testOverwrite(t *testing.T, s storage.Storage, o Options) {
	put(t, s, "k", data(1, 5000))
	b := data(2, 300)
	if o.AppendOnly {
		err := s.Put(t.Context(), "k", bytes.NewReader(b), int64(len(b)), nil)
		wantRefused(t, "plain Put over an object", err)
		if errors.Is(err, storage.ErrExist) {
			t.Fatalf("refused overwrite = %v: must not wrap ErrExist (it is no lost create-only race)", err)
		}
		wantContent(t, s, "k", data(1, 5000))
		wantKeys(t, s, "", "k")
		return
	}
	put(t, s, "k", b)
	wantContent(t, s, "k", b)
	info, err := s.Stat(t.Context(), "k")
	if err != nil || info.Size != 300 {
		t.Fatalf("Stat after overwrite = %+v, %v; want size 300", info, err)
	}
	wantKeys(t, s, "", "k")
}

func testCreateOnly(t *testing.T, s storage.Storage, o Options) {
	ctx := t.Context()
	first, second := data(1, 2000), data(2, 1000)
	create := &storage.PutOptions{IfNotExist: true}
	if err := s.Put(ctx, "lock/x", bytes.NewReader(first), int64(len(first)), create); err != nil {
		t.Fatalf("create-only Put on a free key: %v", err)
	}
	err := s.Put(ctx, "lock/x", bytes.NewReader(second), int64(len(second)), create)
	if !errors.Is(err, storage.ErrExist) {
		t.Fatalf("second create-only Put = %v, want ErrExist", err)
	}
	wantContent(t, s, "lock/x", first)
	wantKeys(t, s, "", "lock/x")
	if o.AppendOnly {
		wantRefused(t, "Delete", s.Delete(ctx, "lock/x"))
		wantContent(t, s, "lock/x", first)
		return
	}
	if err := s.Delete(ctx, "lock/x"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Put(ctx, "lock/x", bytes.NewReader(second), int64(len(second)), create); err != nil {
		t.Fatalf("create-only Put after Delete: %v", err)
	}
	wantContent(t, s, "lock/x", second)
}

func testCreateOnlyRace(t *testing.T, s storage.Storage, o Options) {
	rounds := 4
	if testing.Short() {
		rounds = 2
	}
	for round := range rounds {
		key := fmt.Sprintf("race/%d", round)
		contents := make([][]byte, o.Concurrency)
		errs := make([]error, o.Concurrency)
		for i := range contents {
			contents[i] = data(uint64(round*1000+i), 64<<10+i)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range o.Concurrency {
			wg.Go(func() {
				<-start
				errs[i] = s.Put(t.Context(), key, bytes.NewReader(contents[i]), int64(len(contents[i])),
					&storage.PutOptions{IfNotExist: true})
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: writers %d and %d both won the create-only race", round, winner, i)
				}
				winner = i
			case !errors.Is(err, storage.ErrExist):
				t.Fatalf("round %d: writer %d: %v, want nil or ErrExist", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won the create-only race", round)
		}
		wantContent(t, s, key, contents[winner])
	}
}

func testRanges(t *testing.T, s storage.Storage, o Options) {
	const size = 1000
	b := data(3, size)
	put(t, s, "r", b)
	ctx := t.Context()
	cases := []struct {
		name   string
		off, n int64
		want   []byte // nil: ErrInvalidRange
	}{
		{"whole n<0", 0, -1, b},
		{"whole exact", 0, size, b},
		{"whole cut", 0, size + 4000, b},
		{"whole huge n", 0, math.MaxInt64, b},
		{"middle", 100, 200, b[100:300]},
		{"to end", 100, -1, b[100:]},
		{"to end huge n", 10, math.MaxInt64, b[10:]},
		{"last byte", size - 1, 1, b[size-1:]},
		{"last byte cut", size - 1, 10, b[size-1:]},
		{"first byte", 0, 1, b[:1]},
		{"zero length", 500, 0, []byte{}},
		{"zero length at 0", 0, 0, []byte{}},
		{"off=size", size, -1, []byte{}},
		{"off=size zero length", size, 0, []byte{}},
		{"off=size n>0", size, 10, []byte{}},
		{"off>size", size + 1, -1, nil},
		{"off>size zero length", size + 1, 0, nil},
		{"off far beyond", 1 << 40, 10, nil},
		{"negative off", -1, 10, nil},
	}
	for _, c := range cases {
		rc, err := s.Get(ctx, "r", c.off, c.n)
		if c.want == nil {
			if !errors.Is(err, storage.ErrInvalidRange) {
				if err == nil {
					rc.Close()
				}
				t.Errorf("%s: Get(%d, %d) error = %v, want ErrInvalidRange", c.name, c.off, c.n, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: Get(%d, %d): %v", c.name, c.off, c.n, err)
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Errorf("%s: Get(%d, %d): reading: %v", c.name, c.off, c.n, err)
			continue
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("%s: Get(%d, %d) = %s, want %s", c.name, c.off, c.n, describe(got), describe(c.want))
		}
	}

	// Small reads, and closing a reader before its end.
	rc, err := s.Get(ctx, "r", 10, 500)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 7)
	if _, err := io.ReadFull(rc, p); err != nil || !bytes.Equal(p, b[10:17]) {
		t.Fatalf("partial read = %q, %v; want %q", p, err, b[10:17])
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("Close of a half-read reader: %v", err)
	}
	// Two readers of one object at once.
	r1, err := s.Get(ctx, "r", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := s.Get(ctx, "r", 500, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	var g1, g2 bytes.Buffer
	for g1.Len() < size || g2.Len() < size-500 {
		n1, _ := io.CopyN(&g1, r1, 100)
		n2, _ := io.CopyN(&g2, r2, 100)
		if n1 == 0 && n2 == 0 {
			break
		}
	}
	if !bytes.Equal(g1.Bytes(), b) || !bytes.Equal(g2.Bytes(), b[500:]) {
		t.Fatalf("interleaved readers got %d and %d bytes, wrong content", g1.Len(), g2.Len())
	}
}

func testEmpty(t *testing.T, s storage.Storage, o Options) {
	ctx := t.Context()
	put(t, s, "e", []byte{})
	wantContent(t, s, "e", []byte{})
	if got := get(t, s, "e", 0, 0); len(got) != 0 {
		t.Fatalf("Get(0, 0) of empty object = %q", got)
	}
	if got := get(t, s, "e", 0, 10); len(got) != 0 {
		t.Fatalf("Get(0, 10) of empty object = %q", got)
	}
	if rc, err := s.Get(ctx, "e", 1, -1); !errors.Is(err, storage.ErrInvalidRange) {
		if err == nil {
			rc.Close()
		}
		t.Fatalf("Get(1, -1) of empty object: %v, want ErrInvalidRange", err)
	}
	info, err := s.Stat(ctx, "e")
	if err != nil || info.Size != 0 || info.Key != "e" {
		t.Fatalf("Stat of empty object = %+v, %v", info, err)
	}
	infos := listAll(t, s, "")
	if len(infos) != 1 || infos[0].Key != "e" || infos[0].Size != 0 {
		t.Fatalf("List = %+v, want the empty object", infos)
	}
	err = s.Put(ctx, "e", bytes.NewReader([]byte("x")), 1, &storage.PutOptions{IfNotExist: true})
	if !errors.Is(err, storage.ErrExist) {
		t.Fatalf("create-only Put over an empty object: %v, want ErrExist", err)
	}
	wantContent(t, s, "e", []byte{})
	if err := s.Put(ctx, "e2", bytes.NewReader(nil), 0, &storage.PutOptions{IfNotExist: true}); err != nil {
		t.Fatalf("create-only Put of an empty object: %v", err)
	}
	wantContent(t, s, "e2", []byte{})
	if o.AppendOnly {
		wantRefused(t, "Delete of empty object", s.Delete(ctx, "e"))
		wantContent(t, s, "e", []byte{})
		return
	}
	if err := s.Delete(ctx, "e"); err != nil {
		t.Fatalf("Delete of empty object: %v", err)
	}
	wantMissing(t, s, "e")
}

func testLarge(t *testing.T, s storage.Storage, o Options) {
	size := int64(4<<20 + 12345)
	if testing.Short() {
		size = 1<<20 + 12345
	}
	if o.MultipartSize > 0 {
		size = 2*o.MultipartSize + 12345
	}
	b := data(4, int(size))
	put(t, s, "large", b)
	info, err := s.Stat(t.Context(), "large")
	if err != nil || info.Size != size {
		t.Fatalf("Stat = %+v, %v; want size %d", info, err, size)
	}
	wantContent(t, s, "large", b)
	boundary := size / 2
	if o.MultipartSize > 0 {
		boundary = o.MultipartSize
	}
	got := get(t, s, "large", boundary-1000, 2000)
	if !bytes.Equal(got, b[boundary-1000:boundary+1000]) {
		t.Fatalf("range across offset %d: got %s", boundary, describe(got))
	}
	got = get(t, s, "large", size-10, -1)
	if !bytes.Equal(got, b[size-10:]) {
		t.Fatalf("tail range: got %q", got)
	}
}

// parallel runs fn(i) for i in [0, n) on workers goroutines and fails the
// test with the first error.
func parallel(t testing.TB, workers, n int, fn func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					next.Store(int64(n)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

func testListMany(t *testing.T, s storage.Storage, o Options) {
	ctx := t.Context()
	n := o.Objects
	key := func(i int) string { return fmt.Sprintf("many/%02x/%06d", i%16, i) }
	body := func(i int) []byte { return []byte(strings.Repeat("x", i%7)) }
	parallel(t, o.Concurrency, n, func(i int) error {
		b := body(i)
		return s.Put(ctx, key(i), bytes.NewReader(b), int64(len(b)), nil)
	})
	put(t, s, "manz", []byte("after"))
	put(t, s, "man", []byte("before"))

	want := make([]string, n)
	for i := range n {
		want[i] = key(i)
	}
	slices.Sort(want)

	infos := listAll(t, s, "many/")
	if got := keysOf(infos); !slices.Equal(got, want) {
		if len(got) != len(want) {
			t.Fatalf("List(many/) returned %d keys, want %d", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("List(many/): key %d is %q, want %q", i, got[i], want[i])
			}
		}
	}
	for _, info := range infos {
		var i int
		fmt.Sscanf(info.Key[len("many/xx/"):], "%d", &i)
		if info.Size != int64(i%7) {
			t.Fatalf("List: %q has size %d, want %d", info.Key, info.Size, i%7)
		}
	}

	all := keysOf(listAll(t, s, ""))
	wantAll := append([]string{"man"}, want...)
	wantAll = append(wantAll, "manz")
	if !slices.Equal(all, wantAll) {
		t.Fatalf("List(\"\") returned %d keys (first %q), want %d", len(all), all[:min(3, len(all))], len(wantAll))
	}

	sub := keysOf(listAll(t, s, "many/0a/"))
	var wantSub []string
	for _, k := range want {
		if strings.HasPrefix(k, "many/0a/") {
			wantSub = append(wantSub, k)
		}
	}
	if !slices.Equal(sub, wantSub) {
		t.Fatalf("List(many/0a/) returned %d keys, want %d", len(sub), len(wantSub))
	}

	// Stopping early from the callback at an arbitrary point of a long
	// listing.
	stop := errors.New("enough")
	seen := 0
	err := s.List(ctx, "", func(storage.Info) error {
		seen++
		if seen == n/2+1 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || seen != n/2+1 {
		t.Fatalf("List stopped at call %d with %v, want call %d with the callback's error", seen, err, n/2+1)
	}
}

func testListPrefix(t *testing.T, s storage.Storage, o Options) {
	keys := []string{
		"p/a/b/1", "p/a/b/2", "p/a/bc", "p/a/b-c", "p/a/b.d/z", "p/a/c", "p/ab", "p/a0/x", "q/x",
	}
	for i, k := range keys {
		put(t, s, k, []byte(fmt.Sprint(i)))
	}
	// Byte order: '-' (0x2d) < '.' (0x2e) < '/' (0x2f) < '0' < 'a'.
	wantKeys(t, s, "", "p/a/b-c", "p/a/b.d/z", "p/a/b/1", "p/a/b/2", "p/a/bc", "p/a/c", "p/a0/x", "p/ab", "q/x")
	wantKeys(t, s, "p/a/b/", "p/a/b/1", "p/a/b/2")
	wantKeys(t, s, "p/a/b", "p/a/b-c", "p/a/b.d/z", "p/a/b/1", "p/a/b/2", "p/a/bc")
	wantKeys(t, s, "p/a/", "p/a/b-c", "p/a/b.d/z", "p/a/b/1", "p/a/b/2", "p/a/bc", "p/a/c")
	wantKeys(t, s, "p/a", "p/a/b-c", "p/a/b.d/z", "p/a/b/1", "p/a/b/2", "p/a/bc", "p/a/c", "p/a0/x", "p/ab")
	wantKeys(t, s, "p/a/c", "p/a/c")      // a whole key is its own prefix
	wantKeys(t, s, "p/a/b/1", "p/a/b/1")  // also in a subdirectory
	wantKeys(t, s, "p/a/b/3")             // nothing
	wantKeys(t, s, "p/zzz")               // nothing
	wantKeys(t, s, "r/")                  // missing "directory"
	wantKeys(t, s, "p/a/c/")              // below an object
	wantKeys(t, s, "p/a/b-c/x")           // below an object
	wantKeys(t, s, "q", "q/x")            // prefix without slash
	wantKeys(t, s, "p/a/b.", "p/a/b.d/z") // dot inside a segment
}

func testListCallbackError(t *testing.T, s storage.Storage, o Options) {
	for i := range 5 {
		put(t, s, fmt.Sprintf("cb/%d", i), []byte("x"))
	}
	stop := errors.New("callback says stop")
	calls := 0
	err := s.List(t.Context(), "cb/", func(storage.Info) error {
		calls++
		if calls == 3 {
			return fmt.Errorf("wrapped: %w", stop)
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List returned %v, want the callback's error", err)
	}
	if calls != 3 {
		t.Fatalf("callback called %d times, want 3 (List must stop at the error)", calls)
	}
}

func testListDeleteInCallback(t *testing.T, s storage.Storage, o Options) {
	const n = 30
	for i := range n {
		put(t, s, fmt.Sprintf("d/%02d/x", i), []byte("x"))
	}
	seen := 0
	err := s.List(t.Context(), "d/", func(info storage.Info) error {
		seen++
		return s.Delete(t.Context(), info.Key)
	})
	if o.AppendOnly {
		wantRefused(t, "Delete in a List callback", err)
		if seen != 1 || len(listAll(t, s, "d/")) != n {
			t.Fatalf("List deleting in the callback: %d calls, %d objects left; want 1 call (stopped by the refusal), %d left", seen, len(listAll(t, s, "d/")), n)
		}
		return
	}
	if err != nil || seen != n {
		t.Fatalf("List deleting in the callback: %d seen, %v; want %d, nil", seen, err, n)
	}
	wantKeys(t, s, "")
}

func testMissing(t *testing.T, s storage.Storage, o Options) {
	ctx := t.Context()
	put(t, s, "here/obj", []byte("x"))
	for _, key := range []string{"nothing", "here/nothing", "here", "here/obj/below"} {
		for _, rg := range [][2]int64{{0, -1}, {5, 10}, {0, 0}} {
			rc, err := s.Get(ctx, key, rg[0], rg[1])
			if !errors.Is(err, storage.ErrNotExist) {
				if err == nil {
					rc.Close()
				}
				t.Errorf("Get(%q, %d, %d) = %v, want ErrNotExist", key, rg[0], rg[1], err)
			}
		}
		if info, err := s.Stat(ctx, key); !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("Stat(%q) = %+v, %v; want ErrNotExist", key, info, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, storage.ErrNotExist) && !(o.AppendOnly && errors.Is(err, storage.ErrPermission)) {
			t.Errorf("Delete(%q) = %v, want ErrNotExist", key, err)
		}
	}
	wantContent(t, s, "here/obj", []byte("x"))
	if _, err := storage.ReadAll(ctx, s, "nothing"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("ReadAll of a missing key = %v, want ErrNotExist", err)
	}
}

func testDelete(t *testing.T, s storage.Storage, o Options) {
	ctx := t.Context()
	put(t, s, "del/a", []byte("a"))
	put(t, s, "del/b", []byte("b"))
	if o.AppendOnly {
		wantRefused(t, "Delete", s.Delete(ctx, "del/a"))
		wantRefused(t, "Delete", s.Delete(ctx, "del/b"))
		wantKeys(t, s, "", "del/a", "del/b")
		wantContent(t, s, "del/a", []byte("a"))
		return
	}
	if err := s.Delete(ctx, "del/a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantMissing(t, s, "del/a")
	if rc, err := s.Get(ctx, "del/a", 0, -1); !errors.Is(err, storage.ErrNotExist) {
		if err == nil {
			rc.Close()
		}
		t.Fatalf("Get after Delete = %v, want ErrNotExist", err)
	}
	wantKeys(t, s, "", "del/b")
	if err := s.Delete(ctx, "del/a"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("second Delete = %v, want ErrNotExist", err)
	}
	if err := s.Delete(ctx, "del/b"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantKeys(t, s, "")
	wantKeys(t, s, "del/")
	// The key can be used again.
	put(t, s, "del/a", []byte("again"))
	wantContent(t, s, "del/a", []byte("again"))
}

// InvalidKeyExamples are keys that break the key syntax of package
// storage; drivers' own tests may reuse them.
var InvalidKeyExamples = []string{
	"", "/", "/a", "a/", "a//b", "A", "Key", "a b", "a\\b", "a:b", "../x", "a/../b", "..",
	"./a", ".hidden", "a/.tmp", "a/.", "é", "a\x00b", "a\nb", strings.Repeat("a", 1025),
}

func testInvalidKeys(t *testing.T, s storage.Storage, o Options) {
	ctx := t.Context()
	b := []byte("payload")
	for _, key := range InvalidKeyExamples {
		shown := key
		if len(shown) > 20 {
			shown = shown[:20] + "…"
		}
		if storage.ValidKey(key) {
			t.Fatalf("ValidKey(%q) = true", shown)
		}
		for _, opts := range []*storage.PutOptions{nil, {IfNotExist: true}} {
			if err := s.Put(ctx, key, bytes.NewReader(b), int64(len(b)), opts); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Put(%q, %+v) = %v, want ErrInvalidKey", shown, opts, err)
			}
		}
		if rc, err := s.Get(ctx, key, 0, -1); !errors.Is(err, storage.ErrInvalidKey) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", shown, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidKey", shown, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", shown, err)
		}
	}
	for _, prefix := range []string{"/", "/a", "A", "../", "a//", "a/.x", "..", "é"} {
		err := s.List(ctx, prefix, func(storage.Info) error { return nil })
		if !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("List(%q) = %v, want ErrInvalidKey", prefix, err)
		}
	}
	wantKeys(t, s, "") // nothing was stored

	// Long but valid keys: 10 segments of 99 characters, 999 in all.
	seg := strings.Repeat("k", 98)
	var parts []string
	for i := range 10 {
		parts = append(parts, fmt.Sprintf("%d%s", i, seg))
	}
	long := strings.Join(parts, "/")
	if !storage.ValidKey(long) {
		t.Fatal("long key unexpectedly invalid")
	}
	put(t, s, long, b)
	wantContent(t, s, long, b)
	wantKeys(t, s, "", long)
	// Keys using every allowed character.
	odd := "0-9_a.z/x-y_z.0/-_.-"
	put(t, s, odd, b)
	wantContent(t, s, odd, b)
}

func wantCanceled(t testing.TB, what string, err error) {
	t.Helper()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("%s with a cancelled context = %v, want an error wrapping context.Canceled", what, err)
	}
}

func testCanceledContext(t *testing.T, s storage.Storage, o Options) {
	b := data(5, 1000)
	put(t, s, "old", b)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	wantCanceled(t, "Put", s.Put(ctx, "new", bytes.NewReader(b), int64(len(b)), nil))
	wantCanceled(t, "create-only Put", s.Put(ctx, "new", bytes.NewReader(b), int64(len(b)), &storage.PutOptions{IfNotExist: true}))
	wantCanceled(t, "Put over an object", s.Put(ctx, "old", bytes.NewReader([]byte("clobber")), 7, nil))
	rc, err := s.Get(ctx, "old", 0, -1)
	if err == nil {
		rc.Close()
	}
	wantCanceled(t, "Get", err)
	_, err = s.Stat(ctx, "old")
	wantCanceled(t, "Stat", err)
	called := false
	err = s.List(ctx, "", func(storage.Info) error { called = true; return nil })
	wantCanceled(t, "List", err)
	if called {
		t.Errorf("List with a cancelled context called its callback")
	}
	wantCanceled(t, "Delete", s.Delete(ctx, "old"))

	wantMissing(t, s, "new")
	wantContent(t, s, "old", b)
	wantKeys(t, s, "", "old")

	// Cancelled while the driver reads the data.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	big := data(6, 3<<20)
	r := &hookReaderAt{data: big, hook: cancel}
	err = s.Put(ctx, "midway", r, int64(len(big)), nil)
	if err == nil {
		t.Fatalf("Put cancelled while reading its data succeeded")
	}
	wantCanceled(t, "Put cancelled while reading", err)
	wantMissing(t, s, "midway")
	wantKeys(t, s, "", "old")
}

// hookReaderAt serves data and calls hook once, at the first ReadAt.
type hookReaderAt struct {
	data []byte
	once sync.Once
	hook func()
}

func (h *hookReaderAt) ReadAt(p []byte, off int64) (int, error) {
	h.once.Do(h.hook)
	return bytes.NewReader(h.data).ReadAt(p, off)
}

// ErrInjected is the error of the failing readers of the suite.
var ErrInjected = errors.New("storagetest: injected reader failure")

// failingReaderAt serves data up to failAt, then fails with ErrInjected
// (or io.EOF when eof is set, as a source shorter than announced).
type failingReaderAt struct {
	data   []byte
	failAt int64
	eof    bool
}

func (f *failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.failAt {
		if f.eof {
			return 0, io.EOF
		}
		return 0, ErrInjected
	}
	n := copy(p, f.data[off:f.failAt])
	if n < len(p) {
		if f.eof {
			return n, io.EOF
		}
		return n, ErrInjected
	}
	return n, nil
}

func testFailingReader(t *testing.T, s storage.Storage, o Options) {
	ctx := t.Context()
	size := int64(256 << 10)
	if o.MultipartSize > 0 {
		size = 2*o.MultipartSize + 100 // fail in a later part
	}
	b := data(7, int(size))
	failing := func() io.ReaderAt { return &failingReaderAt{data: b, failAt: size * 3 / 4} }

	// A new key, plain and create-only.
	for _, opts := range []*storage.PutOptions{nil, {IfNotExist: true}} {
		err := s.Put(ctx, "half", failing(), size, opts)
		if err == nil {
			t.Fatalf("Put(%+v) with a reader failing midway succeeded", opts)
		}
		if !errors.Is(err, ErrInjected) {
			t.Logf("note: Put's error does not wrap the reader's error: %v", err)
		}
		wantMissing(t, s, "half")
	}
	// A create-only put of the key works afterwards: no leftover blocks it.
	if err := s.Put(ctx, "half", bytes.NewReader(b), size, &storage.PutOptions{IfNotExist: true}); err != nil {
		t.Fatalf("create-only Put after failed puts: %v", err)
	}
	wantContent(t, s, "half", b)

	// Over an existing object: the old bytes stay.
	old := data(8, 5000)
	put(t, s, "keep", old)
	if err := s.Put(ctx, "keep", failing(), size, nil); err == nil {
		t.Fatal("plain Put over an object with a failing reader succeeded")
	}
	wantContent(t, s, "keep", old)

	// A reader shorter than the announced size.
	short := &failingReaderAt{data: b, failAt: size - 1, eof: true}
	if err := s.Put(ctx, "short", short, size, nil); err == nil {
		t.Fatal("Put with a reader shorter than size succeeded")
	}
	wantMissing(t, s, "short")
	if err := s.Put(ctx, "keep", short, size, nil); err == nil {
		t.Fatal("Put over an object with a reader shorter than size succeeded")
	}
	wantContent(t, s, "keep", old)
	wantKeys(t, s, "", "half", "keep")
}

// watchedReaderAt records reads made after done is set.
type watchedReaderAt struct {
	data []byte
	done atomic.Bool
	late atomic.Int64
}

func (w *watchedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if w.done.Load() {
		w.late.Add(1)
	}
	return bytes.NewReader(w.data).ReadAt(p, off)
}

func testIsolation(t *testing.T, s storage.Storage, o Options) {
	ctx := t.Context()
	b := data(9, 4096)
	orig := bytes.Clone(b)
	w := &watchedReaderAt{data: b}
	if err := s.Put(ctx, "iso", w, int64(len(b)), nil); err != nil {
		t.Fatal(err)
	}
	w.done.Store(true)
	for i := range b {
		b[i] ^= 0xff // the caller reuses its buffer
	}
	wantContent(t, s, "iso", orig)

	rc, err := s.Get(ctx, "iso", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, len(orig))
	if _, err := io.ReadFull(rc, p); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	for i := range p {
		p[i] = 0
	}
	wantContent(t, s, "iso", orig)
	if n := w.late.Load(); n > 0 {
		t.Fatalf("Put read its source %d times after returning", n)
	}
}

func testConcurrentWriters(t *testing.T, s storage.Storage, o Options) {
	perWorker := 12
	if testing.Short() {
		perWorker = 4
	}
	n := o.Concurrency * perWorker
	key := func(i int) string { return fmt.Sprintf("cw/%d/%03d", i%o.Concurrency, i) }
	body := func(i int) []byte { return data(uint64(100+i), 1000+i*37) }
	ctx := t.Context()
	parallel(t, o.Concurrency, n, func(i int) error {
		b := body(i)
		if err := s.Put(ctx, key(i), bytes.NewReader(b), int64(len(b)), nil); err != nil {
			return fmt.Errorf("Put(%q): %w", key(i), err)
		}
		got, err := storage.ReadAll(ctx, s, key(i))
		if err != nil {
			return fmt.Errorf("ReadAll(%q): %w", key(i), err)
		}
		if !bytes.Equal(got, b) {
			return fmt.Errorf("object %q read back wrong", key(i))
		}
		return nil
	})
	if got := len(listAll(t, s, "cw/")); got != n {
		t.Fatalf("List found %d objects, want %d", got, n)
	}
	for i := range n {
		wantContent(t, s, key(i), body(i))
	}
}

func testConcurrentOverwrite(t *testing.T, s storage.Storage, o Options) {
	const key = "hot"
	versions := make([][]byte, o.Concurrency)
	for i := range versions {
		versions[i] = bytes.Repeat([]byte{byte('a' + i%26)}, 128<<10+i)
	}
	which := func(b []byte) int {
		for i, v := range versions {
			if bytes.Equal(b, v) {
				return i
			}
		}
		return -1
	}
	put(t, s, key, versions[0])
	rounds := 4
	if testing.Short() {
		rounds = 2
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	errc := make(chan error, 2*o.Concurrency)
	for i := range o.Concurrency {
		wg.Go(func() { // writer
			for range rounds {
				err := s.Put(ctx, key, bytes.NewReader(versions[i]), int64(len(versions[i])), nil)
				if o.AppendOnly && !errors.Is(err, storage.ErrPermission) {
					errc <- fmt.Errorf("writer %d: overwrite on an append-only store = %v, want ErrPermission", i, err)
					return
				}
				if err != nil && !o.AppendOnly {
					errc <- fmt.Errorf("writer %d: %w", i, err)
					return
				}
			}
		})
		wg.Go(func() { // reader
			for range rounds {
				got, err := storage.ReadAll(ctx, s, key)
				if err != nil {
					errc <- fmt.Errorf("reader %d: %w", i, err)
					return
				}
				if which(got) < 0 {
					errc <- fmt.Errorf("reader %d saw a torn object: %s", i, describe(got))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	got := get(t, s, key, 0, -1)
	if which(got) < 0 {
		t.Fatalf("final object is no writer's version: %s", describe(got))
	}
	if o.AppendOnly && which(got) != 0 {
		t.Fatalf("append-only store: the first object was replaced by writer %d's", which(got))
	}
	wantKeys(t, s, "", key)
}
