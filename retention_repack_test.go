package reprise_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
)

// gateReader blocks its first Read until release is closed, after
// signalling started: the backup reading it has taken its lease and
// loaded its index by then.
type gateReader struct {
	started, release chan struct{}
	r                io.Reader
	once             bool
}

func (g *gateReader) Read(p []byte) (int, error) {
	if !g.once {
		g.once = true
		close(g.started)
		<-g.release
	}
	return g.r.Read(p)
}

// A prune repacks a pack while a backup that loaded the index before it
// runs, and that backup deduplicates against a chunk of the pack that was
// dead (so not copied by the repack): the pack must stay indexed and be
// kept by the sweep, and the backup's snapshot must restore. (Found by
// the year-long retention simulation's author; the repack used to drop
// the pack from the index at once.)
func TestRepackWhileBackupRuns(t *testing.T) {
	// One sealer (a writer has GOMAXPROCS of them), so that which chunks
	// share a pack does not depend on scheduling: with two, a loaded
	// machine sometimes put x's dead chunks in packs of their own, which
	// the prune then marked whole instead of repacking (2 runs in 30).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ctx := context.Background()
	st := storage.NewMem()
	r := testutil.InitRepo(t, st, testutil.SmallChunks)
	ten := tenant(t, r, "acme")
	rng := rand.New(rand.NewPCG(5, 5))
	x := testutil.RandBytes(rng, 200<<10)
	y := append(bytes.Clone(x[:40<<10]), testutil.RandBytes(rng, 160<<10)...)
	t0 := time.Now().Add(-time.Hour)
	if _, err := backup.Stream(ctx, ten, "db", bytes.NewReader(x), &backup.Options{Time: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Stream(ctx, ten, "db", bytes.NewReader(y), &backup.Options{Time: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ten.Forget(ctx, reprise.Retention{KeepLast: 1}, nil); err != nil {
		t.Fatal(err)
	}
	g := &gateReader{started: make(chan struct{}), release: make(chan struct{}), r: bytes.NewReader(x)}
	done := make(chan *backup.Result, 1)
	go func() {
		res, err := backup.Stream(ctx, ten, "db", g, nil)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	<-g.started // C has its lease and its index
	rep, err := r.Prune(ctx, &reprise.PruneOptions{Grace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prune while C runs: %+v", rep)
	if rep.PacksRepacked == 0 {
		t.Fatal("the prune repacked nothing: the test proves nothing")
	}
	close(g.release)
	res := <-done
	if res == nil {
		t.FailNow()
	}
	t.Logf("C: new chunks %d of %d", res.NewChunks, res.Chunks)
	ck, _ := r.Check(ctx, nil)
	for _, p := range ck.Problems {
		t.Errorf("check after C: %v", p)
	}
	for i := 0; i < 2; i++ {
		rep, err = r.Prune(ctx, &reprise.PruneOptions{Grace: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("prune after C: %+v", rep)
	}
	var out bytes.Buffer
	if _, err := restore.Stream(ctx, ten, res.Snapshot.ID, &out, nil); err != nil {
		t.Errorf("restore C: %v", err)
	} else if !bytes.Equal(out.Bytes(), x) {
		t.Error("C restores wrong")
	}
}
