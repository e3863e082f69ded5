// Package cliutil holds what the example programs (the reprise command and
// the monitor) share to open a repository from a command line: the
// --repo syntax of multi-site repositories and the credentials read from
// the environment. It uses the library's public API only.
package cliutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/multisite"
)

// ErrUsage is wrapped by errors that come from a command line that does
// not make sense (a missing --repo, a malformed site, an impossible write
// quorum): commands report them as usage errors.
var ErrUsage = errors.New("usage")

type usageError struct{ err error }

func (e *usageError) Error() string        { return e.err.Error() }
func (e *usageError) Unwrap() []error      { return []error{e.err, ErrUsage} }
func usageErrorf(f string, a ...any) error { return &usageError{fmt.Errorf(f, a...)} }

// Site is one --repo value.
type Site struct {
	// Name and Domain are the site's name and failure domain: given as
	// NAME:DOMAIN=URL, or made up from the position for a plain URL
	// ("site2", in the domain "site2").
	Name, Domain string
	// URL is the storage location: a directory path or a URL.
	URL string
	// Named is true when the value was NAME:DOMAIN=URL.
	Named bool
}

func (s Site) String() string {
	if !s.Named {
		return s.URL
	}
	return s.Name + ":" + s.Domain + "=" + s.URL
}

// siteWord is what a site or domain name may be made of on the command
// line (multisite.New is stricter about site names: lower case only).
var siteWord = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// ParseSite parses one --repo value, the pos-th (from 0). A value is
// NAME:DOMAIN=URL when the part before its first '=' holds exactly one
// ':' and both sides are made of [A-Za-z0-9_.-]; anything else is a plain
// URL or path, kept whole (URLs may hold ':' and '=' themselves, as in
// s3://b/x?region=r&endpoint=http://127.0.0.1:9000).
func ParseSite(v string, pos int) (Site, error) {
	if head, rest, ok := strings.Cut(v, "="); ok && strings.Count(head, ":") == 1 {
		name, domain, _ := strings.Cut(head, ":")
		if siteWord.MatchString(name) && siteWord.MatchString(domain) {
			if rest == "" {
				return Site{}, usageErrorf("--repo %s: no URL or path after '='", v)
			}
			return Site{Name: name, Domain: domain, URL: rest, Named: true}, nil
		}
	}
	if v == "" {
		return Site{}, usageErrorf("--repo: empty value")
	}
	n := fmt.Sprintf("site%d", pos+1)
	return Site{Name: n, Domain: n, URL: v}, nil
}

// ParseSites parses every --repo value.
func ParseSites(values []string) ([]Site, error) {
	if len(values) == 0 {
		return nil, usageErrorf("--repo is required")
	}
	out := make([]Site, len(values))
	for i, v := range values {
		s, err := ParseSite(v, i)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// Describe names the repository of sites for messages.
func Describe(sites []Site) string {
	if len(sites) == 1 {
		return sites[0].URL
	}
	parts := make([]string, len(sites))
	for i, s := range sites {
		parts[i] = s.Name + " (" + s.Domain + ")"
	}
	return "sites " + strings.Join(parts, ", ")
}

// StorageOptions tune OpenStorage.
type StorageOptions struct {
	// WriteQuorum is multisite.Options.WriteQuorum: 0 means all sites.
	WriteQuorum int
	// AllowSingleDomain is multisite.Options.AllowSingleDomain.
	AllowSingleDomain bool
	// Warn receives one-line warnings (a site that cannot be opened);
	// nil discards them.
	Warn func(msg string)
	// Logger is multisite.Options.Logger; nil logs nothing.
	Logger *slog.Logger
}

// OpenStorage opens the storage of sites: with one site, that site's
// storage as is; with several, a multisite.Store over them (returned as
// the second value too). A site whose storage cannot be opened (its
// driver fails: a path under a regular file, an unreachable endpoint) is
// treated as down: it is kept in the Store, every operation on it fails,
// and the write quorum decides what still works. A malformed URL or an
// unknown scheme is an error, not a site down.
func OpenStorage(ctx context.Context, sites []Site, opts StorageOptions) (storage.Storage, *multisite.Store, error) {
	if len(sites) == 0 {
		return nil, nil, usageErrorf("--repo is required")
	}
	if len(sites) == 1 {
		if opts.WriteQuorum > 1 {
			return nil, nil, usageErrorf("--write-quorum %d needs as many sites (--repo given once)", opts.WriteQuorum)
		}
		st, err := storage.Open(ctx, sites[0].URL)
		return st, nil, err
	}
	if opts.WriteQuorum < 0 || opts.WriteQuorum > len(sites) {
		return nil, nil, usageErrorf("--write-quorum %d: want 1 to %d (the number of sites), or 0 for all", opts.WriteQuorum, len(sites))
	}
	var ms []multisite.Site
	closeAll := func() {
		for _, s := range ms {
			s.Storage.Close()
		}
	}
	down := 0
	for _, s := range sites {
		if err := checkLocation(s.URL); err != nil {
			closeAll()
			return nil, nil, usageErrorf("--repo %s: %v", s, err)
		}
		st, err := storage.Open(ctx, s.URL)
		if err != nil {
			if ctx.Err() != nil {
				closeAll()
				return nil, nil, ctx.Err()
			}
			down++
			if opts.Warn != nil {
				opts.Warn(fmt.Sprintf("site %s (%s) cannot be opened, treated as down: %v", s.Name, s.Domain, err))
			}
			st = &downStore{site: s.Name, err: err}
		}
		ms = append(ms, multisite.Site{Name: s.Name, Domain: s.Domain, Storage: st})
	}
	if down == len(sites) {
		closeAll()
		return nil, nil, errors.New("no site of the repository can be opened")
	}
	mo := &multisite.Options{WriteQuorum: opts.WriteQuorum, AllowSingleDomain: opts.AllowSingleDomain}
	mo.Logger = opts.Logger
	m, err := multisite.New(ms, mo)
	if err != nil {
		closeAll()
		msg := err.Error()
		if strings.Contains(msg, "failure domain") && strings.Contains(msg, "AllowSingleDomain") {
			msg += " (reprise: give each --repo as NAME:DOMAIN=URL with distinct domains, or pass --allow-single-domain for tests)"
		}
		return nil, nil, &usageError{errors.New(msg)}
	}
	return m, m, nil
}

// checkLocation refuses what storage.Open would refuse for the location
// itself rather than for the state of the site: a malformed URL or an
// unregistered scheme. Plain paths always pass.
func checkLocation(loc string) error {
	i := strings.Index(loc, "://")
	if i < 2 && !strings.HasPrefix(strings.ToLower(loc), "file:") {
		return nil // a path
	}
	u, err := url.Parse(loc)
	if err != nil {
		return errors.New("malformed URL")
	}
	if !slices.Contains(storage.Schemes(), strings.ToLower(u.Scheme)) {
		return fmt.Errorf("unknown URL scheme %q (registered: %s)", u.Scheme, strings.Join(storage.Schemes(), ", "))
	}
	return nil
}

// siteDownError is the error of every operation on a site that could
// not be opened. It matches storage.ErrTransient (the site is unreachable
// rather than holding bad copies, so repair leaves it for a later run)
// and deliberately not the open error's own sentinels: the filesystem
// driver reports a path under a regular file as ErrNotExist, which would
// make the site look empty instead of down.
type siteDownError struct {
	site, op, key string
	cause         string
}

func (e *siteDownError) Error() string {
	return fmt.Sprintf("site %s is down: %s %q: the site could not be opened: %s", e.site, e.op, e.key, e.cause)
}

func (e *siteDownError) Is(target error) bool { return target == storage.ErrTransient }

// downStore is a site whose storage could not be opened: every operation
// fails.
type downStore struct {
	site string
	err  error
}

func (d *downStore) fail(op, key string) error {
	return &siteDownError{site: d.site, op: op, key: key, cause: d.err.Error()}
}

func (d *downStore) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *storage.PutOptions) error {
	return d.fail("put", key)
}

func (d *downStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	return nil, d.fail("get", key)
}

func (d *downStore) Stat(ctx context.Context, key string) (storage.Info, error) {
	return storage.Info{}, d.fail("stat", key)
}

func (d *downStore) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	return d.fail("list", prefix)
}

func (d *downStore) Delete(ctx context.Context, key string) error { return d.fail("delete", key) }

func (d *downStore) Close() error { return nil }

// journalPrefix is where a multisite.Store keeps its missed-write
// journals: multisite/missed/<site>/<id> (see the package documentation
// of storage/multisite, section Writes).
const journalPrefix = multisite.ReservedPrefix + "missed/"

// PendingJournals lists the missed-write journals found on the sites of
// m: per site that missed writes, the number of journal objects naming it
// (a journal written on several sites counts once). It reads nothing but
// the listing.
func PendingJournals(ctx context.Context, m *multisite.Store) (map[string]int, error) {
	out := map[string]int{}
	err := m.List(ctx, journalPrefix, func(i storage.Info) error {
		site, _, ok := strings.Cut(strings.TrimPrefix(i.Key, journalPrefix), "/")
		if ok {
			out[site]++
		}
		return nil
	})
	return out, err
}

// JournalHint returns the one-line hint printed after opening a
// multi-site repository with pending missed-write journals, or "" when
// there are none (or they cannot be listed).
func JournalHint(ctx context.Context, m *multisite.Store) string {
	if m == nil {
		return ""
	}
	j, err := PendingJournals(ctx, m)
	if err != nil || len(j) == 0 {
		return ""
	}
	var names []string
	for s := range j {
		names = append(names, s)
	}
	slices.Sort(names)
	return fmt.Sprintf("site(s) %s missed writes (recorded in journals); run 'reprise repair' with the same --repo flags to catch them up",
		strings.Join(names, ", "))
}
