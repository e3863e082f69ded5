package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/faulty"
	"github.com/reprise-backup/reprise/storage/metered"
)

func TestAllPriorityAndIsolation(t *testing.T) {
	ctx := context.Background()
	fst := faulty.New(storage.NewMem(), 1)
	r := testutil.InitRepo(t, fst, testutil.SmallChunks)
	rng := rand.New(rand.NewPCG(5, 6))
	sizes := map[string]int{"big": 600 << 10, "small": 10 << 10, "medium": 100 << 10, "vip": 300 << 10, "broken": 50 << 10}
	data := map[string][]byte{}
	prefixes := func() map[string]bool {
		m := map[string]bool{}
		fst.List(ctx, "t/", func(i storage.Info) error {
			m[strings.Join(strings.Split(i.Key, "/")[:2], "/")+"/"] = true
			return nil
		})
		return m
	}
	brokenPrefix := ""
	for _, name := range []string{"big", "small", "medium", "vip", "broken"} {
		before := prefixes()
		ten, _ := r.Tenant(ctx, name)
		src := t.TempDir()
		data[name] = testutil.RandBytes(rng, sizes[name])
		os.WriteFile(filepath.Join(src, "db"), data[name], 0o600)
		if _, err := backup.Dir(ctx, ten, src, nil); err != nil {
			t.Fatal(err)
		}
		if name == "broken" {
			for p := range prefixes() {
				if !before[p] {
					brokenPrefix = p
				}
			}
		}
	}
	// The "broken" tenant's packs fail to read.
	fst.SetRule(faulty.OpGet, faulty.Rule{ErrRate: 1, Err: errors.New("disk gone"), KeyFilter: func(k string) bool {
		return strings.HasPrefix(k, brokenPrefix) && strings.Contains(k, "/p/")
	}})
	var order []string
	target := t.TempDir()
	results, err := restore.All(ctx, r, target, &restore.AllOptions{
		Priority: map[string]int{"vip": 10}, Parallel: 1,
		OnProgress: func(p restore.AllProgress) { order = append(order, p.Last.Tenant) },
	})
	if !errors.Is(err, restore.ErrIncomplete) || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("all: %v", err)
	}
	want := []string{"vip", "small", "broken", "medium", "big"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("order %v, want %v (priority, then smallest first)", order, want)
	}
	for _, res := range results {
		if res.Tenant == "broken" {
			if res.Err == nil {
				t.Error("broken tenant reported fine")
			}
			continue
		}
		if res.Err != nil {
			t.Errorf("%s: %v", res.Tenant, res.Err)
			continue
		}
		got, _ := os.ReadFile(filepath.Join(res.Dir, "db"))
		if !bytes.Equal(got, data[res.Tenant]) {
			t.Errorf("%s restored wrong", res.Tenant)
		}
	}
}

// An interrupted restore resumes without fetching what is already in place.
func TestResume(t *testing.T) {
	ctx := context.Background()
	fst := faulty.New(storage.NewMem(), 2)
	r := testutil.InitRepo(t, fst, testutil.SmallChunks)
	ten, _ := r.Tenant(ctx, "acme")
	src := t.TempDir()
	testutil.WriteRandomTree(t, src, rand.New(rand.NewPCG(3, 3)), 40, 300<<10)
	res, err := backup.Dir(ctx, ten, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := restore.Dir(ctx, ten, "latest", dst, nil); err != nil {
		t.Fatal(err)
	}
	// Interrupted: a few files missing, one truncated, one altered at its
	// start and, the largest (of many chunks, hashed on every core), at
	// its end.
	var files []string
	var largest string
	var most int64
	filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
			if fi, err := d.Info(); err == nil && fi.Size() > most {
				largest, most = p, fi.Size()
			}
		}
		return err
	})
	if len(files) < 6 || most < 64<<10 {
		t.Fatalf("only %d files, the largest of %d bytes", len(files), most)
	}
	files = slices.DeleteFunc(files, func(p string) bool { return p == largest })
	if b, _ := os.ReadFile(largest); len(b) > 0 {
		b[len(b)-1] ^= 1
		os.WriteFile(largest, b, 0o600)
	}
	os.Remove(files[0])
	os.Remove(files[1])
	fi, _ := os.Stat(files[2])
	if fi.Size() > 0 {
		os.Truncate(files[2], fi.Size()/2)
	}
	if b, _ := os.ReadFile(files[3]); len(b) > 0 {
		b[0] ^= 1
		os.WriteFile(files[3], b, 0o600)
	}
	fst.ResetCounts()
	rr, err := restore.Dir(ctx, ten, "latest", dst, &restore.Options{Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	if rr.Verified < int64(len(files)-4) || rr.Verified > int64(len(files)-2) || rr.Files != res.Files {
		t.Errorf("resume: %d verified in place, %d files (want %d to %d, %d)", rr.Verified, rr.Files, len(files)-4, len(files)-2, res.Files)
	}
	if rr.Bytes >= res.BytesRead {
		t.Errorf("resume fetched %d bytes: everything again (%d)", rr.Bytes, res.BytesRead)
	}
	testutil.CompareTrees(t, src, dst)
}

// TestAllLastTenantGetsWholeConcurrency restores three small tenants and
// a large one with Concurrency 8 shared by 4 tenants at once (2 reads
// each): once the small ones are done, the large one, restored alone,
// must have all 8 reads in flight. (That the shares never add up to more
// than Concurrency is TestWorkShare's: here tree reads add to the count.)
func TestAllLastTenantGetsWholeConcurrency(t *testing.T) {
	const conc = 8
	ctx := context.Background()
	g := &tenantGate{Storage: storage.NewMem(), want: conc, inflight: map[string]int{}, max: map[string]int{}}
	r := testutil.InitRepo(t, g, testutil.SmallChunks)
	rng := rand.New(rand.NewPCG(8, 9))
	srcs := map[string]string{}
	for name, size := range map[string]int{"a": 32 << 10, "b": 40 << 10, "c": 48 << 10, "large": 24 << 20} {
		_, srcs[name] = backupFiles(t, r, name, quarters(rng, size))
	}
	g.mu.Lock()
	g.on = true
	g.mu.Unlock()
	target := t.TempDir()
	results, err := restore.All(ctx, r, target, &restore.AllOptions{
		Options: restore.Options{Concurrency: conc, MemoryLimit: 16 << 20}, Parallel: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range results {
		testutil.CompareTrees(t, srcs[res.Tenant], res.Dir)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	most := 0
	for _, m := range g.max {
		most = max(most, m)
	}
	t.Logf("pack reads in flight at once: %d for one tenant, %d in all", most, g.maxAll)
	if most < conc {
		t.Errorf("the last tenant, restored alone, had at most %d pack reads in flight, want Concurrency (%d)", most, conc)
	}
}

// tenantGate holds each pack read until want reads of its tenant are in
// flight (or a moment has passed, so that a restore with fewer never
// hangs), and records how many were in flight at once, per tenant and in
// all. Once a tenant had want of them, reads pass.
type tenantGate struct {
	storage.Storage
	want     int
	mu       sync.Mutex
	on       bool
	reached  bool
	inflight map[string]int
	max      map[string]int
	all      int
	maxAll   int
}

func (g *tenantGate) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	parts := strings.SplitN(key, "/", 4)
	g.mu.Lock()
	if !g.on || len(parts) < 4 || parts[2] != "p" {
		g.mu.Unlock()
		return g.Storage.Get(ctx, key, off, n)
	}
	tenant := parts[1]
	g.inflight[tenant]++
	g.all++
	g.max[tenant] = max(g.max[tenant], g.inflight[tenant])
	g.maxAll = max(g.maxAll, g.all)
	if g.inflight[tenant] >= g.want {
		g.reached = true
	}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.inflight[tenant]--
		g.all--
		g.mu.Unlock()
	}()
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
		g.mu.Lock()
		reached := g.reached
		g.mu.Unlock()
		if reached {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return g.Storage.Get(ctx, key, off, n)
}

// TestAllTicks restores one tenant of 8 MiB through a store with 2 ms per
// request and ticks every millisecond: ticks come while the tenant is
// restored (none finished yet), with the bytes it has written so far.
func TestAllTicks(t *testing.T) {
	ctx := context.Background()
	lat := faulty.New(storage.NewMem(), 1)
	r := testutil.InitRepo(t, lat, testutil.SmallChunks)
	data := testutil.RandBytes(rand.New(rand.NewPCG(3, 4)), 8<<20)
	backupFiles(t, r, "large", map[string][]byte{"db": data})
	lat.SetRuleAll(faulty.Rule{Latency: 2 * time.Millisecond})
	var ticks []restore.AllProgress
	var finished int
	_, err := restore.All(ctx, r, t.TempDir(), &restore.AllOptions{
		// Spans of 1 MiB, one read at a time: the data takes 8 round
		// trips or more.
		Options: restore.Options{MemoryLimit: 16 << 20, Concurrency: 1, ProgressInterval: time.Millisecond},
		OnTick:  func(p restore.AllProgress) { ticks = append(ticks, p) },
		OnProgress: func(p restore.AllProgress) {
			finished++
			if p.Last == nil || p.Bytes != int64(len(data)) || p.TenantsDone != 1 {
				t.Errorf("finish event %+v, want Last set and %d bytes", p, len(data))
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if finished != 1 {
		t.Errorf("%d finish events for one tenant", finished)
	}
	var during bool
	for i, p := range ticks {
		if p.Last != nil || p.TotalBytes != int64(len(data)) || p.Bytes > p.TotalBytes || (i > 0 && p.Bytes < ticks[i-1].Bytes) {
			t.Fatalf("tick %d: %+v", i, p)
		}
		if p.TenantsDone == 0 && p.TenantsRunning == 1 && p.Bytes > 0 && p.Bytes < p.TotalBytes {
			during = true
		}
	}
	t.Logf("%d ticks", len(ticks))
	if !during {
		t.Error("no tick showed the running tenant's bytes before it finished")
	}
}

// TestResumePartialFile cancels the restore of a 40 MiB file once 16 MiB
// are written, damages the partial copy it leaves, and resumes: the
// chunks that hash right are kept, only the others are fetched, and the
// file comes out whole.
func TestResumePartialFile(t *testing.T) {
	ctx := context.Background()
	lat := faulty.New(storage.NewMem(), 1)
	m := metered.New(lat, nil)
	r := testutil.InitRepo(t, m, chunk.DefaultParams())
	data := testutil.RandBytes(rand.New(rand.NewPCG(4, 4)), 40<<20)
	ten, _ := backupFiles(t, r, "acme", map[string][]byte{"db": data})
	dst := filepath.Join(t.TempDir(), "out")
	final, partial := filepath.Join(dst, "db"), filepath.Join(dst, ".db.reprise-partial")

	// Interrupted: one read at a time, 1 ms each, cancelled at 16 MiB.
	lat.SetRuleAll(faulty.Rule{Latency: time.Millisecond})
	cctx, cancel := context.WithCancel(ctx)
	_, err := restore.Dir(cctx, ten, "latest", dst, &restore.Options{Concurrency: 1, MemoryLimit: 16 << 20,
		ProgressInterval: time.Millisecond, Progress: func(p restore.Progress) {
			if p.Bytes >= 16<<20 {
				cancel()
			}
		}})
	cancel()
	lat.ClearRules()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted restore: %v", err)
	}
	if _, err := os.Stat(final); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an interrupted restore left db in place (%v)", err)
	}
	if _, err := os.Stat(partial); err != nil {
		t.Fatalf("no partial copy left: %v", err)
	}
	f, err := os.OpenFile(partial, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(bytes.Repeat([]byte{0xff}, 100), 4<<20)
	f.Close()

	m.Reset()
	res, err := restore.Dir(ctx, ten, "latest", dst, &restore.Options{Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(final); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("resumed file differs (%v)", err)
	}
	if _, err := os.Stat(partial); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("partial copy still there after the restore (%v)", err)
	}
	read := m.Stats().Get.Bytes
	t.Logf("resume kept %d bytes, wrote %d, read %d from the store", res.Resumed, res.Bytes, read)
	if res.Resumed < 8<<20 || res.Resumed+res.Bytes != int64(len(data)) {
		t.Errorf("resume kept %d bytes and wrote %d, of %d (at least 12 MiB of the 16 written are intact)", res.Resumed, res.Bytes, len(data))
	}
	if read > int64(len(data))-res.Resumed+4<<20 {
		t.Errorf("resume read %d bytes from the store for %d missing", read, int64(len(data))-res.Resumed)
	}
}

// TestPartialCopyLeavesOtherFilesAlone puts a hard link to another file
// where a large file's partial copy goes: neither a restore nor a resumed
// one writes into it.
func TestPartialCopyLeavesOtherFilesAlone(t *testing.T) {
	ctx := context.Background()
	r := testutil.InitRepo(t, storage.NewMem(), chunk.DefaultParams())
	data := testutil.RandBytes(rand.New(rand.NewPCG(5, 5)), 16<<20)
	ten, _ := backupFiles(t, r, "acme", map[string][]byte{"db": data})
	for _, resume := range []bool{false, true} {
		dst := t.TempDir()
		victim := filepath.Join(t.TempDir(), "victim")
		// The victim holds the file's first half, so that a resume
		// would find chunks that hash right in it, and write the others.
		vdata := slices.Concat(data[:8<<20], make([]byte, 8<<20))
		if err := os.WriteFile(victim, vdata, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(victim, filepath.Join(dst, ".db.reprise-partial")); err != nil {
			t.Skip("no hard links here:", err)
		}
		if _, err := restore.Dir(ctx, ten, "latest", dst, &restore.Options{Resume: resume}); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(dst, "db")); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("resume %v: db restored wrong (%v)", resume, err)
		}
		if got, err := os.ReadFile(victim); err != nil || !bytes.Equal(got, vdata) {
			t.Errorf("resume %v: the hard-linked file was written into (%v)", resume, err)
		}
	}
}

// TestSnapshotHoldingPartialNames restores a snapshot holding, next to
// large files, files named as their partial copies (as when a target a
// failed restore left them in was backed up): nothing is overwritten.
// When the partial name comes first in the tree, both files are
// restored; when it comes after the large file (a name starting below
// '.'), it is reported as a conflict and the large file is restored.
func TestSnapshotHoldingPartialNames(t *testing.T) {
	ctx := context.Background()
	r := testutil.InitRepo(t, storage.NewMem(), chunk.DefaultParams())
	rng := rand.New(rand.NewPCG(6, 6))
	files := map[string][]byte{
		"db": testutil.RandBytes(rng, 16<<20), ".db.reprise-partial": []byte("an old partial copy"),
		"-x": testutil.RandBytes(rng, 16<<20), ".-x.reprise-partial": []byte("another"),
	}
	ten, _ := backupFiles(t, r, "acme", files)
	dst := t.TempDir()
	res, err := restore.Dir(ctx, ten, "latest", dst, nil)
	if !errors.Is(err, restore.ErrIncomplete) || len(res.Failed) != 1 || res.Failed[0].Path != ".-x.reprise-partial" ||
		!errors.Is(res.Failed[0], fs.ErrExist) {
		t.Fatalf("restore: %v (want only .-x.reprise-partial failed)", err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if name == ".-x.reprise-partial" {
			if err == nil {
				t.Errorf("%s restored (%d bytes) though it conflicts", name, len(got))
			}
			continue
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: restored wrong (%v)", name, err)
		}
	}
	// Resumed: db and -x are complete, so the files named as their
	// partial copies are the snapshot's, not leftovers. The one kept
	// stays, the one that conflicted is restored now.
	if _, err := restore.Dir(ctx, ten, "latest", dst, &restore.Options{Resume: true}); err != nil {
		t.Fatalf("resume: %v", err)
	}
	for name, want := range files {
		if got, err := os.ReadFile(filepath.Join(dst, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("after resume, %s: restored wrong (%v)", name, err)
		}
	}
}

// backupFiles backs up files (name: contents) as a directory snapshot of
// tenant name, created if needed, and returns the tenant and the source
// directory.
func backupFiles(tb testing.TB, r *reprise.Repository, name string, files map[string][]byte) (*reprise.Tenant, string) {
	tb.Helper()
	ctx := context.Background()
	ten, err := r.Tenant(ctx, name)
	if err != nil {
		tb.Fatal(err)
	}
	src := tb.TempDir()
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(src, f), b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := backup.Dir(ctx, ten, src, nil); err != nil {
		tb.Fatal(err)
	}
	return ten, src
}

// quarters is size bytes of random data from rng, as 4 files "0" to "3".
func quarters(rng *rand.Rand, size int) map[string][]byte {
	files := map[string][]byte{}
	for i := range 4 {
		files[fmt.Sprint(i)] = testutil.RandBytes(rng, size/4)
	}
	return files
}
