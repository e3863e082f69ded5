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
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/faulty"
)

// Benchmarks of issue #7. Rerun them with
//
//	go test ./restore -run '^$' -bench . -count 6 | tee new.txt
//	benchstat new.txt
//
// They restore from in-memory storage, so they measure the engine
// (fetch, decrypt, decompress, verify, write), not a disk or a network.

// streamRepo backs up n bytes of text-like or random data as one stream.
func streamRepo(b *testing.B, st storage.Storage, kind string, n int) (*reprise.Tenant, string) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := testutil.RandBytes(rng, n)
	if kind == "text" {
		data = testutil.TextBytes(rng, n)
	}
	r := testutil.InitRepoPacks(b, st, chunk.DefaultParams(), reprise.DefaultPackSize)
	ctx := context.Background()
	ten, err := r.Tenant(ctx, "t")
	if err != nil {
		b.Fatal(err)
	}
	res, err := backup.Stream(ctx, ten, "s", bytes.NewReader(data), nil)
	if err != nil {
		b.Fatal(err)
	}
	return ten, res.Snapshot.ID
}

// BenchmarkRestoreStream measures an ordered stream restore into
// io.Discard, with GOMAXPROCS 1 and 2, on compressible and incompressible
// data: the decoders run on every core, so it should scale with them.
func BenchmarkRestoreStream(b *testing.B) {
	for _, kind := range []string{"text", "random"} {
		ten, id := streamRepo(b, storage.NewMem(), kind, 64<<20)
		for _, procs := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/procs=%d", kind, procs), func(b *testing.B) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				b.SetBytes(64 << 20)
				b.ReportAllocs()
				for b.Loop() {
					rr, err := restore.Stream(context.Background(), ten, id, io.Discard, nil)
					if err != nil {
						b.Fatal(err)
					}
					if rr.Bytes != 64<<20 {
						b.Fatalf("restored %d bytes", rr.Bytes)
					}
				}
			})
		}
	}
}

// BenchmarkRestoreDir measures a directory restore to disk (files of 1 to
// 8 MiB, WriteAt into pre-sized files), with GOMAXPROCS 1 and 2.
func BenchmarkRestoreDir(b *testing.B) {
	for _, kind := range []string{"text", "random"} {
		src := b.TempDir()
		rng := rand.New(rand.NewPCG(3, 4))
		total := 0
		for i := 0; total < 64<<20; i++ {
			n := (1 + rng.IntN(8)) << 20
			data := testutil.RandBytes(rng, n)
			if kind == "text" {
				data = testutil.TextBytes(rng, n)
			}
			if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), data, 0o600); err != nil {
				b.Fatal(err)
			}
			total += n
		}
		r := testutil.InitRepoPacks(b, storage.NewMem(), chunk.DefaultParams(), reprise.DefaultPackSize)
		ctx := context.Background()
		ten, _ := r.Tenant(ctx, "t")
		res, err := backup.Dir(ctx, ten, src, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, procs := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/procs=%d", kind, procs), func(b *testing.B) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				b.SetBytes(int64(total))
				b.ReportAllocs()
				for b.Loop() {
					b.StopTimer()
					dst := filepath.Join(b.TempDir(), "out")
					b.StartTimer()
					if _, err := restore.Dir(ctx, ten, res.Snapshot.ID, dst, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkRestoreLatency restores a 1 GiB stream through a backend
// answering every request after 20 ms (storage/faulty), alternating with
// the same restore without latency, and reports both throughputs and
// their ratio: issue #7 asks for at least 80%. "ratio" is over the whole
// restore, which pays five round trips that no pipelining hides (snapshot
// and index list, index objects, tree, first span, run record: 100 ms);
// "steady-ratio" from the first byte written to the last. Requests are
// sent ahead of the memory budget, so what hides the latency is the
// number of requests in flight (Options.Concurrency), not MemoryLimit:
// the default and half of it run.
func BenchmarkRestoreLatency(b *testing.B) {
	const size = 1 << 30
	mem := storage.NewMem()
	lat := faulty.New(mem, 1)
	ten, id := streamRepo(b, lat, "random", size)
	ctx := context.Background()
	for _, conc := range []int{0, 16} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			var total, steady [2]time.Duration // at 0 and 20 ms
			b.SetBytes(2 * size)
			for b.Loop() {
				for i, d := range []time.Duration{0, 20 * time.Millisecond} {
					lat.SetRuleAll(faulty.Rule{Latency: d})
					// Both restores start from a collected heap, so that
					// neither pays for the other's (or the setup's)
					// garbage.
					runtime.GC()
					w := &firstWrite{}
					t0 := time.Now()
					if _, err := restore.Stream(ctx, ten, id, w, &restore.Options{Concurrency: conc}); err != nil {
						b.Fatal(err)
					}
					total[i] += time.Since(t0)
					steady[i] += w.last.Sub(w.at)
				}
			}
			lat.ClearRules()
			mbs := func(d time.Duration) float64 { return float64(b.N) * size / 1e6 / d.Seconds() }
			b.ReportMetric(mbs(total[0]), "MB/s@0ms")
			b.ReportMetric(mbs(total[1]), "MB/s@20ms")
			b.ReportMetric(total[0].Seconds()/total[1].Seconds(), "ratio")
			b.ReportMetric(steady[0].Seconds()/steady[1].Seconds(), "steady-ratio")
		})
	}
}

// BenchmarkRestoreLatencyMix is issue #7's latency target as it is
// written: a 1 GiB mix (testutil.WriteMix: SQL-like text, random files,
// 6,000 small files) restored into a directory through a backend answering
// every request after 20 ms, alternating with the same restore without
// latency; it reports both throughputs and their ratio. Unlike
// BenchmarkRestoreLatency (a stream into io.Discard, which only the round
// trips slow down), the files are written to disk, as a real restore does.
func BenchmarkRestoreLatencyMix(b *testing.B) {
	const size = 1 << 30
	src := b.TempDir()
	files, nbytes := testutil.WriteMix(b, src, rand.New(rand.NewPCG(5, 6)), size)
	lat := faulty.New(storage.NewMem(), 1)
	r := testutil.InitRepoPacks(b, lat, chunk.DefaultParams(), reprise.DefaultPackSize)
	ctx := context.Background()
	ten, err := r.Tenant(ctx, "t")
	if err != nil {
		b.Fatal(err)
	}
	res, err := backup.Dir(ctx, ten, src, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.RemoveAll(src); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "out")
	var total [2]time.Duration // at 0 and 20 ms
	b.SetBytes(2 * nbytes)
	for b.Loop() {
		for i, d := range []time.Duration{0, 20 * time.Millisecond} {
			lat.SetRuleAll(faulty.Rule{Latency: d})
			runtime.GC()
			t0 := time.Now()
			got, err := restore.Dir(ctx, ten, res.Snapshot.ID, out, nil)
			if err != nil {
				b.Fatal(err)
			}
			total[i] += time.Since(t0)
			if got.Files != int64(files) || got.Bytes != nbytes {
				b.Fatalf("restored %d files, %d bytes; want %d, %d", got.Files, got.Bytes, files, nbytes)
			}
			if err := os.RemoveAll(out); err != nil {
				b.Fatal(err)
			}
		}
	}
	lat.ClearRules()
	mbs := func(d time.Duration) float64 { return float64(b.N*int(nbytes)) / 1e6 / d.Seconds() }
	b.ReportMetric(mbs(total[0]), "MB/s@0ms")
	b.ReportMetric(mbs(total[1]), "MB/s@20ms")
	b.ReportMetric(total[0].Seconds()/total[1].Seconds(), "ratio")
}

// firstWrite is io.Discard that notes when the first and last bytes came.
type firstWrite struct{ at, last time.Time }

func (w *firstWrite) Write(p []byte) (int, error) {
	w.last = time.Now()
	if w.at.IsZero() {
		w.at = w.last
	}
	return len(p), nil
}

// BenchmarkRestoreAllSmallTenants restores 1000 small tenants (16 KiB to
// 1 MiB each) through a backend with 1 ms per request, once with
// restore.All (concurrent, smallest first) and once one by one in listing
// order, and reports when 80% of the tenants were back in each case. It
// then restores them with restore.All through 20 ms per request, as from
// an object store, and reports when the first tenant and 80% of them were
// back (one by one would take minutes there).
func BenchmarkRestoreAllSmallTenants(b *testing.B) {
	const tenants = 1000
	ctx := context.Background()
	lat := faulty.New(storage.NewMem(), 1)
	r := testutil.InitRepo(b, lat, testutil.SmallChunks)
	rng := rand.New(rand.NewPCG(7, 8))
	names := make([]string, tenants)
	src := b.TempDir()
	for i := range names {
		names[i] = fmt.Sprintf("customer-%04d", i)
		ten, err := r.Tenant(ctx, names[i])
		if err != nil {
			b.Fatal(err)
		}
		// Sizes spread over two orders of magnitude, most of them small.
		n := 16<<10 + int(float64(1<<20)*rng.Float64()*rng.Float64()*rng.Float64())
		if err := os.WriteFile(filepath.Join(src, "db.sql"), testutil.TextBytes(rng, n), 0o600); err != nil {
			b.Fatal(err)
		}
		if _, err := backup.Dir(ctx, ten, src, nil); err != nil {
			b.Fatal(err)
		}
		ten.Close()
	}
	lat.SetRuleAll(faulty.Rule{Latency: time.Millisecond})
	defer lat.ClearRules()
	var all80, one80 time.Duration
	for b.Loop() {
		// Concurrent, prioritized.
		_, at80 := allUntil(b, r, tenants*8/10)
		all80 += at80
		// One by one, in listing order.
		target := b.TempDir()
		start := time.Now()
		for i, n := range slices.Sorted(slices.Values(names))[:tenants*8/10] {
			ten, err := r.OpenTenant(ctx, n)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := restore.Dir(ctx, ten, "latest", filepath.Join(target, fmt.Sprint(i)), nil); err != nil {
				b.Fatal(err)
			}
			ten.Close()
		}
		one80 += time.Since(start)
	}
	b.ReportMetric(all80.Seconds()/float64(b.N), "s-to-80%-all")
	b.ReportMetric(one80.Seconds()/float64(b.N), "s-to-80%-one-by-one")
	b.ReportMetric(one80.Seconds()/all80.Seconds(), "speedup")
	lat.SetRuleAll(faulty.Rule{Latency: 20 * time.Millisecond})
	first, at80 := allUntil(b, r, tenants*8/10)
	b.ReportMetric(first.Seconds(), "s-to-first@20ms")
	b.ReportMetric(at80.Seconds(), "s-to-80%-all@20ms")
}

// allUntil runs restore.All and returns when the first and the n-th
// tenants were back.
func allUntil(b *testing.B, r *reprise.Repository, n int64) (first, nth time.Duration) {
	var done atomic.Int64
	start := time.Now()
	_, err := restore.All(context.Background(), r, b.TempDir(), &restore.AllOptions{OnProgress: func(p restore.AllProgress) {
		switch done.Add(1) {
		case 1:
			first = time.Since(start)
		case n:
			nth = time.Since(start)
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	return first, nth
}

// BenchmarkRestoreAllLargeLast restores 7 small tenants and one of
// 256 MiB with restore.All (defaults: Parallel 8, Concurrency 32) through
// a backend with 20 ms per request. The large tenant comes last and ends
// up restored alone: it must then have the whole Concurrency, not the
// 32/8 it started with. The ratio compares All's time with restoring the
// large tenant alone with restore.Dir at the same Concurrency (1 is
// ideal).
func BenchmarkRestoreAllLargeLast(b *testing.B) {
	const large = 256 << 20
	ctx := context.Background()
	lat := faulty.New(storage.NewMem(), 1)
	r := testutil.InitRepo(b, lat, testutil.SmallChunks)
	rng := rand.New(rand.NewPCG(8, 9))
	var big *reprise.Tenant
	for i := range 8 {
		size := 64 << 10
		if i == 7 {
			size = large
		}
		big, _ = backupFiles(b, r, fmt.Sprint("customer-", i), quarters(rng, size))
	}
	lat.SetRuleAll(faulty.Rule{Latency: 20 * time.Millisecond})
	defer lat.ClearRules()
	b.SetBytes(large)
	var all, alone time.Duration
	for b.Loop() {
		target := b.TempDir()
		runtime.GC()
		start := time.Now()
		if _, err := restore.All(ctx, r, target, nil); err != nil {
			b.Fatal(err)
		}
		all += time.Since(start)
		os.RemoveAll(target)
		runtime.GC()
		start = time.Now()
		if _, err := restore.Dir(ctx, big, "latest", target, nil); err != nil {
			b.Fatal(err)
		}
		alone += time.Since(start)
		os.RemoveAll(target)
	}
	b.ReportMetric(all.Seconds()/float64(b.N), "s-all")
	b.ReportMetric(alone.Seconds()/float64(b.N), "s-large-alone")
	b.ReportMetric(alone.Seconds()/all.Seconds(), "ratio")
}

// peakHeap samples the live heap every millisecond while fn runs and
// returns the highest value seen above the heap before fn.
func peakHeap(fn func()) (peak uint64) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > base && v-base > peak {
				peak = v - base
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	fn()
	close(stop)
	wg.Wait()
	return peak
}

// BenchmarkRestorePeakMemory restores a stream and a directory 20 times
// larger than the memory cap (8 MiB) and reports the peak heap growth.
// The heap counts garbage not yet collected, so the GC is made eager
// during the restore to measure what is live.
func BenchmarkRestorePeakMemory(b *testing.B) {
	const limit = 8 << 20
	ten, id := streamRepo(b, storage.NewMem(), "text", 20*limit)
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	var peak uint64
	b.SetBytes(20 * limit)
	for b.Loop() {
		peak = max(peak, peakHeap(func() {
			if _, err := restore.Stream(context.Background(), ten, id, io.Discard, &restore.Options{MemoryLimit: limit}); err != nil {
				b.Fatal(err)
			}
		}))
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peak)/limit, "peak/cap")
}
