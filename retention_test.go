package reprise_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/storage"
)

// A year of hourly snapshots, thinned by a typical policy.
func TestRetentionYearOfHourly(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 30, 0, 0, time.UTC)
	var snaps []reprise.Snapshot
	for h := 0; h < 365*24; h++ {
		snaps = append(snaps, reprise.Snapshot{ID: fmt.Sprintf("%064x", h), Time: start.Add(time.Duration(h) * time.Hour)})
	}
	p := reprise.Retention{KeepHourly: 24, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12, KeepYearly: 3}
	ds := p.Decide(snaps)
	kept := 0
	for i, d := range ds {
		if i > 0 && d.Snapshot.Time.After(ds[i-1].Snapshot.Time) {
			t.Fatal("decisions not newest first")
		}
		if d.Keep {
			kept++
			if len(d.Reasons) == 0 {
				t.Errorf("%s kept without a reason", d.Snapshot.Time)
			}
		}
	}
	// 24 hours, then 6 more days, 3 more weeks, ~11 more months, 1 year
	// bucket already covered: between 40 and 48 snapshots remain.
	if kept < 40 || kept > 48 || !ds[0].Keep {
		t.Errorf("kept %d of %d (newest kept: %v)", kept, len(ds), ds[0].Keep)
	}
	if len(reprise.Retention{KeepLast: 5}.Decide(snaps)) != len(snaps) {
		t.Error("decisions lost snapshots")
	}
	within := reprise.Retention{KeepWithin: 48 * time.Hour}.Decide(snaps)
	n := 0
	for _, d := range within {
		if d.Keep {
			n++
		}
	}
	if n != 49 {
		t.Errorf("keep-within 48h kept %d, want 49", n)
	}
}

func mustPrune(t *testing.T, r *reprise.Repository, o *reprise.PruneOptions) *reprise.PruneReport {
	t.Helper()
	rep, err := r.Prune(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func repoBytes(t *testing.T, st storage.Storage) int64 {
	var n int64
	st.List(context.Background(), "t/", func(i storage.Info) error { n += i.Size; return nil })
	return n
}

// Hourly backups of several tenants, thinned by policy; prune reclaims the
// space of what no kept snapshot uses, and every kept snapshot restores.
func TestForgetAndPrune(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	r := testutil.InitRepo(t, st, testutil.SmallChunks)
	rng := rand.New(rand.NewPCG(8, 8))
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	want := map[string][]byte{} // snapshot ID -> content
	for _, name := range []string{"a", "b", "c"} {
		ten := tenant(t, r, name)
		for h := 0; h < 30; h++ {
			data := testutil.RandBytes(rng, 96<<10) // every hour a new dump
			res, err := backup.Stream(ctx, ten, "db.sql", bytes.NewReader(data), &backup.Options{Time: start.Add(time.Duration(h) * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			want[res.Snapshot.ID] = data
		}
	}
	before := repoBytes(t, st)
	policy := reprise.Retention{KeepLast: 2, KeepDaily: 2}
	kept := map[string]bool{}
	for _, name := range []string{"a", "b", "c"} {
		ten, _ := r.OpenTenant(ctx, name)
		dry, err := ten.Forget(ctx, policy, &reprise.ForgetOptions{DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if snaps, _ := ten.Snapshots(ctx); len(snaps) != 30 {
			t.Fatalf("dry run deleted snapshots: %d left", len(snaps))
		}
		ds, err := ten.Forget(ctx, policy, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range ds {
			if d.Keep != dry[i].Keep {
				t.Error("dry run and real run disagree")
			}
			if d.Keep {
				kept[d.Snapshot.ID] = true
			}
		}
	}
	if len(kept) < 9 || len(kept) > 12 {
		t.Fatalf("kept %d snapshots", len(kept))
	}
	if _, err := (&reprise.Tenant{}).Forget(ctx, reprise.Retention{}, nil); err != reprise.ErrEmptyPolicy {
		t.Errorf("empty policy: %v", err)
	}

	now := time.Now()
	mark := mustPrune(t, r, &reprise.PruneOptions{Now: now})
	if mark.PacksMarked == 0 || mark.PacksDeleted != 0 {
		t.Fatalf("first prune: %+v", mark)
	}
	if early := mustPrune(t, r, &reprise.PruneOptions{Now: now.Add(time.Minute)}); early.PacksDeleted != 0 {
		t.Fatalf("pruned before the grace period: %+v", early)
	}
	sweep := mustPrune(t, r, &reprise.PruneOptions{Now: now.Add(2 * time.Hour)})
	if sweep.PacksDeleted == 0 || sweep.BytesDeleted == 0 {
		t.Fatalf("sweep: %+v", sweep)
	}
	// Repacked packs were marked by the sweep: one more round frees them.
	mustPrune(t, r, &reprise.PruneOptions{Now: now.Add(4 * time.Hour)})
	after := repoBytes(t, st)
	t.Logf("repository data: %d bytes before, %d after prune; kept %d of 90 snapshots", before, after, len(kept))
	if float64(after) > 0.5*float64(before) {
		t.Errorf("prune reclaimed too little: %d -> %d", before, after)
	}
	for _, name := range []string{"a", "b", "c"} {
		ten, _ := r.OpenTenant(ctx, name)
		snaps, err := ten.Snapshots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snaps {
			if !kept[s.ID] {
				t.Errorf("forgotten snapshot %s still listed", s.ShortID())
			}
			if !bytes.Equal(restoreBytes(t, ten, s.ID), want[s.ID]) {
				t.Errorf("kept snapshot %s restores wrong after prune", s.ShortID())
			}
		}
	}
	checkClean(t, r)
}

// Backups and prunes running at the same time (prunes with no grace
// period at all, the worst case): every surviving snapshot restores.
func TestPruneConcurrentWithBackups(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	r := testutil.InitRepo(t, st, testutil.SmallChunks)
	ten := tenant(t, r, "acme")
	base := testutil.RandBytes(rand.New(rand.NewPCG(1, 9)), 512<<10)
	var mu sync.Mutex
	want := map[string][]byte{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for i := 0; i < 8; i++ {
				data := bytes.Clone(base) // shares most chunks with older snapshots
				copy(data[rng.IntN(len(data)-4096):], testutil.RandBytes(rng, 4096))
				res, err := backup.Stream(ctx, ten, fmt.Sprintf("w%d.sql", w), bytes.NewReader(data), nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[res.Snapshot.ID] = data
				mu.Unlock()
				// Forget all but the last two of this writer's snapshots.
				ten.Forget(ctx, reprise.Retention{KeepLast: 3}, nil)
			}
		}(w)
	}
	deleted := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			rep, err := r.Prune(ctx, &reprise.PruneOptions{Grace: time.Nanosecond})
			if err != nil {
				t.Error(err)
				return
			}
			deleted += rep.PacksDeleted
		}
	}()
	// Let the writers finish, then stop pruning.
	go func() {
		for {
			mu.Lock()
			n := len(want)
			mu.Unlock()
			if n >= 16 || t.Failed() {
				close(stop)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	wg.Wait()
	for i := 0; i < 3; i++ { // final prunes: sweep what is left
		deleted += mustPrune(t, r, &reprise.PruneOptions{Grace: time.Nanosecond}).PacksDeleted
	}
	if deleted == 0 {
		t.Error("no pack was ever deleted: the test proves nothing")
	}
	t.Logf("%d packs deleted while backups ran", deleted)
	snaps, err := ten.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) == 0 {
		t.Fatal("no snapshot survived")
	}
	for _, s := range snaps {
		if !bytes.Equal(restoreBytes(t, ten, s.ID), want[s.ID]) {
			t.Errorf("snapshot %s restores wrong", s.ShortID())
		}
	}
	checkClean(t, r)
}

// Prune removes run records older than RecordsKeep, but keeps the newest
// record and the newest successful one of each kind and source, so health
// still knows when every source last ran and last succeeded.
func TestPruneRecords(t *testing.T) {
	ctx := context.Background()
	r := testutil.InitRepo(t, storage.NewMem(), testutil.SmallChunks)
	ten := tenant(t, r, "acme")
	rng := rand.New(rand.NewPCG(3, 3))
	var last string
	for i := 0; i < 5; i++ {
		res, err := backup.Stream(ctx, ten, "db.sql", bytes.NewReader(testutil.RandBytes(rng, 20<<10)), nil)
		if err != nil {
			t.Fatal(err)
		}
		last = res.Snapshot.ID
	}
	if _, err := backup.Stream(ctx, ten, "other.sql", bytes.NewReader(testutil.RandBytes(rng, 20<<10)), nil); err != nil {
		t.Fatal(err)
	}
	restoreBytes(t, ten, last)
	runs := func() int {
		rs, err := ten.Runs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(rs)
	}
	before := runs() // 6 backups, 1 restore, and the records of the prunes below
	if rep := mustPrune(t, r, &reprise.PruneOptions{}); rep.RecordsRemoved != 0 {
		t.Fatalf("fresh records removed: %d", rep.RecordsRemoved)
	}
	// 100 days later, everything is past the 90 days kept by default.
	rep := mustPrune(t, r, &reprise.PruneOptions{Now: time.Now().Add(100 * 24 * time.Hour)})
	if rep.RecordsRemoved != 4 {
		t.Errorf("removed %d records, want 4 (the 4 older backups of db.sql)", rep.RecordsRemoved)
	}
	if got := runs(); got != before-4 {
		t.Errorf("%d records left, want %d", got, before-4)
	}
	h, err := r.Health(ctx, &reprise.HealthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range h.Sources {
		if s.LastSuccess.IsZero() || s.State != reprise.StateOK {
			t.Errorf("after pruning records, %s/%s: state %v, last success %v", s.Tenant, s.Source, s.State, s.LastSuccess)
		}
		if s.Source == "db.sql" && s.Snapshot != last {
			t.Errorf("db.sql's last snapshot %s, want %s", s.Snapshot, last)
		}
	}
	if rep := mustPrune(t, r, &reprise.PruneOptions{Now: time.Now().Add(100 * 24 * time.Hour), RecordsKeep: -1}); rep.RecordsRemoved != 0 {
		t.Errorf("RecordsKeep -1 removed %d records", rep.RecordsRemoved)
	}
}
