package metrics_test

import (
	"context"
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
