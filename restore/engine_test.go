package restore_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/metered"
)

// A chunk used by many files is fetched once, and adjacent chunks of a
// pack are read with one request: a restore of many copies of the same
// files issues far fewer reads than it writes chunks.
func TestRestoreFetchesOnceAndCoalesces(t *testing.T) {
	ctx := context.Background()
	m := metered.New(storage.NewMem(), nil)
	r := testutil.InitRepo(t, m, testutil.SmallChunks)
	ten, _ := r.Tenant(ctx, "t")
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 1))
	orig := testutil.RandBytes(rng, 2<<20)
	const copies = 20
	for i := range copies {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("copy%02d", i)), orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res, err := backup.Dir(ctx, ten, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	chunksPerCopy := res.Snapshot.Stats.Chunks / copies
	m.Reset()
	dst := t.TempDir()
	if _, err := restore.Dir(ctx, ten, "latest", dst, nil); err != nil {
		t.Fatal(err)
	}
	testutil.CompareTrees(t, src, dst)
	gets := m.Stats().Get.Calls
	// Each copy has chunksPerCopy chunks, all adjacent in one or two
	// packs: a handful of ranged reads, plus snapshot, index and tree.
	t.Logf("%d chunks written (%d distinct), %d reads", chunksPerCopy*copies, chunksPerCopy, gets)
	if chunksPerCopy < 8 {
		t.Fatalf("only %d chunks per copy: the test needs more", chunksPerCopy)
	}
	if gets >= int64(chunksPerCopy) {
		t.Errorf("%d reads for %d distinct chunks: duplicates fetched again, or adjacent chunks not coalesced", gets, chunksPerCopy)
	}
}

// All-zero chunks are not written: the restored file is sparse there and
// still reads back exactly.
func TestRestoreSparse(t *testing.T) {
	ctx := context.Background()
	r := testutil.InitRepo(t, storage.NewMem(), chunk.DefaultParams())
	ten, _ := r.Tenant(ctx, "t")
	src := t.TempDir()
	data := make([]byte, 64<<20)
	copy(data, testutil.RandBytes(rand.New(rand.NewPCG(2, 2)), 1<<20))
	copy(data[len(data)-1<<20:], testutil.RandBytes(rand.New(rand.NewPCG(3, 3)), 1<<20))
	if err := os.WriteFile(filepath.Join(src, "disk.img"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Dir(ctx, ten, src, nil); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if _, err := restore.Dir(ctx, ten, "latest", dst, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dst, "disk.img"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("restored file differs (err %v)", err)
	}
	// Whether holes take no blocks depends on the file system: measure it
	// on a file made sparse on purpose before judging the restore.
	probe := filepath.Join(dst, "probe")
	f, _ := os.Create(probe)
	f.Truncate(64 << 20)
	f.Close()
	if blocks(t, probe) > 1024 {
		t.Logf("the file system of %s does not keep holes; sparseness not checked", dst)
		return
	}
	if b := blocks(t, filepath.Join(dst, "disk.img")); b*512 > 16<<20 {
		t.Errorf("restored file uses %d MiB for 2 MiB of non-zero data: zero chunks were written", b*512>>20)
	}
}

func blocks(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Skip("no block count on this platform")
	}
	return st.Blocks
}

// Memory stays bounded by the cap, not by the snapshot's size: a stream 20
// times larger than the cap restores with a live heap well under the
// snapshot's size (the bound leaves room for decoders, the index and
// garbage the GC has not yet collected).
func TestRestoreMemoryBounded(t *testing.T) {
	const limit = 4 << 20
	ctx := context.Background()
	r := testutil.InitRepo(t, storage.NewMem(), chunk.DefaultParams())
	ten, _ := r.Tenant(ctx, "t")
	data := testutil.TextBytes(rand.New(rand.NewPCG(4, 4)), 20*limit)
	res, err := backup.Stream(ctx, ten, "s", bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	var sum int
	peak := peakHeap(func() {
		w := &countingWriter{}
		if _, err := restore.Stream(ctx, ten, res.Snapshot.ID, w, &restore.Options{MemoryLimit: limit}); err != nil {
			t.Error(err)
		}
		sum = w.n
	})
	if sum != len(data) {
		t.Fatalf("restored %d bytes of %d", sum, len(data))
	}
	t.Logf("peak live heap %.1f MiB for a %d MiB stream under a %d MiB cap", float64(peak)/(1<<20), len(data)>>20, limit>>20)
	if peak > 5*limit {
		t.Errorf("peak heap %d MiB: memory grows with the snapshot, not bounded by the %d MiB cap", peak>>20, limit>>20)
	}
}

type countingWriter struct{ n int }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

var _ io.Writer = (*countingWriter)(nil)

// Large files are written partly with O_DIRECT (the aligned inside of
// each chunk) and partly through the cache (edges, duplicates that do not
// line up): whatever the chunk offsets, the file restores exactly, and
// the same through the cache only.
func TestRestoreDirectWrites(t *testing.T) {
	ctx := context.Background()
	r := testutil.InitRepo(t, storage.NewMem(), testutil.SmallChunks)
	ten, _ := r.Tenant(ctx, "t")
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 5))
	big := testutil.RandBytes(rng, 5<<20+123)
	copy(big[3<<20:], big[:1<<20]) // repeated chunks at other alignments
	files := map[string][]byte{"big": big, "text": testutil.TextBytes(rng, 3<<20+4095), "small": testutil.RandBytes(rng, 5000)}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := backup.Dir(ctx, ten, src, nil); err != nil {
		t.Fatal(err)
	}
	for _, direct := range []bool{true, false} {
		dst := t.TempDir()
		if _, err := restore.Dir(ctx, ten, "latest", dst, &restore.Options{Direct: direct}); err != nil {
			t.Fatalf("direct=%v: %v", direct, err)
		}
		testutil.CompareTrees(t, src, dst)
	}
}

// A stream backed up by several sealers has its consecutive chunks spread
// over several packs; the stream restore sorts each window of chunks by
// pack and offset, so it still reads runs of chunks with one request each,
// not one request per chunk.
func TestRestoreStreamCoalescesAcrossPacks(t *testing.T) {
	ctx := context.Background()
	m := metered.New(storage.NewMem(), nil)
	r := testutil.InitRepo(t, m, testutil.SmallChunks)
	ten, _ := r.Tenant(ctx, "t")
	data := testutil.RandBytes(rand.New(rand.NewPCG(4, 4)), 8<<20)
	prev := runtime.GOMAXPROCS(4) // four sealers, four packs filled at once
	res, err := backup.Stream(ctx, ten, "db", bytes.NewReader(data), nil)
	runtime.GOMAXPROCS(prev)
	if err != nil {
		t.Fatal(err)
	}
	chunks := res.Snapshot.Stats.Chunks
	m.Reset()
	var out bytes.Buffer
	if _, err := restore.Stream(ctx, ten, "latest", &out, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("restored stream differs")
	}
	gets := m.Stats().Get.Calls
	t.Logf("%d chunks, %d reads", chunks, gets)
	if chunks < 256 {
		t.Fatalf("only %d chunks: the test needs more", chunks)
	}
	if gets > int64(chunks)/8 {
		t.Errorf("%d reads for %d chunks: the stream's chunks were not coalesced across its packs", gets, chunks)
	}
}

// flipLarge flips one bit in the middle of every read longer than limit:
// the multi-chunk reads of a restore's spans, not the single-chunk reads
// of its fallback.
type flipLarge struct {
	storage.Storage
	limit int64
	flips atomic.Int64
}

func (s *flipLarge) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := s.Storage.Get(ctx, key, off, n)
	if err != nil || n <= s.limit {
		return rc, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	b[len(b)/2] ^= 0x10
	s.flips.Add(1)
	return io.NopCloser(bytes.NewReader(b)), nil
}

// A stream of incompressible data is decrypted in place, inside the bytes
// read from the pack; a chunk that fails there (here: damaged in flight)
// is read again on its own and put in its place, and the stream comes out
// exact.
func TestRestoreStreamInPlaceFallsBack(t *testing.T) {
	ctx := context.Background()
	fl := &flipLarge{Storage: storage.NewMem(), limit: 1 << 62}
	r := testutil.InitRepo(t, fl, testutil.SmallChunks)
	ten, _ := r.Tenant(ctx, "t")
	data := testutil.RandBytes(rand.New(rand.NewPCG(7, 7)), 4<<20)
	if _, err := backup.Stream(ctx, ten, "db", bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	fl.limit = 2 * int64(testutil.SmallChunks.Max) // spans of several chunks
	var out bytes.Buffer
	if _, err := restore.Stream(ctx, ten, "latest", &out, nil); err != nil {
		t.Fatal(err)
	}
	if fl.flips.Load() == 0 {
		t.Fatal("no span read was damaged: the test tests nothing")
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("restored stream differs")
	}
	t.Logf("%d damaged span reads, stream exact", fl.flips.Load())
}

// Requests run ahead of the memory budget: a fetcher sends its request
// first and waits for budget only to take in the bytes, so a store's
// latency is hidden by Concurrency requests in flight even when the
// budget holds only a few spans. (When the budget was taken before the
// request, at most 2 or 3 requests were in flight here.)
func TestRestoreRequestsRunAheadOfBudget(t *testing.T) {
	const conc = 8
	ctx := context.Background()
	g := &testutil.Gate{Storage: storage.NewMem(), Match: "/p/", Want: conc}
	r := testutil.InitRepo(t, g, chunk.DefaultParams())
	ten, _ := r.Tenant(ctx, "t")
	data := testutil.RandBytes(rand.New(rand.NewPCG(5, 5)), 32<<20)
	src := t.TempDir()
	for i := range 4 {
		part := data[i*len(data)/4 : (i+1)*len(data)/4]
		if err := os.WriteFile(filepath.Join(src, fmt.Sprint(i)), part, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := backup.Stream(ctx, ten, "s", bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := backup.Dir(ctx, ten, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := &restore.Options{Concurrency: conc, MemoryLimit: 4 << 20}
	for _, kind := range []string{"stream", "dir"} {
		g.Start()
		if kind == "stream" {
			var out bytes.Buffer
			if _, err := restore.Stream(ctx, ten, stream.Snapshot.ID, &out, opts); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Fatal("stream restored wrong")
			}
		} else {
			dst := t.TempDir()
			if _, err := restore.Dir(ctx, ten, dir.Snapshot.ID, dst, opts); err != nil {
				t.Fatal(err)
			}
			testutil.CompareTrees(t, src, dst)
		}
		m, _ := g.Stop()
		t.Logf("%s: up to %d pack reads in flight at once, budget of 4 MiB", kind, m)
		if m < conc {
			t.Errorf("%s: at most %d pack reads in flight (Concurrency %d): requests wait for the budget", kind, m, conc)
		}
	}
}
