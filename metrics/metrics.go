// Package metrics exports a repository's backup health to Prometheus: per
// tenant and source, the time and figures of the last successful backup,
// the failures, the state, and the number of stale or failed sources.
//
// Tenant names and sources become label values. They reach the operator's
// monitoring system, never the storage backend; deployments that must not
// expose tenant names to monitoring can map them first (Options.Label).
package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reprise-backup/reprise"
)

// Options tune a Collector. The zero value is usable.
type Options struct {
	// Health is passed to Repository.Health on every scrape.
	Health reprise.HealthOptions
	// Timeout bounds one scrape's reading of the repository; 0 means 30s.
	Timeout time.Duration
	// CacheFor reuses a report for this long, so frequent scrapes do not
	// read the repository each time; 0 means 30s.
	CacheFor time.Duration
	// Label maps a tenant name to the label value exported; nil exports
	// the name as is.
	Label func(tenant string) string
	// Logger receives scrape errors; nil discards them.
	Logger *slog.Logger
}

// Collector is a prometheus.Collector over a repository's health.
type Collector struct {
	repo *reprise.Repository
	opts Options

	mu     sync.Mutex
	cached *reprise.HealthReport
	at     time.Time
	err    error

	lastSuccess, age, duration, bytesRead, bytesAdded, dedup, runs, failures, state *prometheus.Desc
	sources, scrapeOK, checkProblems                                                *prometheus.Desc
}

// NewCollector returns a collector reading r's health on each scrape.
func NewCollector(r *reprise.Repository, opts *Options) *Collector {
	c := &Collector{repo: r}
	if opts != nil {
		c.opts = *opts
	}
	if c.opts.Timeout <= 0 {
		c.opts.Timeout = 30 * time.Second
	}
	if c.opts.CacheFor <= 0 {
		c.opts.CacheFor = 30 * time.Second
	}
	if c.opts.Logger == nil {
		c.opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := []string{"tenant", "source"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("reprise_"+name, help, labels, nil)
	}
	c.lastSuccess = d("backup_last_success_timestamp_seconds", "Unix time of the last successful backup.", l...)
	c.age = d("backup_age_seconds", "Seconds since the last successful backup.", l...)
	c.duration = d("backup_last_duration_seconds", "Duration of the last successful backup.", l...)
	c.bytesRead = d("backup_last_bytes_read", "Bytes read by the last successful backup.", l...)
	c.bytesAdded = d("backup_last_bytes_added", "Bytes written to the repository by the last successful backup.", l...)
	c.dedup = d("backup_last_dedup_ratio", "Bytes read per byte added by the last successful backup.", l...)
	c.runs = d("backup_runs", "Backup runs recorded.", l...)
	c.failures = d("backup_failures", "Failed backup runs recorded.", l...)
	c.state = d("backup_state", "1 for the source's current state (OK, STALE, FAILED, NEVER), 0 for the others.", "tenant", "source", "state")
	c.sources = d("sources", "Backup sources by state.", "state")
	c.checkProblems = d("check_problems", "Problems (missing or corrupt objects) found by the tenant's most recent check.", "tenant")
	c.scrapeOK = d("health_scrape_success", "1 if the repository's health could be read.")
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lastSuccess, c.age, c.duration, c.bytesRead, c.bytesAdded, c.dedup,
		c.runs, c.failures, c.state, c.sources, c.scrapeOK, c.checkProblems} {
		ch <- d
	}
}

// Report returns the current health report, cached for Options.CacheFor.
func (c *Collector) Report(ctx context.Context) (*reprise.HealthReport, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached != nil && time.Since(c.at) < c.opts.CacheFor {
		return c.cached, c.err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	h := c.opts.Health
	c.cached, c.err = c.repo.Health(ctx, &h)
	c.at = time.Now()
	if c.err != nil {
		c.opts.Logger.Error("reading repository health", "err", c.err)
	}
	return c.cached, c.err
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	rep, err := c.Report(context.Background())
	if err != nil || rep == nil {
		ch <- prometheus.MustNewConstMetric(c.scrapeOK, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeOK, prometheus.GaugeValue, 1)
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	checked := map[string]bool{}
	for _, s := range rep.Sources {
		tenant := s.Tenant
		if c.opts.Label != nil {
			tenant = c.opts.Label(tenant)
		}
		if s.CheckProblems >= 0 && !checked[tenant] {
			checked[tenant] = true
			g(c.checkProblems, float64(s.CheckProblems), tenant)
		}
		for _, st := range []reprise.State{reprise.StateOK, reprise.StateStale, reprise.StateFailed, reprise.StateNever} {
			v := 0.0
			if s.State == st {
				v = 1
			}
			g(c.state, v, tenant, s.Source, string(st))
		}
		g(c.runs, float64(s.Runs), tenant, s.Source)
		g(c.failures, float64(s.Failures), tenant, s.Source)
		if s.LastSuccess.IsZero() {
			continue
		}
		g(c.lastSuccess, float64(s.LastSuccess.UnixNano())/1e9, tenant, s.Source)
		g(c.age, s.Age.Seconds(), tenant, s.Source)
		g(c.duration, s.Duration.Seconds(), tenant, s.Source)
		g(c.bytesRead, float64(s.BytesRead), tenant, s.Source)
		g(c.bytesAdded, float64(s.BytesAdded), tenant, s.Source)
		if s.BytesAdded > 0 {
			g(c.dedup, float64(s.BytesRead)/float64(s.BytesAdded), tenant, s.Source)
		}
	}
	for _, st := range []reprise.State{reprise.StateOK, reprise.StateStale, reprise.StateFailed, reprise.StateNever} {
		g(c.sources, float64(rep.Counts[st]), string(st))
	}
}
