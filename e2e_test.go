package reprise_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
)

func newFSRepo(t *testing.T) (*reprise.Repository, *storage.FS, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := storage.NewFS(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.InitRepo(t, st, testutil.SmallChunks), st, dir
}

func tenant(t *testing.T, r *reprise.Repository, name string) *reprise.Tenant {
	t.Helper()
	ten, err := r.Tenant(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ten
}

// TestRoundTripTrees backs up random trees (empty and 1-byte files, large
// files, deep nesting, symlinks) and restores them byte-identical.
func TestRoundTripTrees(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newFSRepo(t)
	ten := tenant(t, r, "acme")
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			src := t.TempDir()
			rng := rand.New(rand.NewPCG(seed, 7))
			testutil.WriteRandomTree(t, src, rng, 80, 1<<20)
			res, err := backup.Dir(ctx, ten, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "out")
			rr, err := restore.Dir(ctx, ten, res.Snapshot.ID, dst, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rr.Files != res.Files || rr.Bytes != res.BytesRead {
				t.Errorf("restored %d files/%d bytes, backed up %d/%d", rr.Files, rr.Bytes, res.Files, res.BytesRead)
			}
			testutil.CompareTrees(t, src, dst)
		})
	}
}

// TestRoundTripStreams backs up streams of awkward sizes.
func TestRoundTripStreams(t *testing.T) {
	ctx := context.Background()
	r := testutil.InitRepo(t, storage.NewMem(), testutil.SmallChunks)
	ten := tenant(t, r, "acme")
	rng := rand.New(rand.NewPCG(9, 9))
	for _, n := range []int{0, 1, 4095, 4096, 64 << 10, 3<<20 + 17} {
		data := testutil.RandBytes(rng, n)
		if n%2 == 1 {
			data = testutil.TextBytes(rng, n)
		}
		res, err := backup.Stream(ctx, ten, "dump.sql", bytes.NewReader(data), nil)
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		var out bytes.Buffer
		if _, err := restore.Stream(ctx, ten, res.Snapshot.ID, &out, &restore.Options{Concurrency: 3}); err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("size %d: restored stream differs", n)
		}
	}
}

func writeFiles(t *testing.T, dir string, rng *rand.Rand, n, size int) {
	t.Helper()
	for i := 0; i < n; i++ {
		data := testutil.TextBytes(rng, size)
		if i%2 == 0 {
			data = testutil.RandBytes(rng, size)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%02d", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDedup checks that an unchanged second backup stores under 1% new
// bytes, and that small scattered edits store roughly only the chunks
// around them.
func TestDedup(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newFSRepo(t)
	ten := tenant(t, r, "acme")
	src := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 5))
	writeFiles(t, src, rng, 8, 1<<20)
	first, err := backup.Dir(ctx, ten, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := backup.Dir(ctx, ten, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first: read %d added %d; unchanged second: added %d", first.BytesRead, first.BytesAdded, second.BytesAdded)
	if second.BytesAdded*100 >= first.BytesRead {
		t.Errorf("unchanged backup added %d bytes, want < 1%% of %d", second.BytesAdded, first.BytesRead)
	}
	if second.NewChunks > 2 { // the tree stream may change (directory mtimes do not; it should dedup fully)
		t.Errorf("unchanged backup stored %d new chunks", second.NewChunks)
	}

	// 8 scattered 100-byte overwrites, one per file.
	const edits = 8
	for i := 0; i < edits; i++ {
		p := filepath.Join(src, fmt.Sprintf("file%02d", i))
		data, _ := os.ReadFile(p)
		off := rng.IntN(len(data) - 100)
		copy(data[off:], testutil.RandBytes(rng, 100))
		os.WriteFile(p, data, 0o644)
	}
	third, err := backup.Dir(ctx, ten, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	// SmallChunks: average 16 KiB, max 64 KiB. An edit changes the chunk
	// it falls in and at most its neighbour: budget 3 max-size chunks per
	// edit, before compression, plus the tree.
	budget := int64(edits*3*testutil.SmallChunks.Max + 64<<10)
	t.Logf("after %d scattered edits: %d new chunks, %d bytes added (budget %d)", edits, third.NewChunks, third.BytesAdded, budget)
	if third.BytesAdded > budget {
		t.Errorf("edits added %d bytes, want <= %d", third.BytesAdded, budget)
	}
	if third.NewChunks < edits {
		t.Errorf("only %d new chunks for %d edits: edits were lost?", third.NewChunks, edits)
	}
}

// TestNoPlaintextInRepository backs up files holding a marker string and a
// tenant name, then scans every stored object and its name for them.
func TestNoPlaintextInRepository(t *testing.T) {
	ctx := context.Background()
	r, _, dir := newFSRepo(t)
	const tenantName = "tenant-megacorp-secret"
	ten := tenant(t, r, tenantName)
	marker := "REPRISE-MARKER-7f3a9c-DO-NOT-LEAK"
	src := t.TempDir()
	var text strings.Builder
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&text, "row %d %s\n", i, marker)
	}
	os.WriteFile(filepath.Join(src, "marker.txt"), []byte(text.String()), 0o644)
	os.WriteFile(filepath.Join(src, marker+".name"), []byte(marker), 0o644)
	if _, err := backup.Dir(ctx, ten, src, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Stream(ctx, ten, "stream-"+strings.ToLower(marker), strings.NewReader(text.String()), nil); err != nil {
		t.Fatal(err)
	}
	needles := [][]byte{[]byte(marker), []byte(strings.ToLower(marker)), []byte(tenantName), []byte(src), []byte(testutil.Passphrase)}
	objects := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		objects++
		data, _ := os.ReadFile(p)
		for _, n := range needles {
			if bytes.Contains(data, n) || strings.Contains(p, string(n)) {
				t.Errorf("object %s holds %q", p, n)
			}
		}
		return nil
	})
	if objects < 5 {
		t.Fatalf("scanned only %d objects", objects)
	}
}

// TestWrongPassphrase: a clear error, and nothing written.
func TestWrongPassphrase(t *testing.T) {
	ctx := context.Background()
	_, st, dir := newFSRepo(t)
	before := listFiles(t, dir)
	_, err := reprise.Open(ctx, st, reprise.Credentials{Passphrase: []byte("wrong")}, nil)
	if !errors.Is(err, reprise.ErrWrongKey) {
		t.Fatalf("open with a wrong passphrase: %v, want ErrWrongKey", err)
	}
	if !strings.Contains(err.Error(), "wrong passphrase") {
		t.Errorf("error %q does not say what is wrong", err)
	}
	if after := listFiles(t, dir); !slices.Equal(before, after) {
		t.Errorf("objects changed: %v -> %v", before, after)
	}
	r, err := reprise.Open(ctx, st, reprise.Credentials{Passphrase: []byte(testutil.Passphrase)}, nil)
	if err != nil {
		t.Fatalf("open with the right passphrase: %v", err)
	}
	r.Close()
	if _, err := reprise.Open(ctx, storage.NewMem(), reprise.Credentials{Passphrase: []byte("x")}, nil); !errors.Is(err, reprise.ErrNotInitialized) {
		t.Errorf("open of an empty backend: %v, want ErrNotInitialized", err)
	}
	if _, err := reprise.Init(ctx, st, reprise.Credentials{Passphrase: []byte("x")}, &reprise.InitOptions{Argon2: testutil.FastArgon2()}); !errors.Is(err, reprise.ErrExists) {
		t.Errorf("second init: %v, want ErrExists", err)
	}
}

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			out = append(out, fmt.Sprintf("%s:%d", p, fi.Size()))
		}
		return err
	})
	return out
}

// damagedRepo backs up several files, each large enough to land in its
// own pack, and returns the pack file holding the chunks of one of them.
func damagedRepo(t *testing.T) (ten *reprise.Tenant, r *reprise.Repository, src, victimPack string) {
	t.Helper()
	ctx := context.Background()
	r, _, dir := newFSRepo(t)
	ten = tenant(t, r, "acme")
	src = t.TempDir()
	rng := rand.New(rand.NewPCG(11, 11))
	// Backed up one at a time so that each lands in packs of its own.
	var packs []string
	for i := 0; i < 3; i++ {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), testutil.RandBytes(rng, 900<<10), 0o644)
		if _, err := backup.Dir(ctx, ten, src, nil); err != nil {
			t.Fatal(err)
		}
		before := len(packs)
		packs = newPacks(t, dir, packs)
		if i == 2 {
			// The last backup wrote one data pack (f2) and one tree pack:
			// the victim is the larger.
			victimPack = packs[before]
			for _, p := range packs[before:] {
				if size(p) > size(victimPack) {
					victimPack = p
				}
			}
		}
	}
	return ten, r, src, victimPack
}

func size(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return fi.Size()
}

func newPacks(t *testing.T, dir string, seen []string) []string {
	var all []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, string(filepath.Separator)+"p"+string(filepath.Separator)) {
			all = append(all, p)
		}
		return err
	})
	slices.Sort(all)
	for _, p := range all {
		if !slices.Contains(seen, p) {
			seen = append(seen, p)
		}
	}
	return seen
}

func objectKey(t *testing.T, r *reprise.Repository, path string) string {
	root := r.Storage().(*storage.FS).Root()
	rel, err := filepath.Rel(root, path)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.ToSlash(rel)
}

// TestDamagedObjects: a corrupted, truncated or missing pack gives a clear
// error naming the object, in restore and in check, and the files that do
// not use it still restore.
func TestDamagedObjects(t *testing.T) {
	cases := []struct {
		name   string
		damage func(path string) error
		want   error
	}{
		{"corrupt", func(p string) error {
			b, _ := os.ReadFile(p)
			b[len(b)/3] ^= 0x40
			return os.WriteFile(p, b, 0o644)
		}, reprise.ErrAuth},
		{"truncated", func(p string) error { return os.Truncate(p, 100<<10) }, reprise.ErrCorrupt},
		{"missing", os.Remove, storage.ErrNotExist},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			ten, r, src, victim := damagedRepo(t)
			key := objectKey(t, r, victim)
			if err := c.damage(victim); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "out")
			res, err := restore.Dir(ctx, ten, "latest", dst, nil)
			if !errors.Is(err, restore.ErrIncomplete) {
				t.Fatalf("restore: %v, want ErrIncomplete", err)
			}
			if !errors.Is(err, c.want) {
				t.Errorf("restore error %v does not wrap %v", err, c.want)
			}
			if !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "f2") {
				t.Errorf("restore error %q does not name the object %s and file f2", err, key)
			}
			if res.Files != 2 {
				t.Errorf("restored %d files, want the 2 undamaged ones", res.Files)
			}
			for _, f := range []string{"f0", "f1"} {
				a, _ := os.ReadFile(filepath.Join(src, f))
				b, _ := os.ReadFile(filepath.Join(dst, f))
				if !bytes.Equal(a, b) {
					t.Errorf("%s not restored intact", f)
				}
			}
			if _, err := os.Stat(filepath.Join(dst, "f2")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("damaged file f2 left in place: %v", err)
			}
			leftovers, _ := filepath.Glob(filepath.Join(dst, ".*reprise-*"))
			if len(leftovers) > 0 {
				t.Errorf("temporary files left: %v", leftovers)
			}

			rep, err := r.Check(ctx, &reprise.CheckOptions{ReadData: true})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range rep.Problems {
				t.Logf("check: %v", p)
				if p.Object == key && errors.Is(p, c.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("check did not report %s with %v; problems: %v", key, c.want, rep.Problems)
			}
		})
	}
}

// TestCheckClean: a healthy repository has no problems, with and without
// reading data.
func TestCheckClean(t *testing.T) {
	ctx := context.Background()
	r := testutil.InitRepo(t, storage.NewMem(), testutil.SmallChunks)
	for _, name := range []string{"a", "b"} {
		ten := tenant(t, r, name)
		if _, err := backup.Stream(ctx, ten, "s", strings.NewReader(""), nil); err != nil {
			t.Fatal(err)
		}
		data := testutil.RandBytes(rand.New(rand.NewPCG(2, 2)), 2<<20)
		if _, err := backup.Stream(ctx, ten, "s", bytes.NewReader(data), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, read := range []bool{false, true} {
		rep, err := r.Check(ctx, &reprise.CheckOptions{ReadData: read})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Problems) != 0 || rep.Tenants != 2 || rep.Snapshots != 4 {
			t.Errorf("readData=%v: %+v", read, rep)
		}
		if read && rep.BytesRead == 0 {
			t.Error("read-data check read nothing")
		}
	}
	names, err := r.Tenants(ctx)
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"a", "b"}) {
		t.Errorf("tenants: %v %v", names, err)
	}
}

// TestCheckSample: a sampled read-data check reads part of the packs.
func TestCheckSample(t *testing.T) {
	ctx := context.Background()
	r := testutil.InitRepo(t, storage.NewMem(), testutil.SmallChunks)
	ten := tenant(t, r, "acme")
	if _, err := backup.Stream(ctx, ten, "s", bytes.NewReader(testutil.RandBytes(rand.New(rand.NewPCG(7, 7)), 8<<20)), nil); err != nil {
		t.Fatal(err)
	}
	full, err := r.Check(ctx, &reprise.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	half, err := r.Check(ctx, &reprise.CheckOptions{ReadData: true, ReadDataPercent: 10})
	if err != nil {
		t.Fatal(err)
	}
	if full.Packs < 6 || half.BytesRead >= full.BytesRead || half.BytesRead == 0 && full.Packs > 20 {
		t.Errorf("sampled check read %d bytes, full %d (%d packs)", half.BytesRead, full.BytesRead, full.Packs)
	}
}
