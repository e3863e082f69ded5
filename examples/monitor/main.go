// Command monitor serves a Reprise repository's backup health over HTTP,
// for Prometheus and for load-balancer style health checks:
//
//	monitor --repo URL [--repo ...] [--listen 127.0.0.1:9464] [--stale-after 25h]
//
// /metrics is the Prometheus exposition of the repository's health
// (metrics.NewCollector: per tenant and source, the last successful
// backup, its age, size and duration, failures, the state, and the number
// of sources per state). /healthz answers 200 "ok" when every source of
// every tenant is OK, and 503 with the list of the others (STALE, FAILED,
// NEVER) otherwise, or when the health cannot be read.
//
// The repository is opened as the reprise command opens it: credentials
// from REPRISE_PASSWORD and/or REPRISE_KEY_URL (never flags), --repo
// repeated as NAME:DOMAIN=URL for a multi-site repository, with
// --write-quorum and --allow-single-domain. The monitor only reads (each
// scrape reads the tenants' run records, cached for --cache-for).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/reprise-backup/reprise/examples/internal/cliutil"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil)
	stop()
	os.Exit(code)
}

// repoList is the repeatable --repo flag.
type repoList []string

func (l *repoList) String() string     { return strings.Join(*l, " ") }
func (l *repoList) Set(v string) error { *l = append(*l, v); return nil }

// run runs the monitor until ctx is done and returns the exit status.
// ready, when not nil, is called with the listening address once the
// server accepts connections.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready func(addr string)) int {
	fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var repos repoList
	var listen string
	var opts handlerOptions
	var quorum int
	var single, verbose bool
	fs.Var(&repos, "repo", "repository `URL` (a directory path or a URL); repeat it, as NAME:DOMAIN=URL, for a multi-site repository")
	fs.IntVar(&quorum, "write-quorum", 0, "with several --repo: the multi-site write quorum `N` (default: all sites; the monitor writes nothing)")
	fs.BoolVar(&single, "allow-single-domain", false, "with several --repo: accept sites that all share one failure domain (tests, laptops)")
	fs.StringVar(&listen, "listen", "127.0.0.1:9464", "`address` to serve /metrics and /healthz on")
	fs.DurationVar(&opts.StaleAfter, "stale-after", 0, "a source whose last successful backup is older than this `duration` is STALE (default 25h)")
	fs.DurationVar(&opts.CacheFor, "cache-for", 30*time.Second, "reuse a health report for this `duration` between scrapes")
	fs.BoolVar(&verbose, "verbose", false, "log debug messages")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: monitor --repo URL [--repo ...] [--listen ADDR] [--stale-after DURATION]\n\n"+
			"Serves /metrics (Prometheus) and /healthz (200 ok, or 503 and the sources that are not OK)\n"+
			"for a Reprise repository. Credentials: %s and/or %s, from the environment.\n\nflags:\n",
			cliutil.PasswordEnv, cliutil.KeyURLEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "monitor: unexpected arguments %q\n", fs.Args())
		return 2
	}
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts.Logger = log
	sess, err := cliutil.Open(ctx, cliutil.Config{
		Repos: repos, WriteQuorum: quorum, AllowSingleDomain: single, Getenv: getenv,
		Logger: libraryLogger(stderr, verbose), Warn: func(msg string) { log.Warn(msg) },
	})
	if err != nil {
		fmt.Fprintf(stderr, "monitor: %v\n", err)
		if errors.Is(err, cliutil.ErrUsage) {
			return 2
		}
		return 1
	}
	defer sess.Close()
	if h := cliutil.JournalHint(ctx, sess.Multi); h != "" {
		log.Warn(h)
	}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintf(stderr, "monitor: %v\n", err)
		return 1
	}
	srv := &http.Server{Handler: newHandler(sess.Repo, opts), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	log.Info("serving /metrics and /healthz", "addr", ln.Addr().String(), "repo", cliutil.Describe(sess.Sites))
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-done:
		fmt.Fprintf(stderr, "monitor: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shut)
	return 0
}

// libraryLogger is the library's logger: its debug logs with --verbose,
// its warnings and errors only otherwise.
func libraryLogger(stderr io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}
