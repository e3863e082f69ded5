package multisite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/reprise-backup/reprise/storage"
)

// ErrIncomplete is wrapped by the error of a CatchUp or Resync that could
// not finish everything (a site or every source still unreachable); what
// is left stays recorded for the next run.
var ErrIncomplete = errors.New("multisite: catch-up incomplete")

// catchUpWorkers is the number of objects copied at once by a catch-up.
const catchUpWorkers = 4

// CatchUpReport says what a catch-up did.
type CatchUpReport struct {
	// Copied lists the objects copied, in no particular order.
	Copied []Copied
	// Removed lists the objects deleted from sites that had missed their
	// deletion.
	Removed []SiteKey
	// Resynced names the sites found without any object while others had
	// some (new or wiped sites), which received a full copy.
	Resynced []string
	// UpToDate counts recorded objects found already in order.
	UpToDate int
	// Pending lists what could not be done this time; it stays recorded
	// for the next run.
	Pending []Pending
	// JournalsRead counts the journal objects read (each once, whatever
	// the number of sites holding it); JournalsRemoved those deleted
	// because everything they listed is done.
	JournalsRead, JournalsRemoved int
}

// Copied is an object copied from one site to another.
type Copied struct {
	// Key was copied from the site named From to the site named To.
	Key, From, To string
	// Size is the object's size.
	Size int64
}

// SiteKey names an object on a site.
type SiteKey struct {
	// Site is the site's name, Key the object's.
	Site, Key string
}

// Pending is an object a catch-up could not bring in line.
type Pending struct {
	// Site and Key name the object (Key may be a prefix, or empty, when
	// the trouble is a whole site or a journal); Reason says what failed.
	Site, Key, Reason string
}

// report collects a CatchUpReport from concurrent workers.
type report struct {
	mu sync.Mutex
	r  CatchUpReport
}

func (r *report) add(fn func(*CatchUpReport)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(&r.r)
}

func (r *report) result() (CatchUpReport, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := r.r
	slices.SortFunc(rep.Copied, func(a, b Copied) int {
		return cmpStrings(a.To, b.To, a.Key, b.Key)
	})
	slices.SortFunc(rep.Removed, func(a, b SiteKey) int { return cmpStrings(a.Site, b.Site, a.Key, b.Key) })
	slices.SortFunc(rep.Pending, func(a, b Pending) int { return cmpStrings(a.Site, b.Site, a.Key, b.Key) })
	if len(rep.Pending) > 0 {
		p := rep.Pending[0]
		return rep, fmt.Errorf("%w: %d objects pending (first: site %q, key %q: %s)", ErrIncomplete, len(rep.Pending), p.Site, p.Key, p.Reason)
	}
	return rep, nil
}

func cmpStrings(a1, b1, a2, b2 string) int {
	if c := strings.Compare(a1, b1); c != 0 {
		return c
	}
	return strings.Compare(a2, b2)
}

// CatchUp brings the sites in line for every object recorded as missed or
// bad: the missed writes and deletes recorded in memory and in the
// journals found on any site (whichever process wrote them), and the bad
// copies recorded by reads or reported by callers. For each such object
// the sites that did not miss it are the reference: when one of them
// holds the object it is copied (read from that site) to the sites that
// missed it; when none holds it, it is deleted from those sites. Journal
// objects are deleted once everything they list is done. Finally a site
// holding no object at all while others hold some (a new site, or one
// wiped and rebuilt empty) receives a full copy, as by [Store.Resync].
//
// CatchUp is idempotent and safe to run while the Store is in use. It
// copies bytes as they are: checking them (authenticated decryption) is
// the repository's business. It returns an error wrapping ErrIncomplete
// when something stays pending (the report says what).
func (s *Store) CatchUp(ctx context.Context) (CatchUpReport, error) {
	rep := &report{}
	// Look for empty sites first, as the targeted work may put a few
	// objects on them.
	var empty []bool
	nonEmpty := false
	for i := range s.sites {
		has, err := s.holdsObjects(ctx, i)
		switch {
		case ctx.Err() != nil:
			return rep.r, fmt.Errorf("multisite: catch-up: %w", ctx.Err())
		case err != nil:
			rep.add(func(r *CatchUpReport) {
				r.Pending = append(r.Pending, Pending{Site: s.sites[i].name, Reason: "could not check whether the site is empty: " + err.Error()})
			})
		case has:
			nonEmpty = true
		default:
			if empty == nil {
				empty = make([]bool, len(s.sites))
			}
			empty[i] = true
		}
	}
	if err := s.catchUp(ctx, rep); err != nil {
		return rep.r, err
	}
	if empty != nil && nonEmpty {
		for i, e := range empty {
			if e {
				s.log.Warn("multisite: site held no object while others did (new or wiped): copying everything to it", "site", s.sites[i].name)
				rep.add(func(r *CatchUpReport) { r.Resynced = append(r.Resynced, s.sites[i].name) })
			}
		}
		if err := s.resyncInto(ctx, "", empty, rep); err != nil {
			return rep.r, err
		}
	}
	return rep.result()
}

// Resync brings every object under prefix to every site: it first runs
// the targeted work of CatchUp (so that recorded deletes are not undone),
// then lists every site and copies each object to the sites that lack
// it, or hold it with a size other than the one most sites hold (ties go
// to the larger size). Use it after a site lost part of its objects
// without any record of it; Compare shows what it would do. Sites whose
// listing fails are left alone (and reported pending).
func (s *Store) Resync(ctx context.Context, prefix string) (CatchUpReport, error) {
	if !storage.ValidPrefix(prefix) {
		return CatchUpReport{}, fmt.Errorf("multisite: resync %q: %w", prefix, storage.ErrInvalidKey)
	}
	rep := &report{}
	if err := s.catchUp(ctx, rep); err != nil {
		return rep.r, err
	}
	if err := s.resyncInto(ctx, prefix, nil, rep); err != nil {
		return rep.r, err
	}
	return rep.result()
}

// keyWork is what a catch-up must check for one key.
type keyWork struct {
	dirty map[int]bool    // sites that missed a write or a delete
	force map[int]bool    // sites whose copy must be replaced whatever its size
	check map[int]BadKind // sites with a bad copy
}

// catchUp runs the targeted part of a catch-up: recorded marks and
// journals.
func (s *Store) catchUp(ctx context.Context, rep *report) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("multisite: catch-up: %w", err)
	}
	work := map[string]*keyWork{}
	get := func(key string) *keyWork {
		w := work[key]
		if w == nil {
			w = &keyWork{dirty: map[int]bool{}, force: map[int]bool{}, check: map[int]BadKind{}}
			work[key] = w
		}
		return w
	}
	// Snapshot of the in-memory record.
	memMarks := map[siteKey]uint64{}
	memBad := map[siteKey]time.Time{}
	s.mu.Lock()
	for i, m := range s.missed {
		for k, mk := range m {
			memMarks[siteKey{i, k}] = mk.gen
			get(k).dirty[i] = true
			if mk.op == opReplace {
				get(k).force[i] = true
			}
		}
	}
	for sk, b := range s.bad {
		memBad[sk] = b.Time
		get(sk.key).check[sk.site] = b.Kind
	}
	s.mu.Unlock()

	journals, badJournals, listErrs := s.readJournals(ctx)
	rep.add(func(r *CatchUpReport) { r.JournalsRead = len(journals) })
	for k, err := range badJournals {
		rep.add(func(r *CatchUpReport) {
			r.Pending = append(r.Pending, Pending{Key: k, Reason: "unreadable journal: " + err.Error()})
		})
	}
	for i, err := range listErrs {
		if err != nil {
			rep.add(func(r *CatchUpReport) {
				r.Pending = append(r.Pending, Pending{Site: s.sites[i].name, Key: journalPrefix, Reason: "could not list the journal: " + err.Error()})
			})
		}
	}
	for _, j := range journals {
		i := s.siteIndex(j.site)
		if i < 0 {
			rep.add(func(r *CatchUpReport) {
				r.Pending = append(r.Pending, Pending{Site: j.site, Key: j.key(), Reason: "journal for a site that is not configured (kept)"})
			})
			continue
		}
		for _, e := range j.entries {
			w := get(e.key)
			w.dirty[i] = true
			if e.op == opReplace {
				w.force[i] = true
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("multisite: catch-up: %w", err)
	}

	// Resolve every key, a few at a time.
	keys := make([]string, 0, len(work))
	for k := range work {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	done := map[siteKey]bool{}
	var doneMu sync.Mutex
	parallel(len(keys), func(n int) {
		k := keys[n]
		for i := range s.resolve(ctx, k, work[k], rep) {
			doneMu.Lock()
			done[siteKey{i, k}] = true
			doneMu.Unlock()
		}
	})

	// Forget what is done, unless renewed meanwhile.
	s.mu.Lock()
	for sk, gen := range memMarks {
		if done[sk] {
			if mk, ok := s.missed[sk.site][sk.key]; ok && mk.gen == gen {
				s.delMark(sk.site, sk.key)
			}
		}
	}
	for sk, t := range memBad {
		if done[sk] {
			if b, ok := s.bad[sk]; ok && b.Time.Equal(t) {
				delete(s.bad, sk)
				s.nmarks--
			}
		}
	}

	// Learn what other processes journaled and is still to do, so that
	// reads here avoid stale copies until the next catch-up.
	for _, j := range journals {
		i := s.siteIndex(j.site)
		if i < 0 {
			continue
		}
		for _, e := range j.entries {
			if !done[siteKey{i, e.key}] {
				if _, ok := s.missed[i][e.key]; !ok {
					s.setMark(i, e.key, e.op)
				}
			}
		}
	}
	s.mu.Unlock()

	// Remove or shrink the journals.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), journalTimeout)
	defer cancel()
	parallel(len(journals), func(n int) {
		j := journals[n]
		i := s.siteIndex(j.site)
		if i < 0 {
			return
		}
		var left []entry
		for _, e := range j.entries {
			if !done[siteKey{i, e.key}] {
				left = append(left, e)
			}
		}
		if len(left) == len(j.entries) {
			return
		}
		if len(left) > 0 {
			nj := &journal{site: j.site, entries: left}
			if s.writeJournal(dctx, nj, j.holders) == 0 {
				return // keep the old one
			}
		}
		res := s.fanOut(dctx, j.holders, nil, false, func(ctx context.Context, h int) error {
			return s.sites[h].st.Delete(ctx, j.key())
		})
		removed := true
		for _, h := range j.holders {
			if err := res[h].err; err != nil && !errors.Is(err, storage.ErrNotExist) {
				removed = false
				s.log.Warn("multisite: could not delete a done journal object; the next catch-up will find its entries done", "site", s.sites[h].name, "journal", j.key(), "error", err)
			}
		}
		if removed && len(left) == 0 {
			rep.add(func(r *CatchUpReport) { r.JournalsRemoved++ })
		}
	})
	return nil
}

// resolve brings the sites recorded for key in line with the others and
// returns the sites done.
func (s *Store) resolve(ctx context.Context, key string, w *keyWork, rep *report) map[int]bool {
	done := map[int]bool{}
	pending := func(i int, why string) {
		rep.add(func(r *CatchUpReport) {
			r.Pending = append(r.Pending, Pending{Site: s.sites[i].name, Key: key, Reason: why})
		})
	}
	targets := map[int]bool{}
	for i := range w.dirty {
		targets[i] = true
	}
	for i := range w.check {
		targets[i] = true
	}
	// The reference: the sites with no record for the key.
	var ref []int
	for _, i := range s.readOrder(key) {
		if !targets[i] {
			ref = append(ref, i)
		}
	}
	conflict := false
	if len(ref) == 0 {
		// Every site is recorded. Fall back on any site holding the
		// object and not reported corrupt: keeping data beats losing it.
		conflict = true
		for _, i := range s.readOrder(key) {
			if w.check[i] != Corrupt {
				ref = append(ref, i)
			}
		}
	}
	sizes := s.statAll(ctx, key, ref)
	var holders, absent []int
	unanswered := 0
	for _, i := range ref {
		switch a := sizes[i]; {
		case a.err == nil:
			holders = append(holders, i)
		case errors.Is(a.err, storage.ErrNotExist):
			absent = append(absent, i)
		default:
			unanswered++
		}
	}
	if len(holders) > 0 {
		size := commonSize(holders, func(i int) int64 { return sizes[i].size })
		var sources []int
		for _, i := range holders {
			if sizes[i].size == size {
				sources = append(sources, i)
			}
		}
		if !conflict {
			// Reference sites found lacking the object, or holding
			// another size, get it too.
			for _, i := range absent {
				targets[i] = true
				w.check[i] = Missing
			}
			for _, i := range holders {
				if sizes[i].size != size {
					targets[i] = true
					w.check[i] = Short
				}
			}
		}
		for t := range targets {
			if slices.Contains(sources, t) {
				done[t] = true
				continue
			}
			if w.check[t] != Corrupt && !w.force[t] {
				// Copy only if the site lacks the object or holds
				// another size: Reprise never writes different bytes
				// of the same size under one key, and this keeps
				// catch-up cheap to repeat (another process may have
				// done the work already).
				info, err := s.sites[t].st.Stat(ctx, key)
				if err == nil && info.Size == size {
					done[t] = true
					rep.add(func(r *CatchUpReport) { r.UpToDate++ })
					continue
				}
			}
			if err := s.copyFrom(ctx, key, sources, t, size, rep); err != nil {
				pending(t, err.Error())
				continue
			}
			done[t] = true
		}
		return done
	}
	if unanswered > 0 || len(ref) == 0 {
		why := "no site without a record for the key answered"
		if conflict {
			why = "every copy is recorded bad, missing or stale"
		}
		for t := range targets {
			pending(t, why)
		}
		return done
	}
	// No reference site holds it: it was deleted; make the others agree.
	for t := range targets {
		if !w.dirty[t] {
			done[t] = true // a missing copy of an object gone everywhere
			rep.add(func(r *CatchUpReport) { r.UpToDate++ })
			continue
		}
		start := time.Now()
		err := s.sites[t].st.Delete(ctx, key)
		s.observe(ctx, t, err, time.Since(start))
		switch {
		case err == nil:
			done[t] = true
			rep.add(func(r *CatchUpReport) {
				r.Removed = append(r.Removed, SiteKey{Site: s.sites[t].name, Key: key})
			})
		case errors.Is(err, storage.ErrNotExist):
			done[t] = true
			rep.add(func(r *CatchUpReport) { r.UpToDate++ })
		default:
			pending(t, err.Error())
		}
	}
	return done
}

type statAnswer struct {
	size int64
	err  error
}

// statAll stats key on the sites idx at once.
func (s *Store) statAll(ctx context.Context, key string, idx []int) map[int]statAnswer {
	out := make(map[int]statAnswer, len(idx))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, i := range idx {
		wg.Go(func() {
			start := time.Now()
			info, err := s.sites[i].st.Stat(ctx, key)
			s.observe(ctx, i, err, time.Since(start))
			mu.Lock()
			out[i] = statAnswer{info.Size, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// commonSize returns the size most of the sites idx report, the larger
// on a tie.
func commonSize(idx []int, size func(int) int64) int64 {
	n := map[int64]int{}
	var best int64
	bestN := 0
	for _, i := range idx {
		sz := size(i)
		n[sz]++
		if n[sz] > bestN || (n[sz] == bestN && sz > best) {
			best, bestN = sz, n[sz]
		}
	}
	return best
}

// copyFrom copies key to site to from the first of sources that serves
// it whole.
func (s *Store) copyFrom(ctx context.Context, key string, sources []int, to int, size int64, rep *report) error {
	var errs []error
	for _, from := range sources {
		err := s.copyObject(ctx, key, from, to, size)
		if err == nil {
			rep.add(func(r *CatchUpReport) {
				r.Copied = append(r.Copied, Copied{Key: key, From: s.sites[from].name, To: s.sites[to].name, Size: size})
			})
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		errs = append(errs, err)
	}
	return &multiError{msg: "copy failed", errs: errs}
}

// RetainCopies tells CatchUp and Resync which copies to put with
// storage.PutOptions.Retain, as the originals were: keys are opaque to a
// Store, and the layer above knows which objects are history to retain.
// Without it no copy is retained, so that a site rebuilt by Resync would
// hold its copies without the retention (S3 Object Lock) its originals
// had, deletable with that site's credentials. A Reprise repository opened
// on the Store sets it (packs, indexes, snapshots and run records); nil
// unsets it.
func (s *Store) RetainCopies(retain func(key string) bool) {
	if retain == nil {
		s.retain.Store(nil)
		return
	}
	s.retain.Store(&retain)
}

// copyObject copies key from one site to another.
func (s *Store) copyObject(ctx context.Context, key string, from, to int, size int64) error {
	src := &blockReaderAt{ctx: ctx, st: s.sites[from].st, key: key, size: size}
	var opts *storage.PutOptions
	if retain := s.retain.Load(); retain != nil && (*retain)(key) {
		opts = &storage.PutOptions{Retain: true}
	}
	start := time.Now()
	err := s.sites[to].st.Put(ctx, key, src, size, opts)
	s.sites[from].bytesRead.Add(src.read)
	if src.err != nil {
		s.observe(ctx, from, src.err, -1)
		return fmt.Errorf("reading %q from site %q: %w", key, s.sites[from].name, src.err)
	}
	s.observe(ctx, to, err, time.Since(start))
	if err != nil {
		return fmt.Errorf("writing %q to site %q: %w", key, s.sites[to].name, err)
	}
	s.sites[to].bytesWritten.Add(size)
	s.log.Info("multisite: copied", "key", key, "from", s.sites[from].name, "to", s.sites[to].name, "size", size)
	return nil
}

// copyBlock is the size of the ranged reads of a copy.
const copyBlock = 4 << 20

// blockReaderAt serves an object of a site as an io.ReaderAt, through
// ranged Gets of copyBlock bytes, keeping the last few blocks: sequential
// and part-parallel readers both read each block once. An answer shorter
// than the block fails the read, so a truncated source never makes a
// truncated copy.
type blockReaderAt struct {
	ctx  context.Context
	st   storage.Storage
	key  string
	size int64

	mu     sync.Mutex
	blocks []cachedBlock
	read   int64
	err    error
}

type cachedBlock struct {
	idx  int64
	data []byte
}

func (b *blockReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	n := 0
	for n < len(p) && off+int64(n) < b.size {
		at := off + int64(n)
		blk, err := b.block(at / copyBlock)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], blk[at%copyBlock:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (b *blockReaderAt) block(idx int64) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return nil, b.err
	}
	for j, c := range b.blocks {
		if c.idx == idx {
			b.blocks = append(append(b.blocks[:j:j], b.blocks[j+1:]...), c) // most recent last
			return c.data, nil
		}
	}
	start := idx * copyBlock
	want := min(copyBlock, b.size-start)
	rc, err := b.st.Get(b.ctx, b.key, start, want)
	if err != nil {
		b.err = err
		return nil, err
	}
	data := make([]byte, want)
	got, err := io.ReadFull(rc, data)
	rc.Close()
	b.read += int64(got)
	if err != nil {
		b.err = fmt.Errorf("block at offset %d: %d of %d bytes: %w", start, got, want, err)
		return nil, b.err
	}
	if len(b.blocks) >= 4 {
		b.blocks = b.blocks[1:]
	}
	b.blocks = append(b.blocks, cachedBlock{idx, data})
	return data, nil
}

// holdsObjects reports whether site i holds any object outside the
// reserved prefix.
func (s *Store) holdsObjects(ctx context.Context, i int) (bool, error) {
	errFound := errors.New("found")
	err := s.sites[i].st.List(ctx, "", func(info storage.Info) error {
		if strings.HasPrefix(info.Key, ReservedPrefix) {
			return nil
		}
		return errFound
	})
	if err == errFound {
		return true, nil
	}
	return false, err
}

// resyncInto copies each object under prefix to the sites of targets (nil
// for all) that lack it or hold another size than the most common one.
func (s *Store) resyncInto(ctx context.Context, prefix string, targets []bool, rep *report) error {
	sem := make(chan struct{}, catchUpWorkers)
	var wg sync.WaitGroup
	failed, err := s.merge(ctx, prefix, func(key string, infos []*storage.Info, known []bool) error {
		if strings.HasPrefix(key, ReservedPrefix) {
			return nil
		}
		var holders []int
		for i, in := range infos {
			if in != nil && s.deleted(i, key) {
				infos[i] = nil // a copy that should be gone: no source
			}
			if infos[i] != nil {
				holders = append(holders, i)
			}
		}
		if len(holders) == 0 {
			return ctx.Err()
		}
		size := commonSize(holders, func(i int) int64 { return infos[i].Size })
		var sources []int
		for _, i := range s.readOrder(key) {
			if infos[i] != nil && infos[i].Size == size {
				sources = append(sources, i)
			}
		}
		for t := range s.sites {
			if (targets != nil && !targets[t]) || !known[t] || (infos[t] != nil && infos[t].Size == size) {
				continue
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if err := s.copyFrom(ctx, key, sources, t, size, rep); err != nil {
					rep.add(func(r *CatchUpReport) {
						r.Pending = append(r.Pending, Pending{Site: s.sites[t].name, Key: key, Reason: err.Error()})
					})
				}
			})
		}
		return ctx.Err()
	})
	wg.Wait()
	if err != nil {
		return fmt.Errorf("multisite: resync %q: %w", prefix, err)
	}
	for i, err := range failed {
		if err != nil && (targets == nil || targets[i]) {
			rep.add(func(r *CatchUpReport) {
				r.Pending = append(r.Pending, Pending{Site: s.sites[i].name, Key: prefix, Reason: "could not list the site: " + err.Error()})
			})
		}
	}
	return nil
}

// Diff is the result of [Store.Compare].
type Diff struct {
	// Prefix is the prefix compared; Sites the sites, in configured order.
	Prefix string
	Sites  []string
	// Keys counts the distinct keys seen.
	Keys int
	// Differences lists, in key order, the keys that not every listed site
	// holds with the same size.
	Differences []KeyDiff
	// Unlisted maps the sites whose listing failed to the error: they
	// are left out of the comparison from the point of failure on.
	Unlisted map[string]string
}

// KeyDiff describes a key the sites disagree about.
type KeyDiff struct {
	// Key is the object's key.
	Key string
	// Sizes maps each site holding the key to its size.
	Sizes map[string]int64
	// Missing lists the sites lacking the key.
	Missing []string
	// Mismatched lists the sites holding a size other than the most
	// common one (the larger on a tie).
	Mismatched []string
	// Unknown lists the sites whose listing failed before the key.
	Unknown []string
}

// MissingOn returns the keys the site lacks, in key order.
func (d Diff) MissingOn(site string) []string {
	var out []string
	for _, k := range d.Differences {
		if slices.Contains(k.Missing, site) {
			out = append(out, k.Key)
		}
	}
	return out
}

// Compare lists prefix on every site and reports, per key, the sites that
// lack it or hold it with a different size. It reads no object: copies of
// equal size but different bytes need an authenticated check (repair).
// Journal keys are left out unless prefix starts with ReservedPrefix. It
// fails only when no site can be listed.
func (s *Store) Compare(ctx context.Context, prefix string) (Diff, error) {
	d := Diff{Prefix: prefix}
	for _, st := range s.sites {
		d.Sites = append(d.Sites, st.name)
	}
	if err := ctx.Err(); err != nil {
		return d, fmt.Errorf("multisite: compare %q: %w", prefix, err)
	}
	if !storage.ValidPrefix(prefix) {
		return d, fmt.Errorf("multisite: compare %q: %w", prefix, storage.ErrInvalidKey)
	}
	hide := !strings.HasPrefix(prefix, ReservedPrefix)
	failed, err := s.merge(ctx, prefix, func(key string, infos []*storage.Info, known []bool) error {
		if hide && strings.HasPrefix(key, ReservedPrefix) {
			return nil
		}
		d.Keys++
		var holders []int
		for i, in := range infos {
			if in != nil {
				holders = append(holders, i)
			}
		}
		size := commonSize(holders, func(i int) int64 { return infos[i].Size })
		kd := KeyDiff{Key: key, Sizes: map[string]int64{}}
		for i, in := range infos {
			name := s.sites[i].name
			switch {
			case in != nil:
				kd.Sizes[name] = in.Size
				if in.Size != size {
					kd.Mismatched = append(kd.Mismatched, name)
				}
			case !known[i]:
				kd.Unknown = append(kd.Unknown, name)
			default:
				kd.Missing = append(kd.Missing, name)
			}
		}
		if len(kd.Missing) > 0 || len(kd.Mismatched) > 0 {
			d.Differences = append(d.Differences, kd)
		}
		return ctx.Err()
	})
	if err != nil {
		return d, fmt.Errorf("multisite: compare %q: %w", prefix, err)
	}
	nfailed := 0
	for i, err := range failed {
		if err != nil {
			nfailed++
			if d.Unlisted == nil {
				d.Unlisted = map[string]string{}
			}
			d.Unlisted[s.sites[i].name] = err.Error()
		}
	}
	if nfailed == len(s.sites) {
		return d, fmt.Errorf("multisite: compare %q: no site could be listed: %w", prefix, s.listErr(ctx, prefix, failed))
	}
	return d, nil
}
