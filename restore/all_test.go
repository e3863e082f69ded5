package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/faulty"
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
	// Interrupted: a few files missing, one truncated, one altered.
	var files []string
	filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	if len(files) < 6 {
		t.Fatalf("only %d files", len(files))
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
	if rr.Verified < int64(len(files)-4) || rr.Files != res.Files {
		t.Errorf("resume: %d verified in place, %d files (want >= %d, %d)", rr.Verified, rr.Files, len(files)-4, res.Files)
	}
	if rr.Bytes >= res.BytesRead {
		t.Errorf("resume fetched %d bytes: everything again (%d)", rr.Bytes, res.BytesRead)
	}
	testutil.CompareTrees(t, src, dst)
}
