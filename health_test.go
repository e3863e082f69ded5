package reprise_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/faulty"
)

// TestHealthLibreon is the Libreon case: an hourly job that silently stops
// running shows up as STALE, a failing job as FAILED, a tenant never backed
// up as NEVER — all from the records stored in the repository.
func TestHealthLibreon(t *testing.T) {
	ctx := context.Background()
	mem := storage.NewMem()
	fs := faulty.New(mem, 1)
	r := testutil.InitRepo(t, fs, testutil.SmallChunks)

	hourly := tenant(t, r, "hourly")
	for i := 0; i < 3; i++ {
		if _, err := backup.Stream(ctx, hourly, "db.sql", strings.NewReader("rows"), nil); err != nil {
			t.Fatal(err)
		}
	}
	failing := tenant(t, r, "failing")
	if _, err := backup.Stream(ctx, failing, "db.sql", strings.NewReader("rows"), nil); err != nil {
		t.Fatal(err)
	}
	// The next run of "failing" cannot write its packs: the backup fails,
	// and its failure is recorded.
	fs.SetRule(faulty.OpPut, faulty.Rule{ErrRate: 1, Err: errors.New("disk full"), KeyFilter: func(k string) bool { return strings.Contains(k, "/p/") }})
	if _, err := backup.Stream(ctx, failing, "db.sql", strings.NewReader("new rows"), nil); err == nil {
		t.Fatal("backup succeeded with failing storage")
	}
	fs.ClearRules()
	tenant(t, r, "never")

	policies := []reprise.Policy{{Tenant: "hourly", StaleAfter: 2 * time.Hour}}
	now := time.Now()
	rep, err := r.Health(ctx, &reprise.HealthOptions{Policies: policies, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]reprise.State{"hourly": reprise.StateOK, "failing": reprise.StateFailed, "never": reprise.StateNever}
	for _, s := range rep.Sources {
		if s.State != want[s.Tenant] {
			t.Errorf("%s/%s: %s, want %s (%+v)", s.Tenant, s.Source, s.State, want[s.Tenant], s)
		}
		if s.Tenant == "failing" && !strings.Contains(s.LastError, "disk full") {
			t.Errorf("failing: last error %q does not say why", s.LastError)
		}
	}
	if rep.OK || len(rep.Sources) != 3 {
		t.Errorf("report OK=%v with %d sources", rep.OK, len(rep.Sources))
	}

	// Three hours later, with no run in between: the hourly job is STALE.
	rep, err = r.Health(ctx, &reprise.HealthOptions{Policies: policies, Now: now.Add(3 * time.Hour), Tenants: []string{"hourly"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Sources) != 1 || rep.Sources[0].State != reprise.StateStale || rep.Sources[0].Age < 3*time.Hour {
		t.Fatalf("after 3 silent hours: %+v", rep.Sources)
	}
	// The history survives the machine: a fresh client sees the same runs.
	r2 := open(t, mem, pass(testutil.Passphrase))
	h2, _ := r2.OpenTenant(ctx, "hourly")
	runs, err := h2.Runs(ctx)
	if err != nil || len(runs) != 3 || !runs[2].OK || runs[2].Snapshot == "" {
		t.Fatalf("runs: %d %v", len(runs), err)
	}
}
