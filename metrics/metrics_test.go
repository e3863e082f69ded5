package metrics_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	rtest "github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/metrics"
	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/faulty"
)

func TestCollector(t *testing.T) {
	ctx := context.Background()
	r := rtest.InitRepo(t, storage.NewMem(), rtest.SmallChunks)
	for _, name := range []string{"fresh", "old"} {
		ten, err := r.Tenant(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := backup.Stream(ctx, ten, "db.sql", strings.NewReader(strings.Repeat("row\n", 1000)), nil); err != nil {
			t.Fatal(err)
		}
	}
	r.Tenant(ctx, "never")
	c := metrics.NewCollector(r, &metrics.Options{Health: reprise.HealthOptions{
		Policies: []reprise.Policy{{Tenant: "old", StaleAfter: time.Nanosecond}}}})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	want := `
# HELP reprise_sources Backup sources by state.
# TYPE reprise_sources gauge
reprise_sources{state="FAILED"} 0
reprise_sources{state="NEVER"} 1
reprise_sources{state="OK"} 1
reprise_sources{state="STALE"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "reprise_sources"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c, "reprise_backup_last_bytes_read"); n != 2 {
		t.Errorf("%d last_bytes_read series, want 2", n)
	}
	if v := testutil.ToFloat64(prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		c.Collect(filter(ch, `reprise_health_scrape_success`))
	})); v != 1 {
		t.Errorf("scrape success %v", v)
	}
}

// filter forwards only metrics whose description names name.
func filter(out chan<- prometheus.Metric, name string) chan<- prometheus.Metric {
	in := make(chan prometheus.Metric)
	go func() {
		for m := range in {
			if strings.Contains(m.Desc().String(), `"`+name+`"`) {
				out <- m
			}
		}
	}()
	return in
}

// A failing job, a corrupt pack and a missing pack each show in the
// metrics (after a check, for the packs).
func TestCollectorFailuresAndDamage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fs, _ := storage.NewFS(dir, nil)
	fst := faulty.New(fs, 1)
	r := rtest.InitRepo(t, fst, rtest.SmallChunks)
	packsOf := func() []string {
		var ps []string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && filepath.Base(filepath.Dir(filepath.Dir(p))) == "p" {
				ps = append(ps, p)
			}
			return err
		})
		return ps
	}
	for _, name := range []string{"corrupt", "missing"} {
		ten, _ := r.Tenant(ctx, name)
		before := len(packsOf())
		if _, err := backup.Stream(ctx, ten, "db.sql", bytes.NewReader(rtest.RandBytes(rand.New(rand.NewPCG(1, 2)), 300<<10)), nil); err != nil {
			t.Fatal(err)
		}
		ps := packsOf()
		if len(ps) <= before {
			t.Fatal("no new pack")
		}
	}
	failing, _ := r.Tenant(ctx, "failing")
	fst.SetRule(faulty.OpPut, faulty.Rule{ErrRate: 1, KeyFilter: func(k string) bool { return strings.Contains(k, "/p/") }})
	if _, err := backup.Stream(ctx, failing, "db.sql", strings.NewReader(strings.Repeat("x", 100000)), nil); err == nil {
		t.Fatal("backup succeeded on failing storage")
	}
	fst.ClearRules()
	// Damage: flip a byte in one tenant's pack, delete the other's.
	var byTenant [][]string
	entries, _ := os.ReadDir(filepath.Join(dir, "t"))
	for _, e := range entries {
		var ps []string
		filepath.WalkDir(filepath.Join(dir, "t", e.Name(), "p"), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				ps = append(ps, p)
			}
			return nil
		})
		if len(ps) > 0 {
			byTenant = append(byTenant, ps)
		}
	}
	if len(byTenant) != 2 {
		t.Fatalf("%d tenants with packs", len(byTenant))
	}
	b, _ := os.ReadFile(byTenant[0][0])
	b[len(b)/2] ^= 1
	os.WriteFile(byTenant[0][0], b, 0o600)
	os.Remove(byTenant[1][0])
	if _, err := r.Check(ctx, &reprise.CheckOptions{ReadData: true}); err != nil {
		t.Fatal(err)
	}
	c := metrics.NewCollector(r, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	damaged, failed := 0, 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "reprise_check_problems":
				if m.GetGauge().GetValue() > 0 {
					damaged++
				}
			case "reprise_backup_state":
				for _, l := range m.GetLabel() {
					if l.GetName() == "state" && l.GetValue() == "FAILED" && m.GetGauge().GetValue() == 1 {
						failed++
					}
				}
			}
		}
	}
	if damaged != 2 || failed != 1 {
		t.Errorf("metrics show %d damaged tenants (want 2: corrupt and missing pack) and %d failed sources (want 1)", damaged, failed)
	}
}
