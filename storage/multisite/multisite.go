package multisite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reprise-backup/reprise/storage"
)

// Site is one copy of the repository.
type Site struct {
	// Name identifies the site, e.g. "sbg1". Names are unique within a
	// Store and made of the characters of a storage key segment
	// ([a-z0-9._-], not starting with a dot): they appear in the keys of
	// the missed-write journal.
	Name string
	// Domain is the failure domain of the site: a building, a region or a
	// provider, e.g. "strasbourg". Two sites that one fire, flood, power
	// cut or bankrupt provider can take down together share a domain.
	Domain string
	// Storage holds the site's objects. The Store owns it from New on and
	// closes it in Close.
	Storage storage.Storage
}

// Options tunes [New]. The zero value (or nil) writes to every site and
// requires distinct failure domains.
type Options struct {
	// WriteQuorum: an object counts as durable when this many sites hold
	// it. 0 = all sites.
	WriteQuorum int
	// MinDomains: an object counts as durable only when the sites holding
	// it span at least this many failure domains. 0 = the smaller of 2,
	// WriteQuorum and the number of distinct domains, so that by default
	// an acknowledged write survives the loss of any one domain.
	MinDomains int
	// AllowSingleDomain permits sites that all share one failure domain
	// (tests, laptops). Without it New refuses such a configuration with
	// an error explaining the risk (one fire takes every copy).
	AllowSingleDomain bool
	// SlowSiteGrace bounds how long a write waits for slow sites once it
	// is durable (WriteQuorum sites over MinDomains domains): the sites
	// still writing after that are cancelled and recorded as missed
	// writes. 0 waits for every site, bounded only by the caller's
	// context.
	SlowSiteGrace time.Duration
	// Logger receives site state changes (failing, answering again),
	// under-replicated writes (a warning for the first write a site misses
	// after it last took one, then for every thousandth), withdrawn
	// create-only copies and catch-up copies. Nil logs nothing.
	Logger *slog.Logger
}

// ErrQuorum is wrapped by the error of a put that reached fewer sites (or
// fewer failure domains) than the write quorum requires. The error names
// each failed site and, for a plain put, also wraps its error, so that
// errors.Is(err, storage.ErrTransient) holds when a site failed
// transiently. (A create-only put short of the quorum keeps its copies, so
// a retry would report ErrExist: its error carries the sites' errors as
// text only, and is not transient.)
var ErrQuorum = errors.New("multisite: write quorum not reached")

// ReservedPrefix starts the keys of the Store's own bookkeeping objects
// (the missed-write journal). The Store refuses to write or delete keys
// under it and hides them from List unless the listed prefix starts with
// it.
const ReservedPrefix = "multisite/"

// journalPrefix starts the keys of missed-write journal objects:
// journalPrefix + site name + "/" + id.
const journalPrefix = ReservedPrefix + "missed/"

// maxMarks bounds the missed-write marks and bad copies kept in memory;
// beyond it new ones are only journaled (and counted in
// Stats.DroppedMarks).
const maxMarks = 1 << 20

// journalTimeout bounds the writing of a journal object, which goes on
// even when the caller's context is cancelled: the record of what a site
// missed must not be lost with the caller's patience.
const journalTimeout = 30 * time.Second

// Store is a [storage.Storage] keeping a copy of every object on each of
// several sites. See the package documentation for what it guarantees.
// Its methods are safe for concurrent use.
type Store struct {
	sites      []*site
	quorum     int
	minDomains int
	grace      time.Duration
	log        *slog.Logger

	pinOrder  bool          // tests: ignore latency in readOrder
	claimWait time.Duration // see create

	ndel   atomic.Int64                          // delete marks in missed
	retain atomic.Pointer[func(key string) bool] // see RetainCopies

	mu     sync.Mutex
	missed []map[string]mark // per site: key -> what it missed
	bad    map[siteKey]BadCopy
	gen    uint64
	stats  Stats
	nmarks int
}

var (
	_ storage.Storage    = (*Store)(nil)
	_ storage.Replicated = (*Store)(nil)
)

// The operations a site can miss, as recorded in marks and journals.
const (
	opPut     = "put"     // the site missed a put
	opDelete  = "delete"  // the site missed a delete
	opReplace = "replace" // the site holds a wrong copy, whatever its size
)

// mark records that a site missed an operation on a key.
type mark struct {
	op  string // opPut, opDelete or opReplace
	gen uint64 // to tell a mark renewed during a catch-up
}

type siteKey struct {
	site int
	key  string
}

// New returns a Store over sites. It checks the configuration: at least
// one site, unique valid names, a storage and a domain for each, a write
// quorum between 1 and len(sites), and failure domains: sites that all
// share one domain are refused unless opts.AllowSingleDomain is set.
// opts may be nil.
func New(sites []Site, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if len(sites) == 0 {
		return nil, errors.New("multisite: no site given")
	}
	s := &Store{log: o.Logger, grace: o.SlowSiteGrace, claimWait: defaultClaimWait}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	names := map[string]bool{}
	domains := map[string]bool{}
	for i, in := range sites {
		switch {
		case !storage.ValidKey(in.Name) || strings.Contains(in.Name, "/"):
			return nil, fmt.Errorf("multisite: site %d: invalid name %q: want a non-empty name of a-z, 0-9, '.', '_', '-' (not starting with a dot)", i, in.Name)
		case names[in.Name]:
			return nil, fmt.Errorf("multisite: two sites are named %q", in.Name)
		case in.Domain == "":
			return nil, fmt.Errorf("multisite: site %q: no failure domain given (the building, region or provider holding it)", in.Name)
		case in.Storage == nil:
			return nil, fmt.Errorf("multisite: site %q: no storage given", in.Name)
		}
		names[in.Name] = true
		domains[in.Domain] = true
		s.sites = append(s.sites, &site{idx: i, name: in.Name, domain: in.Domain, st: in.Storage})
	}
	n := len(sites)
	s.quorum = o.WriteQuorum
	if s.quorum == 0 {
		s.quorum = n
	}
	if s.quorum < 1 || s.quorum > n {
		return nil, fmt.Errorf("multisite: write quorum %d out of range: want 1 to %d (the number of sites), or 0 for all", o.WriteQuorum, n)
	}
	if len(domains) == 1 && !o.AllowSingleDomain {
		var d string
		for d = range domains {
		}
		return nil, fmt.Errorf("multisite: all %d sites are in the failure domain %q: one fire, flood or provider failure there destroys every copy at once; "+
			"put a site in another building, region or provider, or set AllowSingleDomain (for tests only)", n, d)
	}
	s.minDomains = o.MinDomains
	if s.minDomains == 0 {
		s.minDomains = min(2, s.quorum, len(domains))
	}
	if s.minDomains < 1 || s.minDomains > min(s.quorum, len(domains)) {
		return nil, fmt.Errorf("multisite: MinDomains %d out of range: want 1 to %d (the smaller of the write quorum and the %d failure domains), or 0 for the default",
			o.MinDomains, min(s.quorum, len(domains)), len(domains))
	}
	if s.grace < 0 {
		return nil, fmt.Errorf("multisite: negative SlowSiteGrace %v", s.grace)
	}
	s.missed = make([]map[string]mark, n)
	for i := range s.missed {
		s.missed[i] = map[string]mark{}
	}
	s.bad = map[siteKey]BadCopy{}
	return s, nil
}

// ---- site health ----

// site is a configured site and what the Store has seen of it.
type site struct {
	idx          int
	name, domain string
	st           storage.Storage

	bytesWritten, bytesRead atomic.Int64

	mu          sync.Mutex
	ops, errs   int64
	consecutive int
	lastErr     error
	lastErrAt   time.Time
	ewma        time.Duration
	missStreak  int64
}

// suspectBase is how long a site that just failed is read last; the
// window doubles with each consecutive failure, up to suspectMax.
const (
	suspectBase = 5 * time.Second
	suspectMax  = 2 * time.Minute
)

// fault reports whether err says something about the site's health, as
// opposed to an answer about the object (missing, taken, bad range or
// key) or the caller giving up.
func fault(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	for _, e := range []error{storage.ErrNotExist, storage.ErrExist, storage.ErrInvalidRange, storage.ErrInvalidKey, storage.ErrRetained} {
		if errors.Is(err, e) {
			return false
		}
	}
	var se *sourceError
	return !errors.As(err, &se)
}

// sourceError marks the error of a site's Put whose source (the caller's
// reader) failed: the site is not to blame.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// putOn writes to site i and counts the bytes.
func (s *Store) putOn(ctx context.Context, i int, key string, src *srcReader, size int64, opts *storage.PutOptions) error {
	err := s.sites[i].st.Put(ctx, key, src, size, opts)
	switch {
	case err == nil:
		s.sites[i].bytesWritten.Add(size)
	case src.failed.Load():
		err = &sourceError{err}
	}
	return err
}

// observe records the outcome of one operation on the site, which took d
// (d < 0: not a latency sample). Only faults (see fault) count as errors;
// other outcomes count as the site answering.
func (s *Store) observe(ctx context.Context, i int, err error, d time.Duration) {
	st := s.sites[i]
	isFault := fault(ctx, err)
	if err != nil && !isFault {
		if ctx.Err() != nil {
			return // says nothing about the site
		}
		err = nil // the site answered
	}
	st.mu.Lock()
	st.ops++
	wasDown := st.consecutive > 0
	if err != nil {
		st.errs++
		st.consecutive++
		st.lastErr, st.lastErrAt = err, time.Now()
	} else {
		st.consecutive = 0
		switch {
		case d < 0:
		case st.ewma == 0:
			st.ewma = d
		default:
			st.ewma += (d - st.ewma) / 5
		}
	}
	st.mu.Unlock()
	switch {
	case err != nil && !wasDown:
		s.log.Warn("multisite: site failing", "site", st.name, "domain", st.domain, "error", err)
	case err == nil && wasDown:
		s.log.Info("multisite: site answering again", "site", st.name, "domain", st.domain)
	}
}

// suspect reports whether the site failed recently enough to be read last.
func (st *site) suspect(now time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.consecutive == 0 {
		return false
	}
	w := suspectBase
	for i := 1; i < st.consecutive && w < suspectMax; i++ {
		w *= 2
	}
	return now.Before(st.lastErrAt.Add(min(w, suspectMax)))
}

// down reports whether the site failed its last few operations in a
// row: worth no extra attempts (unlike a site failing now and then).
func (st *site) down() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.consecutive >= 3
}

func (st *site) latency() time.Duration {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.ewma
}

// readOrder returns the site indexes in the order reads of key try them:
// sites known to hold a stale or bad copy of key last, then sites that
// failed recently, then by latency (moving average), then in configured
// order. Sites known to have missed the deletion of key are left out.
func (s *Store) readOrder(key string) []int {
	type cand struct {
		i       int
		gone    bool // missed the key's deletion: never read
		stale   bool
		suspect bool
		lat     time.Duration
	}
	now := time.Now()
	cs := make([]cand, len(s.sites))
	s.mu.Lock()
	for i := range s.sites {
		cs[i].i = i
		if key != "" {
			mk, missed := s.missed[i][key]
			_, bad := s.bad[siteKey{i, key}]
			cs[i].stale = missed || bad
			cs[i].gone = missed && mk.op == opDelete
		}
	}
	s.mu.Unlock()
	for i, st := range s.sites {
		cs[i].suspect = st.suspect(now)
		if !s.pinOrder {
			cs[i].lat = st.latency()
		}
	}
	slices.SortStableFunc(cs, func(a, b cand) int {
		switch {
		case a.stale != b.stale:
			if a.stale {
				return 1
			}
			return -1
		case a.suspect != b.suspect:
			if a.suspect {
				return 1
			}
			return -1
		case a.lat != b.lat:
			if a.lat < b.lat {
				return -1
			}
			return 1
		}
		return a.i - b.i
	})
	out := make([]int, 0, len(cs))
	for _, c := range cs {
		if !c.gone {
			out = append(out, c.i)
		}
	}
	return out
}

// durable reports whether copies on the sites ok make a write durable.
func (s *Store) durable(ok []int) bool {
	return len(ok) >= s.quorum && s.domainCount(ok) >= s.minDomains
}

func (s *Store) domainCount(idx []int) int {
	seen := map[string]bool{}
	for _, i := range idx {
		seen[s.sites[i].domain] = true
	}
	return len(seen)
}

func (s *Store) all() []int {
	idx := make([]int, len(s.sites))
	for i := range idx {
		idx[i] = i
	}
	return idx
}

func (s *Store) names(idx []int) string {
	var b strings.Builder
	for j, i := range idx {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s.sites[i].name)
	}
	return b.String()
}

func (s *Store) siteIndex(name string) int {
	for i, st := range s.sites {
		if st.name == name {
			return i
		}
	}
	return -1
}

func (s *Store) count(fn func(*Stats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.stats)
}

// ---- errors ----

// multiError is an error made of the errors of several sites. Its message
// lists them on one line; errors.Is and errors.As see each of them.
type multiError struct {
	msg  string
	errs []error
}

func (e *multiError) Error() string {
	var parts []string
	for _, err := range e.errs {
		if err != ErrQuorum {
			parts = append(parts, err.Error())
		}
	}
	if len(parts) == 0 {
		return e.msg
	}
	return e.msg + ": " + strings.Join(parts, "; ")
}

func (e *multiError) Unwrap() []error { return e.errs }

// siteErr names the site in err.
func (s *Store) siteErr(i int, err error) error {
	return fmt.Errorf("site %q (%s): %w", s.sites[i].name, s.sites[i].domain, err)
}

// ---- checks ----

func checkKey(ctx context.Context, op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("multisite: %s %q: %w", op, key, err)
	}
	if !storage.ValidKey(key) {
		return fmt.Errorf("multisite: %s %q: %w", op, key, storage.ErrInvalidKey)
	}
	return nil
}

func checkWrite(ctx context.Context, op, key string) error {
	if err := checkKey(ctx, op, key); err != nil {
		return err
	}
	if strings.HasPrefix(key, ReservedPrefix) {
		return fmt.Errorf("multisite: %s %q: keys under %q are reserved for the multisite journal: %w", op, key, ReservedPrefix, storage.ErrInvalidKey)
	}
	return nil
}

// ---- writes ----

// srcReader watches the caller's reader for one site's Put, to tell a
// failing source (the caller's fault) from a failing site.
type srcReader struct {
	r      io.ReaderAt
	size   int64
	failed atomic.Bool
}

func (r *srcReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.r.ReadAt(p, off)
	if err != nil && !(err == io.EOF && (n == len(p) || off+int64(n) >= r.size)) {
		r.failed.Store(true)
	}
	return n, err
}

// result is the outcome of one site's part of a write.
type result struct {
	ran bool
	err error
	cut bool // cancelled after SlowSiteGrace
}

// errCutOff is the cause of the cancellation of sites still writing
// SlowSiteGrace after a write became durable.
var errCutOff = errors.New("multisite: site too slow, cut off after the write was durable elsewhere")

// fanOut runs fn on the sites idx concurrently and waits for all of them.
// have lists sites that already hold the object (for the durability
// test that starts the SlowSiteGrace timer). Results are indexed by site.
func (s *Store) fanOut(ctx context.Context, idx, have []int, grace bool, fn func(ctx context.Context, i int) error) []result {
	res := make([]result, len(s.sites))
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type done struct {
		i   int
		err error
		d   time.Duration
	}
	ch := make(chan done, len(idx))
	for _, i := range idx {
		go func() {
			start := time.Now()
			err := fn(cctx, i)
			ch <- done{i, err, time.Since(start)}
		}()
	}
	ok := slices.Clone(have)
	var timer <-chan time.Time
	cutOff := false
	for remaining := len(idx); remaining > 0; {
		select {
		case d := <-ch:
			remaining--
			r := &res[d.i]
			r.ran, r.err = true, d.err
			if d.err != nil && cutOff && ctx.Err() == nil {
				r.cut = true
				r.err = fmt.Errorf("%w (after %v): %w", errCutOff, s.grace, d.err)
				s.observe(ctx, d.i, errCutOff, d.d)
			} else {
				s.observe(ctx, d.i, d.err, d.d)
			}
			if d.err == nil {
				ok = append(ok, d.i)
				if grace && s.grace > 0 && timer == nil && !cutOff && remaining > 0 && s.durable(ok) {
					t := time.NewTimer(s.grace)
					defer t.Stop()
					timer = t.C
				}
			}
		case <-timer:
			timer, cutOff = nil, true
			cancel(errCutOff)
		}
	}
	return res
}

// Put implements [storage.Storage.Put]. It writes to every site at once
// and waits for all of them (see Options.SlowSiteGrace); it succeeds when
// the object is durable. The package documentation says how create-only
// puts decide between concurrent creators.
func (s *Store) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *storage.PutOptions) error {
	if err := checkWrite(ctx, "put", key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("multisite: put %q: negative size %d", key, size)
	}
	srcs := make([]*srcReader, len(s.sites))
	for i := range srcs {
		srcs[i] = &srcReader{r: r, size: size}
	}
	if opts != nil && opts.IfNotExist {
		return s.create(ctx, key, srcs, size, opts.Retain)
	}
	var plain *storage.PutOptions
	if opts != nil && opts.Retain {
		plain = &storage.PutOptions{Retain: true} // every site retains what one would
	}
	res := s.fanOut(ctx, s.all(), nil, true, func(ctx context.Context, i int) error {
		return s.putOn(ctx, i, key, srcs[i], size, plain)
	})
	return s.settle(ctx, key, res, false, nil)
}

// settle turns the results of a write into its error, and records the
// sites that missed it.
//
// A create-only put that fell short keeps its copies (see create), so a
// retry would find the key taken and a retrying wrapper would take that
// for success: its error then does not wrap the sites' errors (only their
// text), so that it is not transient.
//
// The failed sites of replace hold a wrong copy: they are recorded so that
// catch-up replaces it whatever its size.
func (s *Store) settle(ctx context.Context, key string, res []result, create bool, replace []int) error {
	var ok, failed []int
	var errs []error
	for i, r := range res {
		switch {
		case !r.ran:
		case r.err == nil:
			ok = append(ok, i)
		default:
			failed = append(failed, i)
			errs = append(errs, s.siteErr(i, r.err))
		}
	}
	if len(ok) == 0 {
		s.count(func(st *Stats) { st.FailedPuts++ })
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("multisite: put %q: %w", key, err)
		}
		return &multiError{msg: fmt.Sprintf("multisite: put %q: no site stored it", key), errs: errs}
	}
	if len(failed) > 0 {
		missed := slices.DeleteFunc(slices.Clone(failed), func(i int) bool { return slices.Contains(replace, i) })
		if len(missed) > 0 {
			s.recordMissed(ctx, opPut, key, missed, ok)
		}
		if len(replace) > 0 {
			s.recordMissed(ctx, opReplace, key, replace, ok)
		}
	} else {
		s.clearMarks(key, ok)
	}
	if !s.durable(ok) {
		s.count(func(st *Stats) { st.FailedPuts++ })
		if create {
			for j, err := range errs {
				errs[j] = errors.New(err.Error())
			}
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
		}
		need := fmt.Sprintf("%d sites", s.quorum)
		if s.minDomains > 1 {
			need += fmt.Sprintf(" in %d failure domains", s.minDomains)
		}
		msg := fmt.Sprintf("multisite: put %q: stored on %d of %d sites (%s, %d failure domains), the write quorum is %s; the copies stay and the missing sites are journaled for catch-up",
			key, len(ok), len(s.sites), s.names(ok), s.domainCount(ok), need)
		return &multiError{msg: msg, errs: append([]error{ErrQuorum}, errs...)}
	}
	s.count(func(st *Stats) {
		st.Puts++
		if len(failed) > 0 {
			st.UnderReplicated++
		}
	})
	return nil
}

// defaultClaimWait bounds how long the creator of a key waits for a
// losing creator to withdraw its copy from a site.
const defaultClaimWait = 2 * time.Second

// create performs a create-only put: create-only on every site at once,
// then a decision. The deciding site is the first site, in configured
// order, that answered (success or ErrExist):
//
//   - ErrExist there: the key was taken; the put withdraws the copies it
//     made elsewhere and reports ErrExist.
//   - success there: this writer is the creator. Sites that answered
//     ErrExist hold a losing creator's copy, which that creator is
//     withdrawing: the put waits for each to go (up to 2s) and then
//     creates its own copy there. A copy that does not go belongs to an
//     object that existed before (the deciding site had lost it): the
//     existing object wins, and the put withdraws its copies and reports
//     ErrExist.
//
// Sites left without the winning object are recorded as missed.
func (s *Store) create(ctx context.Context, key string, srcs []*srcReader, size int64, retain bool) error {
	createOnly := &storage.PutOptions{IfNotExist: true, Retain: retain}
	res := s.fanOut(ctx, s.all(), nil, true, func(ctx context.Context, i int) error {
		return s.putOn(ctx, i, key, srcs[i], size, createOnly)
	})
	decider := -1
	var mine, exist, failed, replace []int
	for i, r := range res {
		switch {
		case r.err == nil:
			mine = append(mine, i)
		case errors.Is(r.err, storage.ErrExist):
			exist = append(exist, i)
		default:
			failed = append(failed, i)
			continue
		}
		if decider < 0 {
			decider = i
		}
	}
	if decider < 0 {
		return s.settle(ctx, key, res, false, nil) // nothing stored anywhere
	}
	// The sites before the deciding one failed for us (or were cut off).
	// One of them may have taken our write all the same (a lost answer),
	// or may have answered a rival creator: the first of them holding a
	// copy decides instead.
	for i := range decider {
		if res[i].cut {
			// Too slow for us, hence for a rival too: it decided
			// no earlier than we did.
			continue
		}
		held, same := s.holds(ctx, i, key, srcs[i], size)
		if !held {
			continue
		}
		failed = slices.DeleteFunc(failed, func(j int) bool { return j == i })
		decider = i
		if same {
			mine = append(mine, i)
			res[i] = result{ran: true}
		} else {
			exist = append(exist, i)
			res[i] = result{ran: true, err: s.siteErr(i, fmt.Errorf("%w (a copy with other bytes, on a site that had failed for this put)", storage.ErrExist))}
		}
		break
	}
	if res[decider].err != nil {
		return s.withdraw(ctx, key, mine, exist, failed, nil, res[decider].err)
	}
	if len(exist) > 0 && s.hasMark(decider, key) {
		// The deciding site is known to have missed this key: the
		// copies elsewhere are an existing object, not a rival's.
		return s.withdraw(ctx, key, mine, exist, failed, nil, res[exist[0]].err)
	}
	if len(exist) > 0 {
		// Wait for the losers to withdraw, then take their place.
		cctx, cancel := context.WithTimeout(ctx, s.claimWait)
		claims := s.fanOut(cctx, exist, nil, false, func(ctx context.Context, i int) error {
			return s.claim(ctx, i, key, srcs[i], size, retain)
		})
		cancel()
		var kept []int
		for _, i := range exist {
			switch err := claims[i].err; {
			case err == nil:
				mine = append(mine, i)
				res[i] = result{ran: true}
			case errors.Is(err, storage.ErrExist):
				kept = append(kept, i)
			default:
				// The site failed while holding another creator's
				// copy: catch-up must replace it, whatever its size.
				res[i].err = err
				replace = append(replace, i)
			}
		}
		if len(kept) > 0 {
			return s.withdraw(ctx, key, mine, kept, failed, replace, res[kept[0]].err)
		}
	}
	return s.settle(ctx, key, res, true, replace)
}

// holds reports whether site i holds an object under key and, if so,
// whether it is exactly the size bytes of src. A site that cannot tell
// (failing, or slower than claimWait) counts as not holding it.
func (s *Store) holds(ctx context.Context, i int, key string, src io.ReaderAt, size int64) (held, same bool) {
	ctx, cancel := context.WithTimeout(ctx, s.claimWait)
	defer cancel()
	// A site that answers now and then gets a few tries; one that keeps
	// failing (down) does not hold up every create-only put.
	for try := 1; ; try++ {
		held, same, err := s.compare(ctx, i, key, src, size)
		if !fault(ctx, err) || try >= 4 || s.sites[i].down() {
			return held && err == nil, same
		}
		time.Sleep(time.Duration(try) * time.Millisecond)
	}
}

// compare is one attempt of holds; err is the site's failure, if any.
func (s *Store) compare(ctx context.Context, i int, key string, src io.ReaderAt, size int64) (held, same bool, err error) {
	st := s.sites[i].st
	info, err := st.Stat(ctx, key)
	s.observe(ctx, i, err, -1)
	if err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			err = nil
		}
		return false, false, err
	}
	if info.Size != size {
		return true, false, nil
	}
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		return true, false, err
	}
	defer rc.Close()
	const chunk = 256 << 10
	got := make([]byte, min(chunk, size))
	want := make([]byte, min(chunk, size))
	for off := int64(0); off < size; {
		n := int(min(chunk, size-off))
		if _, err := io.ReadFull(rc, got[:n]); err != nil {
			return true, false, err
		}
		if m, err := src.ReadAt(want[:n], off); m < n && err != nil {
			return true, false, nil
		}
		if !bytes.Equal(got[:n], want[:n]) {
			return true, false, nil
		}
		off += int64(n)
	}
	return true, true, nil
}

// claim waits for the object under key to vanish from site i, then
// creates it there. Site failures are retried until the context ends. It
// fails with an error wrapping ErrExist when the object stayed, with the
// site's last error when the site kept failing.
func (s *Store) claim(ctx context.Context, i int, key string, src *srcReader, size int64, retain bool) error {
	wait := 2 * time.Millisecond
	var last error
	for {
		_, err := s.sites[i].st.Stat(ctx, key)
		switch {
		case errors.Is(err, storage.ErrNotExist):
			err = s.putOn(ctx, i, key, src, size, &storage.PutOptions{IfNotExist: true, Retain: retain})
			if err == nil {
				return nil
			}
			last = err
		case err == nil:
			last = fmt.Errorf("still held after %v: %w", s.claimWait, storage.ErrExist)
		default:
			last = err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return last
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// withdraw ends a create-only put that lost: it deletes the copies the
// put made (the sites of mine), records the sites that lack the existing
// object (mine, failed) or hold a wrong copy (replace) as missed, to be
// copied from the sites of exist, and returns ErrExist.
func (s *Store) withdraw(ctx context.Context, key string, mine, exist, failed, replace []int, existErr error) error {
	if len(mine) > 0 {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), journalTimeout)
		defer cancel()
		del := s.fanOut(dctx, mine, nil, false, func(ctx context.Context, i int) error {
			// A copy left behind blocks the winner for a while: try
			// hard (a site that is down will not be waited for).
			err := s.sites[i].st.Delete(ctx, key)
			for try := 1; fault(ctx, err) && try < 5 && !s.sites[i].down(); try++ {
				time.Sleep(time.Duration(1<<try) * time.Millisecond)
				err = s.sites[i].st.Delete(ctx, key)
			}
			return err
		})
		var stuck []int
		for _, i := range mine {
			if err := del[i].err; err != nil && !errors.Is(err, storage.ErrNotExist) {
				s.log.Error("multisite: could not withdraw the copy of a create-only put that lost; catch-up will replace it",
					"key", key, "site", s.sites[i].name, "error", err)
				stuck = append(stuck, i)
			}
		}
		// A wrong copy, maybe of the right size: catch-up must replace
		// it whatever its size.
		replace = append(replace, stuck...)
		mine = slices.DeleteFunc(mine, func(i int) bool { return slices.Contains(stuck, i) })
	}
	if len(replace) > 0 {
		s.recordMissed(ctx, opReplace, key, replace, exist)
	}
	if stale := slices.Concat(mine, failed); len(stale) > 0 {
		s.recordMissed(ctx, opPut, key, stale, exist)
	}
	return fmt.Errorf("multisite: put %q: already held by %s: %w", key, s.names(exist), existErr)
}

// Delete implements [storage.Storage.Delete]. It deletes on every site at
// once and succeeds when the object is gone from every site that
// answered; sites that did not answer are journaled as missed deletes.
// It fails with ErrNotExist when no site that answered held the object
// and too few sites failed to answer to hide a durable object. A site
// that keeps the object under retention (storage.ErrRetained) makes the
// delete fail with that error, even if other sites deleted their copy:
// the object is still there to be read; the site is journaled, and
// catch-up deletes its copy once the retention ends.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkWrite(ctx, "delete", key); err != nil {
		return err
	}
	res := s.fanOut(ctx, s.all(), nil, false, func(ctx context.Context, i int) error {
		return s.sites[i].st.Delete(ctx, key)
	})
	var deleted, absent, failed, retained []int
	var errs []error
	for i, r := range res {
		switch {
		case r.err == nil:
			deleted = append(deleted, i)
		case errors.Is(r.err, storage.ErrNotExist):
			absent = append(absent, i)
		default:
			if errors.Is(r.err, storage.ErrRetained) {
				retained = append(retained, i)
			}
			failed = append(failed, i)
			errs = append(errs, s.siteErr(i, r.err))
		}
	}
	answered := append(slices.Clone(deleted), absent...)
	if len(answered) == 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("multisite: delete %q: %w", key, err)
		}
		return &multiError{msg: fmt.Sprintf("multisite: delete %q: no site answered", key), errs: errs}
	}
	if len(failed) > 0 {
		s.recordMissed(ctx, opDelete, key, failed, answered)
	} else {
		s.clearMarks(key, answered)
	}
	switch {
	case len(retained) > 0:
		// A site keeps the object under retention: the delete is not
		// done, whatever the other sites did, so that the caller keeps
		// treating the object as present (a reader can still find it
		// there). Catch-up deletes it once the retention ends.
		return &multiError{msg: fmt.Sprintf("multisite: delete %q: retained by %s", key, s.names(retained)), errs: errs}
	case len(deleted) > 0:
		return nil
	case len(failed) < s.quorum:
		return fmt.Errorf("multisite: delete %q: %w", key, storage.ErrNotExist)
	}
	return &multiError{msg: fmt.Sprintf("multisite: delete %q: no site that answered held it, and %d sites did not answer", key, len(failed)), errs: errs}
}

// ---- reads ----

// Stat implements [storage.Storage.Stat]. It asks the sites in order of
// health and returns the first answer holding the object.
func (s *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	if err := checkKey(ctx, "stat", key); err != nil {
		return storage.Info{}, err
	}
	var missing []int
	var errs []error
	for _, i := range s.readOrder(key) {
		start := time.Now()
		info, err := s.sites[i].st.Stat(ctx, key)
		s.observe(ctx, i, err, time.Since(start))
		switch {
		case err == nil:
			s.foundAfter(key, missing, len(errs) > 0)
			return info, nil
		case errors.Is(err, storage.ErrNotExist):
			missing = append(missing, i)
		case ctx.Err() != nil:
			return storage.Info{}, fmt.Errorf("multisite: stat %q: %w", key, ctx.Err())
		default:
			errs = append(errs, s.siteErr(i, err))
		}
	}
	return storage.Info{}, s.notFound("stat", key, errs)
}

// notFound is the error of a read that no site could serve: ErrNotExist
// when fewer sites failed to answer than the write quorum (so any durable
// object would have been seen), the sites' errors otherwise.
func (s *Store) notFound(op, key string, errs []error) error {
	if len(errs) < s.quorum {
		return fmt.Errorf("multisite: %s %q: %w", op, key, storage.ErrNotExist)
	}
	return &multiError{msg: fmt.Sprintf("multisite: %s %q: no site could answer", op, key), errs: errs}
}

// foundAfter records the sites found lacking key before a site served
// it, and counts a fallback if there were such sites or if fellBack.
func (s *Store) foundAfter(key string, missing []int, fellBack bool) {
	for _, i := range missing {
		s.recordBad(i, key, Missing, "the site does not have it while another site does")
	}
	if len(missing) > 0 || fellBack {
		s.count(func(st *Stats) { st.Fallbacks++ })
	}
}

// ---- bookkeeping ----

// recordMissed records that the sites missed missed an operation that the
// sites holders applied: in memory, and in a journal object on each
// holder (one per missed site).
func (s *Store) recordMissed(ctx context.Context, op, key string, missed, holders []int) {
	var warn []int
	s.mu.Lock()
	for _, i := range holders {
		s.delMark(i, key)
	}
	for _, i := range missed {
		s.setMark(i, key, op)
		if op == opDelete {
			s.stats.MissedDeletes++
		} else {
			s.stats.MissedWrites++
		}
	}
	s.mu.Unlock()
	for _, i := range missed {
		st := s.sites[i]
		st.mu.Lock()
		st.missStreak++
		streak := st.missStreak
		st.mu.Unlock()
		if streak == 1 || streak%1000 == 0 {
			warn = append(warn, i)
		}
	}
	for _, i := range warn {
		s.log.Warn("multisite: site missed a write; the object is under-replicated until catch-up",
			"site", s.sites[i].name, "domain", s.sites[i].domain, "op", op, "key", key, "held_by", s.names(holders))
	}
	if len(holders) == 0 {
		return
	}
	jctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), journalTimeout)
	defer cancel()
	for _, i := range missed {
		j := &journal{site: s.sites[i].name, entries: []entry{{op: op, key: key}}}
		if n := s.writeJournal(jctx, j, holders); n == 0 {
			s.log.Error("multisite: could not journal a missed write on any site; it is recorded in this process only",
				"site", s.sites[i].name, "key", key)
		}
	}
}

// setMark records, under s.mu, that site i missed op on key.
func (s *Store) setMark(i int, key, op string) {
	old, had := s.missed[i][key]
	if !had && s.nmarks >= maxMarks {
		s.stats.DroppedMarks++
		return
	}
	if !had {
		s.nmarks++
	} else if old.op == opDelete {
		s.ndel.Add(-1)
	}
	if op == opDelete {
		s.ndel.Add(1)
	}
	s.gen++
	s.missed[i][key] = mark{op: op, gen: s.gen}
}

// delMark forgets, under s.mu, what site i missed of key.
func (s *Store) delMark(i int, key string) {
	old, had := s.missed[i][key]
	if !had {
		return
	}
	delete(s.missed[i], key)
	s.nmarks--
	if old.op == opDelete {
		s.ndel.Add(-1)
	}
}

// deleted reports whether site i is known to have missed the deletion
// of key: its copy must not be served.
func (s *Store) deleted(i int, key string) bool {
	if s.ndel.Load() == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.missed[i][key].op == opDelete
}

// hasMark reports whether site i is recorded as having missed key.
func (s *Store) hasMark(i int, key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.missed[i][key]
	return ok
}

// clearMarks forgets what the sites idx missed of key: they just applied
// the latest operation on it.
func (s *Store) clearMarks(key string, idx []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range idx {
		s.delMark(i, key)
		if _, ok := s.bad[siteKey{i, key}]; ok {
			delete(s.bad, siteKey{i, key})
			s.nmarks--
		}
		st := s.sites[i]
		st.mu.Lock()
		st.missStreak = 0
		st.mu.Unlock()
	}
}

// recordBad records a bad copy.
func (s *Store) recordBad(i int, key string, kind BadKind, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sk := siteKey{i, key}
	if old, ok := s.bad[sk]; ok && old.Kind == Corrupt && kind != Corrupt {
		return // keep the stronger report
	}
	if _, ok := s.bad[sk]; !ok {
		if s.nmarks >= maxMarks {
			s.stats.DroppedMarks++
			return
		}
		s.nmarks++
	}
	s.bad[sk] = BadCopy{Site: s.sites[i].name, Key: key, Kind: kind, Reason: reason, Time: time.Now()}
	s.stats.BadCopies++
}

// BadKind says what is wrong with a copy.
type BadKind int

// The kinds of bad copies.
const (
	// Missing: the site lacked an object another site held.
	Missing BadKind = iota + 1
	// Short: the site's copy, or its answer, ended before the object's
	// end as other sites (or the site itself) report it.
	Short
	// Corrupt: a caller reported the copy damaged (see ReportBadCopy).
	Corrupt
)

func (k BadKind) String() string {
	switch k {
	case Missing:
		return "missing"
	case Short:
		return "short"
	case Corrupt:
		return "corrupt"
	}
	return fmt.Sprintf("BadKind(%d)", int(k))
}

// BadCopy is a copy found bad by a read (the Store falling back to
// another site) or reported by a caller.
type BadCopy struct {
	// Site and Key name the copy.
	Site, Key string
	// Kind says what is wrong with it, Reason how it was found.
	Kind   BadKind
	Reason string
	// Time is when it was recorded.
	Time time.Time
}

// BadCopies returns the bad copies recorded since New (or since a
// catch-up repaired them), by site then key. Reads try these copies last.
func (s *Store) BadCopies() []BadCopy {
	s.mu.Lock()
	out := make([]BadCopy, 0, len(s.bad))
	for _, b := range s.bad {
		out = append(out, b)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b BadCopy) int {
		if c := strings.Compare(s.sortName(a.Site), s.sortName(b.Site)); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

func (s *Store) sortName(name string) string {
	return fmt.Sprintf("%04d", s.siteIndex(name))
}

// ReportBadCopy implements [storage.Replicated]: the copy of key on the
// site named replica is recorded as Corrupt, read last from then on, and
// replaced from another site by the next CatchUp.
func (s *Store) ReportBadCopy(replica, key string, reason error) {
	i := s.siteIndex(replica)
	if i < 0 || !storage.ValidKey(key) {
		s.log.Warn("multisite: bad copy reported for an unknown site or an invalid key", "site", replica, "key", key)
		return
	}
	msg := "reported by a caller"
	if reason != nil {
		msg = reason.Error()
	}
	s.log.Warn("multisite: bad copy reported", "site", replica, "key", key, "reason", msg)
	s.recordBad(i, key, Corrupt, msg)
}

// Missed returns, per site name, the keys that site missed (writes or
// deletes) and that no catch-up has restored yet, as recorded by this
// Store (the journals on the sites may hold more, from other processes).
func (s *Store) Missed() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for i, m := range s.missed {
		if len(m) == 0 {
			continue
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out[s.sites[i].name] = keys
	}
	return out
}

// Stats counts what a Store did since New.
type Stats struct {
	// Puts counts durable puts; UnderReplicated those among them that
	// missed at least one site; FailedPuts the puts that failed.
	Puts, UnderReplicated, FailedPuts int64
	// MissedWrites and MissedDeletes count (site, key) pairs recorded as
	// missed.
	MissedWrites, MissedDeletes int64
	// Fallbacks counts reads served by another site after a site failed,
	// lacked the object or returned a short copy.
	Fallbacks int64
	// BadCopies counts bad copies recorded.
	BadCopies int64
	// PartialLists counts listings that went on without a failing site.
	PartialLists int64
	// JournalWrites counts journal objects written (one per holder site),
	// JournalErrors those that failed.
	JournalWrites, JournalErrors int64
	// DroppedMarks counts missed writes and bad copies not kept in memory
	// because too many were pending; missed writes are still journaled.
	DroppedMarks int64
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// SiteStatus is what a Store has seen of one site.
type SiteStatus struct {
	// Name and Domain are the site's, as configured.
	Name, Domain string
	// Up is false when the last operation on the site failed.
	Up bool
	// Ops counts operations; Errors those that failed for the site's
	// sake (not a missing object or the caller cancelling);
	// ConsecutiveErrors the failures since the last success.
	Ops, Errors       int64
	ConsecutiveErrors int
	// LastError and LastErrorAt describe the last failure.
	LastError   string
	LastErrorAt time.Time
	// BytesWritten counts the bytes of successful puts, BytesRead the
	// bytes read from the site.
	BytesWritten, BytesRead int64
	// Latency is a moving average of the site's successful operations
	// (for Get, the time to open the reader).
	Latency time.Duration
	// Missed counts the keys the site missed, as recorded in memory.
	Missed int
}

// SiteStatus returns the status of every site, in configured order.
func (s *Store) SiteStatus() []SiteStatus {
	out := make([]SiteStatus, len(s.sites))
	s.mu.Lock()
	for i := range s.sites {
		out[i].Missed = len(s.missed[i])
	}
	s.mu.Unlock()
	for i, st := range s.sites {
		st.mu.Lock()
		o := &out[i]
		o.Name, o.Domain = st.name, st.domain
		o.Up = st.consecutive == 0
		o.Ops, o.Errors, o.ConsecutiveErrors = st.ops, st.errs, st.consecutive
		if st.lastErr != nil {
			o.LastError, o.LastErrorAt = st.lastErr.Error(), st.lastErrAt
		}
		o.Latency = st.ewma
		st.mu.Unlock()
		o.BytesWritten, o.BytesRead = st.bytesWritten.Load(), st.bytesRead.Load()
	}
	return out
}

// Replicas implements [storage.Replicated]: the sites' own stores, in
// order of health (sites that failed recently last, then by latency).
func (s *Store) Replicas() []storage.Replica {
	order := s.readOrder("")
	out := make([]storage.Replica, len(order))
	for j, i := range order {
		st := s.sites[i]
		out[j] = storage.Replica{Name: st.name, Domain: st.domain, Storage: st.st}
	}
	return out
}

// Close closes every site's storage.
func (s *Store) Close() error {
	var errs []error
	for i, st := range s.sites {
		if err := st.st.Close(); err != nil {
			errs = append(errs, s.siteErr(i, err))
		}
	}
	return errors.Join(errs...)
}
