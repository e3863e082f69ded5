package reprise_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/faulty"
	"github.com/reprise-backup/reprise/storage/multisite"
)

type siteDirs struct {
	dirs  []string
	fault *faulty.Store // wraps the last site
}

// threeSites builds a multi-site storage over three local directories in
// three failure domains; the third site goes through a fault injector.
func threeSites(t *testing.T, quorum int, dirs []string) (*multisite.Store, *siteDirs) {
	t.Helper()
	if dirs == nil {
		base := t.TempDir()
		for _, n := range []string{"sbg", "rbx", "gra"} {
			dirs = append(dirs, filepath.Join(base, n))
		}
	}
	sd := &siteDirs{dirs: dirs}
	var sites []multisite.Site
	for i, n := range []string{"sbg", "rbx", "gra"} {
		fs, err := storage.NewFS(dirs[i], &storage.FSOptions{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		var st storage.Storage = fs
		if i == 2 {
			sd.fault = faulty.New(fs, 7)
			st = sd.fault
		}
		sites = append(sites, multisite.Site{Name: n, Domain: n + "-dc", Storage: st})
	}
	ms, err := multisite.New(sites, &multisite.Options{WriteQuorum: quorum})
	if err != nil {
		t.Fatal(err)
	}
	return ms, sd
}

func msBackup(t *testing.T, ms *multisite.Store) (r *reprise.Repository, ten *reprise.Tenant, src string, res *backup.Result) {
	t.Helper()
	r = testutil.InitRepo(t, ms, testutil.SmallChunks)
	ten = tenant(t, r, "acme")
	src = t.TempDir()
	testutil.WriteRandomTree(t, src, rand.New(rand.NewPCG(21, 21)), 50, 400<<10)
	res, err := backup.Dir(context.Background(), ten, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, ten, src, res
}

func restoreAndCompare(t *testing.T, ten *reprise.Tenant, src string) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := restore.Dir(context.Background(), ten, "latest", dst, nil); err != nil {
		t.Fatalf("restore: %v", err)
	}
	testutil.CompareTrees(t, src, dst)
}

func checkClean(t *testing.T, r *reprise.Repository) {
	t.Helper()
	rep, err := r.Check(context.Background(), &reprise.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Errorf("check: %v", p)
	}
}

// Drill 1: a site burns (its directory is deleted). Every snapshot restores
// from the others; repair brings redundancy back.
func TestDrillSiteDestroyed(t *testing.T) {
	ctx := context.Background()
	ms, sd := threeSites(t, 0, nil)
	r, ten, src, _ := msBackup(t, ms)
	if err := os.RemoveAll(sd.dirs[0]); err != nil {
		t.Fatal(err)
	}
	restoreAndCompare(t, ten, src)
	rep, err := r.Check(ctx, &reprise.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	missingOnSbg := 0
	for _, p := range rep.Problems {
		if p.Site == "sbg" && errors.Is(p, reprise.ErrBadCopy) {
			missingOnSbg++
		}
	}
	if missingOnSbg == 0 {
		t.Errorf("check does not report the burnt site: %v", rep.Problems)
	}
	fix, err := r.Repair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fix.Fixed) == 0 || len(fix.Unrepairable) != 0 {
		t.Fatalf("repair: %d fixed, unrepairable %v", len(fix.Fixed), fix.Unrepairable)
	}
	for _, f := range fix.Fixed {
		if f.Site != "sbg" {
			t.Errorf("repair touched site %s: %+v", f.Site, f)
		}
	}
	again, err := r.Repair(ctx)
	if err != nil || len(again.Fixed) != 0 {
		t.Errorf("second repair changed %d objects (%v)", len(again.Fixed), err)
	}
	checkClean(t, r)
	// The repaired site alone holds everything: open it by itself.
	alone, _ := storage.NewFS(sd.dirs[0], nil)
	r1 := open(t, alone, pass(testutil.Passphrase))
	t1, err := r1.OpenTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	restoreAndCompare(t, t1, src)
}

// Drill 2: a site silently corrupts a share of its objects. Restores
// succeed, check names the bad copies, repair fixes them.
func TestDrillSiteCorrupts(t *testing.T) {
	ctx := context.Background()
	ms, sd := threeSites(t, 0, nil)
	r, ten, src, _ := msBackup(t, ms)
	// At rest: every other object of site rbx gets a flipped bit.
	var damaged []string
	i := 0
	filepath.WalkDir(filepath.Join(sd.dirs[1], "t"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if i++; i%2 == 0 {
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0x08
			os.WriteFile(p, b, 0o600)
			rel, _ := filepath.Rel(sd.dirs[1], p)
			damaged = append(damaged, filepath.ToSlash(rel))
		}
		return nil
	})
	if len(damaged) < 3 {
		t.Fatalf("damaged only %d objects", len(damaged))
	}
	// In flight: site gra flips bits in a third of what it returns.
	sd.fault.SetRule(faulty.OpGet, faulty.Rule{FlipRate: 0.3})
	restoreAndCompare(t, ten, src)
	sd.fault.ClearRules()

	rep, err := r.Check(ctx, &reprise.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, p := range rep.Problems {
		if p.Site != "rbx" {
			t.Errorf("problem on a healthy site: %v", p)
		}
		named[p.Object] = true
	}
	for _, k := range damaged {
		if !named[k] {
			t.Errorf("check did not name damaged copy %s on rbx", k)
		}
	}
	fix, err := r.Repair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	onRbx := 0
	for _, f := range fix.Fixed {
		switch f.Site {
		case "rbx":
			onRbx++
		case "gra": // copies reported bad by the in-flight flips are rewritten too
		default:
			t.Errorf("repair touched a healthy site: %+v", f)
		}
	}
	if onRbx != len(damaged) {
		t.Errorf("repair fixed %d copies on rbx, %d were damaged", onRbx, len(damaged))
	}
	checkClean(t, r)
}

// Drill 3: a site is down during a backup. Under a quorum of 2 the backup
// succeeds and says it is under-replicated; repair completes it.
func TestDrillSiteDownDuringBackup(t *testing.T) {
	ctx := context.Background()
	ms, sd := threeSites(t, 2, nil)
	r := testutil.InitRepo(t, ms, testutil.SmallChunks)
	ten := tenant(t, r, "acme")
	sd.fault.Down(true)
	data := testutil.RandBytes(rand.New(rand.NewPCG(3, 3)), 3<<20)
	res, err := backup.Stream(ctx, ten, "db.sql", bytes.NewReader(data), nil)
	if err != nil {
		t.Fatalf("backup with one site down: %v", err)
	}
	if res.UnderReplicated == 0 {
		t.Error("backup with a site down not reported as under-replicated")
	}
	if !bytes.Equal(restoreBytes(t, ten, res.Snapshot.ID), data) {
		t.Fatal("restore with a site down differs")
	}
	sd.fault.Down(false)
	fix, err := r.Repair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	toGra := 0
	for _, f := range fix.Fixed {
		if f.Site == "gra" {
			toGra++
		}
	}
	if toGra == 0 || len(fix.Unrepairable) > 0 {
		t.Fatalf("repair: %d copies to gra, unrepairable %v", toGra, fix.Unrepairable)
	}
	checkClean(t, r)

	// With quorum all, the same outage fails the backup, naming the site.
	ms2, sd2 := threeSites(t, 0, nil)
	r2 := testutil.InitRepo(t, ms2, testutil.SmallChunks)
	t2 := tenant(t, r2, "acme")
	sd2.fault.Down(true)
	_, err = backup.Stream(ctx, t2, "db.sql", bytes.NewReader(data), nil)
	if err == nil || !strings.Contains(err.Error(), "gra") {
		t.Fatalf("backup under quorum all with a site down: %v", err)
	}
}

// A repository whose sites share one failure domain is refused.
func TestSingleDomainRefused(t *testing.T) {
	var sites []multisite.Site
	for _, n := range []string{"a", "b"} {
		sites = append(sites, multisite.Site{Name: n, Domain: "same-building", Storage: storage.NewMem()})
	}
	_, err := multisite.New(sites, nil)
	if err == nil || !strings.Contains(err.Error(), "domain") {
		t.Fatalf("single-domain sites: %v", err)
	}
	if _, err := multisite.New(sites, &multisite.Options{AllowSingleDomain: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := testutil.InitRepo(t, storage.NewMem(), testutil.SmallChunks).Repair(context.Background()); !errors.Is(err, reprise.ErrSingleSite) {
		t.Errorf("repair of a single site: %v", err)
	}
}

// putRecorder notes, for every key put, whether the put asked for
// retention.
type putRecorder struct {
	storage.Storage
	mu       sync.Mutex
	retained map[string]bool
}

func (p *putRecorder) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *storage.PutOptions) error {
	p.mu.Lock()
	if p.retained == nil {
		p.retained = map[string]bool{}
	}
	p.retained[key] = opts != nil && opts.Retain
	p.mu.Unlock()
	return p.Storage.Put(ctx, key, r, size, opts)
}

// TestRebuiltSiteCopiesRetained: a site wiped and rebuilt by repair gets
// its copies of packs, indexes, snapshots and run records with retention
// (S3 Object Lock), as the originals were put, and its copies of key
// material and coordination objects without, so that crypto-shredding
// still works on it.
func TestRebuiltSiteCopiesRetained(t *testing.T) {
	ctx := context.Background()
	rbx := &putRecorder{Storage: storage.NewMem()}
	ms, err := multisite.New([]multisite.Site{
		{Name: "sbg", Domain: "sbg-dc", Storage: storage.NewMem()},
		{Name: "rbx", Domain: "rbx-dc", Storage: rbx},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := testutil.InitRepo(t, ms, testutil.SmallChunks)
	ten := tenant(t, r, "acme")
	if _, err := backup.Stream(ctx, ten, "db", bytes.NewReader(testutil.RandBytes(rand.New(rand.NewPCG(3, 3)), 3<<20)), nil); err != nil {
		t.Fatal(err)
	}
	// Written by the backup: with retention exactly where the original
	// write asked for it.
	isData := func(k string) bool {
		p := strings.Split(k, "/")
		return len(p) > 3 && p[0] == "t" && strings.Contains("pisr", p[2]) && len(p[2]) == 1
	}
	rbx.mu.Lock()
	for k, ret := range rbx.retained {
		if ret != isData(k) {
			t.Errorf("backup put %s with retention %v", k, ret)
		}
	}
	rbx.retained = nil
	rbx.mu.Unlock()

	// The site burns and is rebuilt empty.
	var keys []string
	if err := rbx.List(ctx, "", func(i storage.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := rbx.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	data, other := 0, 0
	for k, ret := range rbx.retained {
		if ret != isData(k) {
			t.Errorf("repair copied %s with retention %v", k, ret)
		}
		if isData(k) {
			data++
		} else {
			other++
		}
	}
	if data == 0 || other == 0 || data+other != len(keys) {
		t.Errorf("repair copied %d data objects and %d others; the site held %d", data, other, len(keys))
	}
	checkClean(t, r)
}
