package restore_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
)

func TestDrill(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, _ := storage.NewFS(dir, nil)
	r := testutil.InitRepo(t, st, testutil.SmallChunks)
	ten, _ := r.Tenant(ctx, "acme")
	src := t.TempDir()
	n := testutil.WriteRandomTree(t, src, rand.New(rand.NewPCG(1, 1)), 40, 200<<10)
	res, err := backup.Dir(ctx, ten, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := restore.Drill(ctx, ten, "latest", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Files != int64(n) || d.Bytes != res.BytesRead {
		t.Errorf("drill verified %d files/%d bytes, backup had %d/%d", d.Files, d.Bytes, n, res.BytesRead)
	}
	for _, st := range []string{"fetch", "decrypt", "decompress", "verify"} {
		if d.Stages[st] <= 0 {
			t.Errorf("stage %s not timed: %v", st, d.Stages)
		}
	}
	runs, _ := ten.Runs(ctx)
	last := runs[len(runs)-1]
	if last.Kind != "drill" || !last.OK || last.Stages["decrypt"] <= 0 || last.Stages["total"] <= 0 {
		t.Errorf("drill record: %+v", last)
	}

	// Corrupt every pack: the drill reports the failing files, and records it.
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && filepath.Base(filepath.Dir(filepath.Dir(p))) == "p" {
			b, _ := os.ReadFile(p)
			b[0] ^= 1
			os.WriteFile(p, b, 0o600)
		}
		return err
	})
	d, err = restore.Drill(ctx, ten, "latest", &restore.DrillOptions{SamplePercent: 100})
	if !errors.Is(err, restore.ErrIncomplete) && !errors.Is(err, reprise.ErrAuth) {
		t.Fatalf("drill over corrupt packs: %v", err)
	}
	runs, _ = ten.Runs(ctx)
	if last := runs[len(runs)-1]; last.Kind != "drill" || last.OK || last.Error == "" {
		t.Errorf("failed drill record: %+v", last)
	}
}
