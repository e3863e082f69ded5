package reprise_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/multisite"
)

// Over an object store every metadata read is a round trip, so code that
// reads one object per tenant, or per run record, must read many at once:
// a thousand tenants one after the other cost a minute at 30 ms, and a
// tenant that backs up hourly keeps thousands of run records. These tests
// hold the reads in a testutil.Gate until 8 are in flight.

// TestTenantsReadsEnvelopesConcurrently lists and opens 40 tenants: each
// name is sealed in its tenant's envelope. OpenTenants reads each
// envelope once.
func TestTenantsReadsEnvelopesConcurrently(t *testing.T) {
	ctx := context.Background()
	g := &testutil.Gate{Storage: storage.NewMem(), Match: "tenants/", Want: 8}
	r := testutil.InitRepo(t, g, testutil.SmallChunks)
	var want []string
	for i := range 40 {
		name := fmt.Sprintf("customer-%02d", i)
		ten, err := r.Tenant(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		ten.Close()
		want = append(want, name)
	}
	g.Start()
	names, err := r.Tenants(ctx)
	most, _ := g.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, want) {
		t.Fatalf("Tenants = %v, want %v", names, want)
	}
	if most < g.Want {
		t.Errorf("Tenants: at most %d envelope reads in flight at once, want %d", most, g.Want)
	}

	g.Start()
	ts, err := r.OpenTenants(ctx)
	most, reads := g.Stop()
	if err != nil {
		t.Fatal(err)
	}
	var opened []string
	for _, ten := range ts {
		opened = append(opened, ten.Name())
		// The keys work: the tenant lists its (no) snapshots.
		if snaps, err := ten.Snapshots(ctx); err != nil || len(snaps) != 0 {
			t.Errorf("%s: %d snapshots, %v", ten.Name(), len(snaps), err)
		}
		ten.Close()
	}
	if !slices.Equal(opened, want) {
		t.Fatalf("OpenTenants = %v, want %v", opened, want)
	}
	if most < g.Want {
		t.Errorf("OpenTenants: at most %d envelope reads in flight at once, want %d", most, g.Want)
	}
	if reads != len(want) {
		t.Errorf("OpenTenants read %d envelopes for %d tenants", reads, len(want))
	}
}

// tinyBackups makes tenants customer-0, customer-1... of backups small
// stream backups each, all different.
func tinyBackups(t *testing.T, r *reprise.Repository, tenants, backups int) {
	t.Helper()
	ctx := context.Background()
	for i := range tenants {
		ten, err := r.Tenant(ctx, fmt.Sprint("customer-", i))
		if err != nil {
			t.Fatal(err)
		}
		for j := range backups {
			if _, err := backup.Stream(ctx, ten, "db", bytes.NewReader([]byte(fmt.Sprint(i, "-", j))), nil); err != nil {
				t.Fatal(err)
			}
		}
		ten.Close()
	}
}

// TestHealthReadsConcurrently checks one tenant with 20 run records, then
// 10 tenants of one record each: records are read many at once, and
// tenants too.
func TestHealthReadsConcurrently(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ tenants, backups int }{{1, 20}, {10, 1}} {
		g := &testutil.Gate{Storage: storage.NewMem(), Match: "/r/", Want: 8}
		r := testutil.InitRepo(t, g, testutil.SmallChunks)
		tinyBackups(t, r, c.tenants, c.backups)
		g.Start()
		rep, err := r.Health(ctx, nil)
		most, reads := g.Stop()
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Sources) != c.tenants || !rep.OK {
			t.Fatalf("%d tenants of %d backups: health %+v", c.tenants, c.backups, rep)
		}
		if reads != c.tenants*c.backups {
			t.Errorf("%d tenants of %d backups: %d run records read", c.tenants, c.backups, reads)
		}
		if most < g.Want {
			t.Errorf("%d tenants of %d backups: at most %d run records read at once, want %d", c.tenants, c.backups, most, g.Want)
		}
	}
}

// TestCheckReadsPacksConcurrently checks, reading the data, a tenant of
// 8 MiB in 1 MiB packs: the packs are read several at once.
func TestCheckReadsPacksConcurrently(t *testing.T) {
	ctx := context.Background()
	g := &testutil.Gate{Storage: storage.NewMem(), Match: "/p/", Want: 4}
	r := testutil.InitRepo(t, g, testutil.SmallChunks)
	ten, err := r.Tenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	data := testutil.RandBytes(rand.New(rand.NewPCG(9, 9)), 8<<20)
	if _, err := backup.Stream(ctx, ten, "db", bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	ten.Close()
	g.Start()
	rep, err := r.Check(ctx, &reprise.CheckOptions{ReadData: true})
	most, reads := g.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || rep.BytesRead < int64(len(data)) {
		t.Fatalf("check: %d problems, %d bytes read: %+v", len(rep.Problems), rep.BytesRead, rep.Problems)
	}
	if most < g.Want {
		t.Errorf("at most %d of %d pack reads in flight at once, want %d", most, reads, g.Want)
	}
}

// TestCheckReadsConcurrently checks one tenant of 20 snapshots, then 10
// tenants of one snapshot each: the snapshots' trees are read many at
// once, and tenants are checked many at once.
func TestCheckReadsConcurrently(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		tenants, backups int
		match            string // the reads to hold
	}{{1, 20, "/p/"}, {10, 1, "/s/"}} {
		g := &testutil.Gate{Storage: storage.NewMem(), Match: c.match, Want: 8}
		r := testutil.InitRepo(t, g, testutil.SmallChunks)
		tinyBackups(t, r, c.tenants, c.backups)
		g.Start()
		rep, err := r.Check(ctx, nil)
		most, reads := g.Stop()
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Problems) != 0 || rep.Tenants != int64(c.tenants) || rep.Snapshots != int64(c.tenants*c.backups) {
			t.Fatalf("%d tenants of %d backups: check %+v", c.tenants, c.backups, rep)
		}
		if reads < c.tenants*c.backups {
			t.Errorf("%d tenants of %d backups: %d reads of %s objects", c.tenants, c.backups, reads, c.match)
		}
		if most < g.Want {
			t.Errorf("%d tenants of %d backups: at most %d reads of %s objects at once, want %d", c.tenants, c.backups, most, c.match, g.Want)
		}
	}
}

// TestRepairReadsConcurrently repairs a two-site repository, two tenants
// of 8 MiB in 1 MiB packs, one site missing one pack of each tenant: every
// copy on every site is read and verified, several at once, and only the
// missing ones are written.
func TestRepairReadsConcurrently(t *testing.T) {
	ctx := context.Background()
	a, b := storage.NewMem(), storage.NewMem()
	g := &testutil.Gate{Storage: b, Match: "/p/", Want: 8}
	ms, err := multisite.New([]multisite.Site{{Name: "sbg", Domain: "sbg-dc", Storage: a}, {Name: "rbx", Domain: "rbx-dc", Storage: g}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := testutil.InitRepo(t, ms, testutil.SmallChunks)
	for i, name := range []string{"acme", "globex"} {
		ten, err := r.Tenant(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		data := testutil.RandBytes(rand.New(rand.NewPCG(9, uint64(i))), 8<<20)
		if _, err := backup.Stream(ctx, ten, "db", bytes.NewReader(data), nil); err != nil {
			t.Fatal(err)
		}
		ten.Close()
	}
	// One pack of each tenant goes missing on rbx.
	var lost []string
	seen := map[string]bool{}
	if err := b.List(ctx, "", func(i storage.Info) error {
		if tenantArea := strings.Join(strings.SplitN(i.Key, "/", 3)[:2], "/"); strings.Contains(i.Key, "/p/") && !seen[tenantArea] {
			seen[tenantArea] = true
			lost = append(lost, i.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range lost {
		if err := b.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if len(lost) != 2 {
		t.Fatalf("removed %d packs, want one per tenant", len(lost))
	}
	g.Start()
	rep, err := r.Repair(ctx)
	most, reads := g.Stop()
	if err != nil {
		t.Fatal(err)
	}
	var fixed []string
	for _, f := range rep.Fixed {
		if f.Site != "rbx" || f.From != "sbg" || f.Reason != "missing" {
			t.Errorf("fix %+v", f)
		}
		fixed = append(fixed, f.Object)
	}
	slices.Sort(fixed)
	slices.Sort(lost)
	if !slices.Equal(fixed, lost) || len(rep.Unrepairable) != 0 {
		t.Fatalf("repair fixed %v (unrepairable %v), want %v", fixed, rep.Unrepairable, lost)
	}
	if most < g.Want {
		t.Errorf("at most %d of %d pack reads on rbx in flight at once, want %d", most, reads, g.Want)
	}
	checkClean(t, r)
}

// TestPruneReadsTreesConcurrently prunes a tenant of 20 snapshots: prune
// walks every snapshot's tree to know the chunks in use, many at once.
func TestPruneReadsTreesConcurrently(t *testing.T) {
	ctx := context.Background()
	g := &testutil.Gate{Storage: storage.NewMem(), Match: "/p/", Want: 8}
	r := testutil.InitRepo(t, g, testutil.SmallChunks)
	tinyBackups(t, r, 1, 20)
	g.Start()
	rep, err := r.Prune(ctx, nil)
	most, reads := g.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Snapshots != 20 || rep.PacksMarked != 0 {
		t.Fatalf("prune %+v", rep)
	}
	if most < g.Want {
		t.Errorf("at most %d of %d tree reads in flight at once, want %d", most, reads, g.Want)
	}
}

// TestForgetAndPruneDeleteConcurrently forgets 19 of 20 snapshots, then
// prunes their packs away: both delete many objects at once.
func TestForgetAndPruneDeleteConcurrently(t *testing.T) {
	ctx := context.Background()
	g := &testutil.Gate{Storage: storage.NewMem(), Want: 8, Deletes: true}
	r := testutil.InitRepo(t, g, testutil.SmallChunks)
	ten, err := r.Tenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(6, 6))
	for range 20 {
		if _, err := backup.Stream(ctx, ten, "db", bytes.NewReader(testutil.RandBytes(rng, 200<<10)), nil); err != nil {
			t.Fatal(err)
		}
	}
	g.Match = "/s/"
	g.Start()
	ds, err := ten.Forget(ctx, reprise.Retention{KeepLast: 1}, nil)
	most, deletes := g.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if snaps, _ := ten.Snapshots(ctx); len(ds) != 20 || len(snaps) != 1 {
		t.Fatalf("forget: %d decisions, %d snapshots left", len(ds), len(snaps))
	}
	if most < g.Want {
		t.Errorf("forget: at most %d of %d snapshot deletes in flight at once, want %d", most, deletes, g.Want)
	}
	ten.Close()

	now := time.Now()
	if rep := mustPrune(t, r, &reprise.PruneOptions{Now: now}); rep.PacksMarked < 19 {
		t.Fatalf("prune marked %d packs", rep.PacksMarked)
	}
	g.Match = "/p/"
	g.Start()
	rep, err := r.Prune(ctx, &reprise.PruneOptions{Now: now.Add(2 * time.Hour)})
	most, deletes = g.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksDeleted < 19 {
		t.Fatalf("prune deleted %d packs", rep.PacksDeleted)
	}
	if most < g.Want {
		t.Errorf("prune: at most %d of %d pack deletes in flight at once, want %d", most, deletes, g.Want)
	}
	checkClean(t, r)
}
