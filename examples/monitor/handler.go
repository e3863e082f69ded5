package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/metrics"
)

// handlerOptions tune newHandler.
type handlerOptions struct {
	// StaleAfter is reprise.HealthOptions.StaleAfter: 0 means the
	// library's default (25h).
	StaleAfter time.Duration
	// CacheFor is how long a health report is reused (metrics.Options).
	CacheFor time.Duration
	// Logger receives scrape errors; nil discards them.
	Logger *slog.Logger
}

// newHandler serves /metrics and /healthz for r. Both read the same
// health report, cached for opts.CacheFor.
func newHandler(r *reprise.Repository, opts handlerOptions) http.Handler {
	c := metrics.NewCollector(r, &metrics.Options{
		Health:   reprise.HealthOptions{StaleAfter: opts.StaleAfter},
		CacheFor: opts.CacheFor,
		Logger:   opts.Logger,
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		rep, err := c.Report(req.Context())
		switch {
		case err != nil || rep == nil:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "cannot read the repository's health: %v\n", err)
		case rep.OK:
			fmt.Fprintln(w, "ok")
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, unhealthy(rep))
		}
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "reprise monitor: /metrics (Prometheus), /healthz (200 ok, or 503 and the sources not OK)")
	})
	return mux
}

// unhealthy lists the sources that are not OK, one a line:
// "STATE tenant source: details".
func unhealthy(rep *reprise.HealthReport) string {
	var b strings.Builder
	n := 0
	for _, s := range rep.Sources {
		if s.State != reprise.StateOK {
			n++
		}
	}
	fmt.Fprintf(&b, "%d of %d source(s) not OK\n", n, len(rep.Sources))
	for _, s := range rep.Sources {
		if s.State == reprise.StateOK {
			continue
		}
		src := s.Source
		if src == "" {
			src = "-"
		}
		fmt.Fprintf(&b, "%s tenant=%q source=%q", s.State, s.Tenant, src)
		switch {
		case s.LastSuccess.IsZero():
			b.WriteString(" never backed up successfully")
		default:
			fmt.Fprintf(&b, " last success %s ago (stale after %s)", s.Age.Round(time.Second), s.StaleAfter)
		}
		if s.LastError != "" {
			fmt.Fprintf(&b, " last error: %s", strings.ReplaceAll(s.LastError, "\n", "; "))
		}
		b.WriteByte('\n')
	}
	return b.String()
}
