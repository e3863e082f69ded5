package reprise_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
)

// TestYearOfHourlySnapshots is issue #9's "done when": a year of simulated
// hourly snapshots for 100 tenants is thinned by policy, prune reclaims
// the space, concurrent backups lose nothing.
//
// The simulated clock starts on 2025-01-01 00:00 UTC. Each tenant holds a
// small database dump (48-64 KiB of SQL-like text, deterministic from the
// tenant and the day) that changes once a day (scattered edits, sometimes
// an insertion, sometimes growth) and not within the day. Every snapshot
// is a real backup.Stream (Options.Time is the simulated hour, at a
// per-tenant minute): there is no fabricated snapshot object, so every
// snapshot the policy reasons about is listed, forgotten and restored
// through the library like any other.
//
// A real backup costs about 2 ms of CPU whatever its data (lease, index
// load, tree chunk, pack, index, snapshot and run record objects): the
// year below makes about 148,000 of them in under three minutes on this
// project's 2-core machines, and 876,000 (100 tenants x 8760 hours) would
// take well over a quarter of an hour. Hence the schedule: the first
// hourlyTenants tenants (5 of the 100) are backed up every hour of every
// day; the others at 00:MM (the day's new data) and at extraPerDay (2)
// other hours of the day, chosen per tenant and day, so that over the
// tenants every hour of the day occurs and the policy also meets sparse
// hours (its hourly rule counts hours that have a snapshot, reaching back
// several days). Intra-day snapshots of unchanged data are the cheap case
// the library must get right: they store only their tree chunk.
//
// The repository is in memory (shardedMem: storage.Mem objects, one per
// key directory; see there why not a single one).
//
// Every simulated day ends with Tenant.Forget of yearPolicy for every
// tenant (Forget judges the snapshots' own times, so it needs no clock);
// every week ends with Repository.Prune judged at the simulated time
// (PruneOptions.Now) with a grace period of yearGrace, so that what one
// weekly prune marks the next one deletes. Each weekly prune runs while
// the next day's backups of every tenant run (that day's Forget waits for
// the prune); a week later, once the prune that deletes what the
// concurrent one marked has run, every snapshot of that day still kept is
// restored and compared. Caveat of the simulation: backup leases carry
// the real clock while prune judges them against the simulated one, so
// here a running backup's lease never holds a sweep back (a live lease
// still keeps prune from marking, as left over, the packs a running
// backup has uploaded and not yet indexed); the windows are arranged so
// that no backup spans two prunes, the case leases exist for, which
// TestPruneConcurrentWithBackups covers in real time.
//
// At the end: the snapshots each tenant keeps are exactly those an
// independent implementation of the policy picks among every snapshot
// ever made (forgetting daily keeps the same set as forgetting once);
// the pack bytes stored are compared with a fresh repository holding
// only the kept snapshots' data, and with the sum of BytesAdded over all
// backups (what never pruning would keep); every surviving snapshot of
// sampleTenants tenants restores byte-identical to its day's data; Check
// (with ReadData) reports no problem.
//
// The full year runs with REPRISE_LONG=1; a scaled-down variant (6
// tenants, one of them hourly, for 40 days: weekly prunes, a change of
// month; same code) runs in the normal suite.
func TestYearOfHourlySnapshots(t *testing.T) {
	t.Run("short", func(t *testing.T) {
		runYear(t, yearConfig{tenants: 6, days: 40, hourlyTenants: 1, extraPerDay: 2, sampleTenants: 6, minReclaim: 2})
	})
	t.Run("year", func(t *testing.T) {
		if os.Getenv("REPRISE_LONG") != "1" {
			t.Skip("a year of hourly snapshots for 100 tenants takes minutes: run it with REPRISE_LONG=1 go test -run TestYearOfHourlySnapshots -timeout 20m .")
		}
		runYear(t, yearConfig{tenants: 100, days: 365, hourlyTenants: 5, extraPerDay: 2, sampleTenants: 10, minReclaim: 6})
	})
}

type yearConfig struct {
	tenants       int
	days          int
	hourlyTenants int     // tenants backed up every hour
	extraPerDay   int     // the others: at 00:MM plus this many other hours a day
	sampleTenants int     // tenants whose every surviving snapshot is restored
	minReclaim    float64 // BytesAdded over all backups / pack bytes stored at the end, at least
}

var (
	yearStart  = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	yearPolicy = reprise.Retention{KeepHourly: 24, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12, KeepYearly: 2}
)

const yearGrace = 48 * time.Hour

func dayStart(day int) time.Time { return yearStart.AddDate(0, 0, day) }

// simDB is a tenant's database dump, version day.
type simDB struct {
	tenant int
	day    int
	data   []byte
}

func newSimDB(tenant int) *simDB {
	rng := rand.New(rand.NewPCG(uint64(tenant), 0xdb))
	return &simDB{tenant: tenant, data: testutil.TextBytes(rng, 48<<10+rng.IntN(16<<10))}
}

// advance turns the dump into the next day's version.
func (db *simDB) advance() {
	db.day++
	rng := rand.New(rand.NewPCG(uint64(db.tenant), uint64(db.day)))
	for n := 1 + rng.IntN(3); n > 0; n-- { // rows updated in place
		edit := testutil.TextBytes(rng, 16+rng.IntN(48))
		copy(db.data[rng.IntN(len(db.data)-len(edit)):], edit)
	}
	if rng.IntN(4) == 0 { // rows inserted in the middle
		ins := testutil.TextBytes(rng, 32+rng.IntN(224))
		at := rng.IntN(len(db.data))
		db.data = slices.Insert(db.data, at, ins...)
	}
	if rng.IntN(5) == 0 { // rows appended
		db.data = append(db.data, testutil.TextBytes(rng, 256+rng.IntN(768))...)
	}
}

// at returns the dump of the given day (replaying from day 0).
func (db *simDB) at(day int) []byte {
	if day < db.day {
		*db = *newSimDB(db.tenant)
	}
	for db.day < day {
		db.advance()
	}
	return db.data
}

type simSnap struct {
	id string
	at time.Time
}

type simTenant struct {
	idx     int
	name    string
	ten     *reprise.Tenant
	db      *simDB
	created []simSnap // every snapshot ever made, oldest first
	// window is the day of the last backups run while a prune ran, and
	// windowData that day's dump.
	window     int
	windowData []byte
}

// hours returns the hours of day at which tenant i is backed up.
func (c *yearConfig) hours(i, day int) []int {
	hs := []int{0}
	if i < c.hourlyTenants {
		for h := 1; h < 24; h++ {
			hs = append(hs, h)
		}
		return hs
	}
	rng := rand.New(rand.NewPCG(uint64(i)<<32|uint64(day), 0x40))
	for _, h := range rng.Perm(23)[:c.extraPerDay] {
		hs = append(hs, h+1)
	}
	slices.Sort(hs)
	return hs
}

type yearStats struct {
	backups, overlapped, forgets atomic.Int64
	bytesAdded                   atomic.Int64
	pruneTime                    time.Duration
	prunes                       int
	packsDeleted                 int
	bytesDeleted                 int64
	windowsVerified              int
}

func runYear(t *testing.T, cfg yearConfig) {
	ctx := context.Background()
	began := time.Now()
	st := newShardedMem()
	r := testutil.InitRepo(t, st, testutil.SmallChunks)
	tenants := make([]*simTenant, cfg.tenants)
	for i := range tenants {
		name := fmt.Sprintf("tenant-%03d", i)
		tenants[i] = &simTenant{idx: i, name: name, ten: tenant(t, r, name), db: newSimDB(i), window: -1}
	}
	workers := runtime.GOMAXPROCS(0)
	var stats yearStats
	var pruning atomic.Bool

	// eachTenant runs fn for every tenant, on every core.
	eachTenant := func(fn func(st *simTenant) error) error {
		g, _ := errgroup.WithContext(ctx)
		g.SetLimit(workers)
		for _, st := range tenants {
			g.Go(func() error { return fn(st) })
		}
		return g.Wait()
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	forget := func(st *simTenant) error {
		if _, err := st.ten.Forget(ctx, yearPolicy, nil); err != nil {
			return fmt.Errorf("%s: forget: %w", st.name, err)
		}
		stats.forgets.Add(1)
		return nil
	}
	prune := func(now time.Time) error {
		t0 := time.Now()
		rep, err := r.Prune(ctx, &reprise.PruneOptions{Now: now, Grace: yearGrace})
		if err != nil {
			return fmt.Errorf("prune at %s: %w", now, err)
		}
		stats.pruneTime += time.Since(t0)
		stats.prunes++
		stats.packsDeleted += rep.PacksDeleted
		stats.bytesDeleted += rep.BytesDeleted
		return nil
	}
	// verifyWindow restores every snapshot still kept of the tenants'
	// last concurrent day, once the prune that deletes what the
	// concurrent prune marked has run.
	verifyWindow := func() error {
		stats.windowsVerified++
		return eachTenant(func(st *simTenant) error {
			if st.window < 0 {
				return nil
			}
			snaps, err := st.ten.Snapshots(ctx)
			if err != nil {
				return err
			}
			n := 0
			for _, s := range snaps {
				if int(s.Time.Sub(yearStart)/(24*time.Hour)) != st.window {
					continue
				}
				var out bytes.Buffer
				if _, err := restore.Stream(ctx, st.ten, s.ID, &out, nil); err != nil {
					return fmt.Errorf("%s: snapshot %s of %s, of a day backed up while a prune ran: %w", st.name, s.ShortID(), s.Time, err)
				}
				if !bytes.Equal(out.Bytes(), st.windowData) {
					return fmt.Errorf("%s: snapshot %s of %s, of a day backed up while a prune ran, restores wrong", st.name, s.ShortID(), s.Time)
				}
				n++
			}
			if n == 0 {
				return fmt.Errorf("%s: no snapshot kept of day %d (backed up while a prune ran): the policy should keep one", st.name, st.window)
			}
			st.window = -1
			return nil
		})
	}

	for day := 0; day < cfg.days; day++ {
		// The weekly prune, at midnight, runs while the day's backups do.
		concurrent := day > 0 && day%7 == 0
		var pruned chan error
		if concurrent {
			pruned = make(chan error, 1)
			pruning.Store(true)
			go func() {
				defer pruning.Store(false)
				pruned <- prune(dayStart(day))
			}()
		}
		err := eachTenant(func(st *simTenant) error {
			if day > 0 {
				st.db.advance()
			}
			for _, h := range cfg.hours(st.idx, day) {
				at := dayStart(day).Add(time.Duration(h)*time.Hour + time.Duration(st.idx%60)*time.Minute)
				during := pruning.Load()
				res, err := backup.Stream(ctx, st.ten, "db.sql", bytes.NewReader(st.db.data), &backup.Options{Time: at, Host: "sim", Files: 1})
				if err != nil {
					return fmt.Errorf("%s: backup at %s: %w", st.name, at, err)
				}
				if during || pruning.Load() {
					stats.overlapped.Add(1)
				}
				stats.backups.Add(1)
				stats.bytesAdded.Add(res.BytesAdded)
				st.created = append(st.created, simSnap{id: res.Snapshot.ID, at: res.Snapshot.Time})
			}
			if concurrent {
				return nil // Forget after the prune and the window check
			}
			return forget(st)
		})
		if concurrent {
			must(<-pruned)
		}
		must(err)
		if concurrent {
			// This prune deleted what the one a week ago marked while
			// that day's backups ran: those backups must have lost nothing.
			must(verifyWindow())
			for _, st := range tenants {
				st.window, st.windowData = day, bytes.Clone(st.db.data)
			}
			must(eachTenant(forget))
		}
		if (day+1)%30 == 0 {
			t.Logf("day %d (%s): %d backups, %v", day+1, dayStart(day).Format("2006-01-02"), stats.backups.Load(), time.Since(began).Round(time.Second))
		}
	}

	// Final prunes: mark what the last forgets left unused, sweep it after
	// the grace period, then sweep the packs that sweep repacked.
	end := dayStart(cfg.days)
	for i := 0; i < 3; i++ {
		must(prune(end.Add(time.Duration(i) * yearGrace)))
	}
	must(verifyWindow())

	// (1) Each tenant keeps exactly what the policy, applied once to every
	// snapshot ever made, keeps.
	kept, minKept, maxKept := 0, 1<<30, 0
	for _, st := range tenants {
		snaps, err := st.ten.Snapshots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := expectKept(st.created, yearPolicy)
		var got []string
		for _, s := range snaps {
			got = append(got, s.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s keeps %d snapshots, the policy %d:\n got  %v\n want %v", st.name, len(got), len(want), times(st, got), times(st, want))
		}
		kept += len(snaps)
		minKept, maxKept = min(minKept, len(snaps)), max(maxKept, len(snaps))
	}

	// (2) Space: the packs stored against a fresh repository holding only
	// the kept snapshots, and against never pruning; (3) every surviving
	// snapshot of the sample tenants restores byte-identical.
	stored := packBytes(t, st)
	freshSt := newShardedMem()
	fresh := testutil.InitRepo(t, freshSt, testutil.SmallChunks)
	var keptRaw, restored atomic.Int64
	must(eachTenant(func(st *simTenant) error {
		ft, err := fresh.Tenant(ctx, st.name)
		if err != nil {
			return err
		}
		defer ft.Close()
		snaps, err := st.ten.Snapshots(ctx) // oldest first
		if err != nil {
			return err
		}
		db := newSimDB(st.idx)
		lastDay := -1
		for _, s := range snaps {
			day := int(s.Time.Sub(yearStart) / (24 * time.Hour))
			data := db.at(day)
			if day != lastDay {
				keptRaw.Add(int64(len(data)))
				lastDay = day
			}
			if _, err := backup.Stream(ctx, ft, "db.sql", bytes.NewReader(data), &backup.Options{Time: s.Time, Host: "sim", Files: 1}); err != nil {
				return err
			}
			if st.idx >= cfg.sampleTenants {
				continue
			}
			var out bytes.Buffer
			if _, err := restore.Stream(ctx, st.ten, s.ID, &out, nil); err != nil {
				return fmt.Errorf("%s: restore %s of %s: %w", st.name, s.ShortID(), s.Time, err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				return fmt.Errorf("%s: snapshot %s of %s restores wrong (%d bytes, want %d)", st.name, s.ShortID(), s.Time, out.Len(), len(data))
			}
			restored.Add(1)
		}
		return nil
	}))
	ideal := packBytes(t, freshSt)
	never := stats.bytesAdded.Load()
	if float64(stored) > 2*float64(ideal) {
		t.Errorf("after prune %d pack bytes are stored, more than twice the %d a repository holding only the kept snapshots needs", stored, ideal)
	}
	if float64(never) < cfg.minReclaim*float64(stored) {
		t.Errorf("prune reclaimed too little: %d pack bytes stored, %d added by all backups (want at least %.1fx less)", stored, never, cfg.minReclaim)
	}

	// (4) The repository is sound, data read back included.
	t0 := time.Now()
	rep, err := r.Check(ctx, &reprise.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Errorf("check: %v", p)
	}
	checkTime := time.Since(t0)

	all, records := objectBytes(t, st)
	t.Logf("%d tenants x %d days (%d backed up hourly, the others %d times a day)", cfg.tenants, cfg.days, cfg.hourlyTenants, 1+cfg.extraPerDay)
	t.Logf("backups (snapshots created): %d, %d of them while a prune ran; forgets: %d", stats.backups.Load(), stats.overlapped.Load(), stats.forgets.Load())
	t.Logf("snapshots kept: %d (%d-%d per tenant), all as the policy expects; %d restored byte-identical (%d sample tenants, %d windows checked)",
		kept, minKept, maxKept, restored.Load(), min(cfg.sampleTenants, cfg.tenants), stats.windowsVerified)
	t.Logf("bytes added by all backups (never pruned): %d; pack bytes stored after prune: %d (%.1fx less); a repository of only the kept snapshots: %d (ratio %.2f); kept dumps, raw: %d",
		never, stored, float64(never)/float64(stored), ideal, float64(stored)/float64(ideal), keptRaw.Load())
	t.Logf("all objects under t/: %d bytes, of which run records %d (%d records: one per backup or restore, never removed)", all, records.bytes, records.count)
	t.Logf("prunes: %d, %v in all (%v each); %d packs (%d bytes) deleted; check: %v (%d packs, %d chunks)",
		stats.prunes, stats.pruneTime.Round(time.Millisecond), (stats.pruneTime / time.Duration(stats.prunes)).Round(time.Millisecond),
		stats.packsDeleted, stats.bytesDeleted, checkTime.Round(time.Millisecond), rep.Packs, rep.Chunks)
	t.Logf("wall time: %v", time.Since(began).Round(time.Millisecond))
}

// expectKept is an implementation of the retention policy independent of
// Retention.Decide: for each rule, the newest snapshot of every period,
// and of those the newest n periods. It returns the kept IDs, sorted.
func expectKept(snaps []simSnap, p reprise.Retention) []string {
	type period struct{ a, b int }
	rules := []struct {
		n      int
		period func(time.Time) period
	}{
		{p.KeepHourly, func(t time.Time) period { return period{t.YearDay() + 1000*t.Year(), t.Hour()} }},
		{p.KeepDaily, func(t time.Time) period { return period{t.Year(), t.YearDay()} }},
		{p.KeepWeekly, func(t time.Time) period { y, w := t.ISOWeek(); return period{y, w} }},
		{p.KeepMonthly, func(t time.Time) period { return period{t.Year(), int(t.Month())} }},
		{p.KeepYearly, func(t time.Time) period { return period{t.Year(), 0} }},
	}
	if p.KeepLast != 0 || p.KeepWithin != 0 {
		panic("expectKept: only periodic rules")
	}
	keep := map[string]bool{}
	for _, rule := range rules {
		newest := map[period]simSnap{}
		for _, s := range snaps {
			k := rule.period(s.at.UTC())
			if cur, ok := newest[k]; !ok || s.at.After(cur.at) {
				newest[k] = s
			}
		}
		var best []simSnap
		for _, s := range newest {
			best = append(best, s)
		}
		slices.SortFunc(best, func(a, b simSnap) int { return b.at.Compare(a.at) })
		for _, s := range best[:min(rule.n, len(best))] {
			keep[s.id] = true
		}
	}
	var ids []string
	for id := range keep {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// times renders snapshot IDs as their times, for failure messages.
func times(st *simTenant, ids []string) string {
	at := map[string]time.Time{}
	for _, s := range st.created {
		at[s.id] = s.at
	}
	var out []string
	for _, id := range ids {
		out = append(out, at[id].Format("01-02T15"))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// packBytes sums the sizes of the pack objects of every tenant.
func packBytes(t *testing.T, st storage.Storage) int64 {
	t.Helper()
	var n int64
	if err := st.List(context.Background(), "t/", func(i storage.Info) error {
		if strings.Contains(i.Key, "/p/") {
			n += i.Size
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

type objCount struct {
	count int
	bytes int64
}

// objectBytes sums every tenant object, and the run records among them.
func objectBytes(t *testing.T, st storage.Storage) (all int64, records objCount) {
	t.Helper()
	if err := st.List(context.Background(), "t/", func(i storage.Info) error {
		all += i.Size
		if strings.Contains(i.Key, "/r/") {
			records.count++
			records.bytes += i.Size
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return all, records
}

// shardedMem is an in-memory storage made of one storage.Mem per key
// directory ("t/<tenant handle>/<kind>/", and one for the rest).
// storage.Mem scans its whole map on every List, and a year of backups
// leaves more than 100,000 objects (run records: one per backup or
// restore, never removed), so each of the several Lists of each backup
// would scan them all; a storage.FS in a temporary directory (NoSync)
// made the short variant 3x slower than this on this project's virtual
// machines, most of it in system calls. Every object lives in a real
// storage.Mem, with its semantics (create-only puts, ranges, errors);
// only List routes a prefix to the shards that may hold matching keys
// and merges them.
type shardedMem struct {
	mu     sync.RWMutex
	shards map[string]*storage.Mem
}

func newShardedMem() *shardedMem { return &shardedMem{shards: map[string]*storage.Mem{}} }

// shardOf returns the shard name of a key or of a prefix, and whether a
// prefix lies within one shard.
func shardOf(key string) (string, bool) {
	if !strings.HasPrefix(key, "t/") {
		return "", false
	}
	n := 0
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			if n++; n == 3 {
				return key[:i+1], true
			}
		}
	}
	return "", false
}

func (m *shardedMem) shard(key string) *storage.Mem {
	name, _ := shardOf(key)
	m.mu.RLock()
	s := m.shards[name]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.shards[name]; s == nil {
		s = storage.NewMem()
		m.shards[name] = s
	}
	return s
}

func (m *shardedMem) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *storage.PutOptions) error {
	return m.shard(key).Put(ctx, key, r, size, opts)
}

func (m *shardedMem) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	return m.shard(key).Get(ctx, key, off, n)
}

func (m *shardedMem) Stat(ctx context.Context, key string) (storage.Info, error) {
	return m.shard(key).Stat(ctx, key)
}

func (m *shardedMem) Delete(ctx context.Context, key string) error {
	return m.shard(key).Delete(ctx, key)
}

func (m *shardedMem) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	if _, inOne := shardOf(prefix); inOne {
		return m.shard(prefix).List(ctx, prefix, fn)
	}
	m.mu.RLock()
	var shards []*storage.Mem
	for name, s := range m.shards {
		if name == "" || strings.HasPrefix(name, prefix) || strings.HasPrefix(prefix, name) {
			shards = append(shards, s)
		}
	}
	m.mu.RUnlock()
	var infos []storage.Info
	for _, s := range shards {
		if err := s.List(ctx, prefix, func(i storage.Info) error { infos = append(infos, i); return nil }); err != nil {
			return err
		}
	}
	slices.SortFunc(infos, func(a, b storage.Info) int { return strings.Compare(a.Key, b.Key) })
	for _, i := range infos {
		if err := fn(i); err != nil {
			return err
		}
	}
	return nil
}

func (m *shardedMem) Close() error { return nil }
