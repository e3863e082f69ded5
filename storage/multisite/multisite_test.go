package multisite_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/faulty"
	"github.com/reprise-backup/reprise/storage/multisite"
	"github.com/reprise-backup/reprise/storage/retry"
	"github.com/reprise-backup/reprise/storage/storagetest"
)

// ---- helpers ----

// threeSites returns three fresh in-memory sites in three domains.
func threeSites() ([]multisite.Site, []*storage.Mem) {
	mems := []*storage.Mem{storage.NewMem(), storage.NewMem(), storage.NewMem()}
	return []multisite.Site{
		{Name: "sbg1", Domain: "strasbourg", Storage: mems[0]},
		{Name: "rbx1", Domain: "roubaix", Storage: mems[1]},
		{Name: "gra1", Domain: "gravelines", Storage: mems[2]},
	}, mems
}

func newStore(t *testing.T, sites []multisite.Site, opts *multisite.Options) *multisite.Store {
	t.Helper()
	s, err := multisite.New(sites, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// body returns deterministic bytes for object i.
func body(i int) []byte {
	b := make([]byte, 100+i*37)
	for j := range b {
		b[j] = byte(i*131 + j*7 + j/251)
	}
	return b
}

func key(i int) string { return fmt.Sprintf("data/%02x/obj%03d", i%7, i) }

func put(t *testing.T, s storage.Storage, k string, b []byte) {
	t.Helper()
	if err := s.Put(t.Context(), k, bytes.NewReader(b), int64(len(b)), nil); err != nil {
		t.Fatalf("Put(%q): %v", k, err)
	}
}

func read(t *testing.T, s storage.Storage, k string, off, n int64) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), k, off, n)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", k, off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): reading: %v", k, off, n, err)
	}
	return b
}

func keys(t *testing.T, s storage.Storage, prefix string) []string {
	t.Helper()
	var out []string
	if err := s.List(t.Context(), prefix, func(i storage.Info) error {
		out = append(out, i.Key)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return out
}

// wipe deletes every object of a raw site: the site burned down and was
// rebuilt empty.
func wipe(t *testing.T, s storage.Storage) {
	t.Helper()
	for _, k := range keys(t, s, "") {
		if err := s.Delete(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
}

func copiedKeys(rep multisite.CatchUpReport, to string) []string {
	var out []string
	for _, c := range rep.Copied {
		if c.To == to {
			out = append(out, c.Key)
		}
	}
	slices.Sort(out)
	return out
}

// ---- conformance ----

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name   string
		quorum int
		down   int // site index taken down, -1 for none
	}{
		{"QuorumAll", 0, -1},
		{"Quorum2", 2, -1},
		// The first site decides create-only puts; with it down the
		// second one does.
		{"Quorum2FirstSiteDown", 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) storage.Storage {
				sites, _ := threeSites()
				if tc.down >= 0 {
					f := faulty.New(sites[tc.down].Storage, 1)
					f.Down(true)
					sites[tc.down].Storage = f
				}
				s := newStore(t, sites, &multisite.Options{WriteQuorum: tc.quorum})
				t.Cleanup(func() { s.Close() })
				return s
			}, &storagetest.Options{Objects: 300, MultipartSize: 256 << 10, Concurrency: 4}) // small: keep the suite fast
		})
	}
}

// TestConformanceFaulty runs the suite over four sites, two of which fail
// now and then, which a store with a write quorum of two must hide: the
// deciding site loses some answers (the work is done, the caller hears of
// a failure) and another site fails 10% of every kind of call.
func TestConformanceFaulty(t *testing.T) {
	seed := int64(0)
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		sites, _ := threeSites()
		sites = append(sites, multisite.Site{Name: "waw1", Domain: "warsaw", Storage: storage.NewMem()})
		seed++
		lost := faulty.New(sites[0].Storage, seed)
		lost.SetRule(faulty.OpPut, faulty.Rule{LostReplyRate: 0.3})
		lost.SetRule(faulty.OpDelete, faulty.Rule{LostReplyRate: 0.3})
		sites[0].Storage = lost
		flaky := faulty.New(sites[2].Storage, seed)
		flaky.SetRuleAll(faulty.Rule{ErrRate: 0.1})
		sites[2].Storage = flaky
		s := newStore(t, sites, &multisite.Options{WriteQuorum: 2})
		t.Cleanup(func() { s.Close() })
		return s
	}, &storagetest.Options{Objects: 300, MultipartSize: 256 << 10, Concurrency: 4})
}

// ---- configuration ----

func TestConfig(t *testing.T) {
	mem := func() storage.Storage { return storage.NewMem() }
	oneDomain := []multisite.Site{
		{Name: "a", Domain: "paris", Storage: mem()},
		{Name: "b", Domain: "paris", Storage: mem()},
	}
	_, err := multisite.New(oneDomain, nil)
	if err == nil {
		t.Fatal("New accepted two sites in one failure domain")
	}
	for _, want := range []string{`"paris"`, "fire", "every copy", "AllowSingleDomain"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("single-domain error %q does not mention %q", err, want)
		}
	}
	if _, err := multisite.New(oneDomain, &multisite.Options{AllowSingleDomain: true}); err != nil {
		t.Errorf("AllowSingleDomain: %v", err)
	}
	if _, err := multisite.New(oneDomain[:1], nil); err == nil {
		t.Error("New accepted a single site without AllowSingleDomain")
	}

	bad := []struct {
		name  string
		sites []multisite.Site
		opts  multisite.Options
		want  string
	}{
		{"no site", nil, multisite.Options{}, "no site"},
		{"duplicate", []multisite.Site{{"a", "x", mem()}, {"a", "y", mem()}}, multisite.Options{}, "two sites"},
		{"bad name", []multisite.Site{{"A b", "x", mem()}, {"c", "y", mem()}}, multisite.Options{}, "invalid name"},
		{"slash", []multisite.Site{{"a/b", "x", mem()}, {"c", "y", mem()}}, multisite.Options{}, "invalid name"},
		{"no domain", []multisite.Site{{"a", "", mem()}, {"c", "y", mem()}}, multisite.Options{}, "failure domain"},
		{"no storage", []multisite.Site{{"a", "x", nil}, {"c", "y", mem()}}, multisite.Options{}, "no storage"},
		{"quorum high", []multisite.Site{{"a", "x", mem()}, {"c", "y", mem()}}, multisite.Options{WriteQuorum: 3}, "quorum"},
		{"quorum negative", []multisite.Site{{"a", "x", mem()}, {"c", "y", mem()}}, multisite.Options{WriteQuorum: -1}, "quorum"},
		{"min domains", []multisite.Site{{"a", "x", mem()}, {"c", "y", mem()}}, multisite.Options{MinDomains: 3}, "MinDomains"},
		{"min domains over quorum", []multisite.Site{{"a", "x", mem()}, {"c", "y", mem()}}, multisite.Options{WriteQuorum: 1, MinDomains: 2}, "MinDomains"},
	}
	for _, tc := range bad {
		_, err := multisite.New(tc.sites, &tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

// ---- losing a site ----

func TestSiteDestroyed(t *testing.T) {
	ctx := t.Context()
	sites, mems := threeSites()
	s := newStore(t, sites, nil)
	const n = 40
	for i := range n {
		put(t, s, key(i), body(i))
	}

	wipe(t, mems[0]) // sbg1 burns; its replacement starts empty

	// A later process reads everything back, falling back from sbg1.
	later := newStore(t, sites, nil)
	multisite.PinReadOrder(later) // sbg1 first
	for i := range n {
		if got := read(t, later, key(i), 0, -1); !bytes.Equal(got, body(i)) {
			t.Fatalf("%s: wrong bytes after losing a site", key(i))
		}
		if got := read(t, later, key(i), 10, 50); !bytes.Equal(got, body(i)[10:60]) {
			t.Fatalf("%s: wrong range after losing a site", key(i))
		}
		if info, err := later.Stat(ctx, key(i)); err != nil || info.Size != int64(len(body(i))) {
			t.Fatalf("Stat(%s) = %+v, %v", key(i), info, err)
		}
	}
	bad := later.BadCopies()
	if len(bad) != n {
		t.Fatalf("%d bad copies recorded, want %d (one missing copy per key): %+v", len(bad), n, bad)
	}
	for _, b := range bad {
		if b.Site != "sbg1" || b.Kind != multisite.Missing {
			t.Fatalf("bad copy %+v, want sbg1 missing", b)
		}
	}
	if st := later.Stats(); st.Fallbacks == 0 {
		t.Errorf("Stats.Fallbacks = 0")
	}
	if got := len(keys(t, later, "")); got != n {
		t.Errorf("List found %d objects, want %d", got, n)
	}

	diff, err := later.Compare(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for i := range n {
		all = append(all, key(i))
	}
	slices.Sort(all)
	if diff.Keys != n || !slices.Equal(diff.MissingOn("sbg1"), all) || len(diff.MissingOn("rbx1")) != 0 {
		t.Fatalf("Compare: %d keys, missing on sbg1 %d, on rbx1 %d; want %d, %d, 0",
			diff.Keys, len(diff.MissingOn("sbg1")), len(diff.MissingOn("rbx1")), n, n)
	}

	// Catch-up sees an empty site among full ones and copies everything.
	rep, err := later.CatchUp(ctx)
	if err != nil {
		t.Fatalf("CatchUp: %v (%+v)", err, rep)
	}
	if !slices.Equal(rep.Resynced, []string{"sbg1"}) || !slices.Equal(copiedKeys(rep, "sbg1"), all) || len(rep.Copied) != n {
		t.Fatalf("CatchUp resynced %q and copied %d objects (%d to sbg1), want sbg1 and %d", rep.Resynced, len(rep.Copied), len(copiedKeys(rep, "sbg1")), n)
	}
	for i := range n {
		if got := read(t, mems[0], key(i), 0, -1); !bytes.Equal(got, body(i)) {
			t.Fatalf("sbg1 holds wrong bytes for %s after catch-up", key(i))
		}
	}
	if diff, err := later.Compare(ctx, ""); err != nil || len(diff.Differences) != 0 {
		t.Fatalf("Compare after catch-up: %+v, %v", diff.Differences, err)
	}
	if len(later.BadCopies()) != 0 {
		t.Errorf("bad copies left after catch-up: %+v", later.BadCopies())
	}
	rep, err = later.CatchUp(ctx)
	if err != nil || len(rep.Copied)+len(rep.Removed)+len(rep.Resynced) != 0 {
		t.Fatalf("second CatchUp did something: %+v, %v", rep, err)
	}

	// A partial loss leaves no record: Compare finds it, Resync fixes it.
	lost := []string{key(3), key(17), key(30)}
	slices.Sort(lost)
	for _, k := range lost {
		if err := mems[1].Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	diff, err = later.Compare(ctx, "data/")
	if err != nil || !slices.Equal(diff.MissingOn("rbx1"), lost) {
		t.Fatalf("Compare after a partial loss: missing on rbx1 %q, %v", diff.MissingOn("rbx1"), err)
	}
	rep, err = later.Resync(ctx, "")
	if err != nil || !slices.Equal(copiedKeys(rep, "rbx1"), lost) || len(rep.Copied) != 3 {
		t.Fatalf("Resync copied %+v, %v; want the 3 lost objects to rbx1", rep.Copied, err)
	}
	if diff, err := later.Compare(ctx, ""); err != nil || len(diff.Differences) != 0 {
		t.Fatalf("Compare after resync: %+v, %v", diff.Differences, err)
	}
}

// ---- damaged copies ----

func TestTruncatedAnswers(t *testing.T) {
	sites, _ := threeSites()
	f := faulty.New(sites[0].Storage, 7)
	f.SetRule(faulty.OpGet, faulty.Rule{TruncateRate: 1}) // sbg1 cuts every answer short
	sites[0].Storage = f
	s := newStore(t, sites, nil)
	multisite.PinReadOrder(s)
	const n = 12
	for i := range n {
		put(t, s, key(i), body(i))
	}
	for i := range n {
		b := body(i)
		if got := read(t, s, key(i), 0, int64(len(b))); !bytes.Equal(got, b) {
			t.Fatalf("%s: exact read of a truncated answer: %d bytes, want %d", key(i), len(got), len(b))
		}
		if got := read(t, s, key(i), 5, 40); !bytes.Equal(got, b[5:45]) {
			t.Fatalf("%s: ranged read of a truncated answer: wrong bytes", key(i))
		}
	}
	if c := f.Counts(faulty.OpGet); c.Truncations < n {
		t.Fatalf("only %d truncations injected, want at least %d (sbg1 first for every key)", c.Truncations, n)
	}
	for _, b := range s.BadCopies() {
		if b.Site != "sbg1" || b.Kind != multisite.Short {
			t.Errorf("bad copy %+v, want sbg1 short", b)
		}
	}
	if got := len(s.BadCopies()); got != n {
		t.Errorf("%d bad copies recorded, want %d", got, n)
	}
}

func TestTruncatedCopy(t *testing.T) {
	ctx := t.Context()
	sites, mems := threeSites()
	s := newStore(t, sites, nil)
	multisite.PinReadOrder(s)
	b := body(50)
	put(t, s, "packs/p1", b)
	put(t, mems[0], "packs/p1", b[:len(b)/3]) // sbg1's copy lost its tail on disk

	if got := read(t, s, "packs/p1", 0, int64(len(b))); !bytes.Equal(got, b) {
		t.Fatalf("exact read over a truncated copy: %d bytes, want %d", len(got), len(b))
	}
	if got := read(t, s, "packs/p1", int64(len(b)/2), 100); !bytes.Equal(got, b[len(b)/2:len(b)/2+100]) {
		t.Fatal("range beyond a truncated copy's end: wrong bytes")
	}
	bad := s.BadCopies()
	if len(bad) != 1 || bad[0].Site != "sbg1" || bad[0].Kind != multisite.Short {
		t.Fatalf("bad copies %+v, want sbg1 short", bad)
	}
	diff, err := s.Compare(ctx, "")
	if err != nil || len(diff.Differences) != 1 || !slices.Equal(diff.Differences[0].Mismatched, []string{"sbg1"}) {
		t.Fatalf("Compare = %+v, %v; want sbg1 mismatched", diff.Differences, err)
	}
	rep, err := s.CatchUp(ctx)
	if err != nil || !slices.Equal(copiedKeys(rep, "sbg1"), []string{"packs/p1"}) {
		t.Fatalf("CatchUp = %+v, %v; want packs/p1 copied to sbg1", rep, err)
	}
	if got := read(t, mems[0], "packs/p1", 0, -1); !bytes.Equal(got, b) {
		t.Fatal("sbg1 still holds a truncated copy after catch-up")
	}
}

// TestBitFlips shows what storage cannot do alone and how a caller that
// authenticates objects (here: by SHA-256) reads another copy through the
// Replicated interface and reports the bad one.
func TestBitFlips(t *testing.T) {
	ctx := t.Context()
	sites, mems := threeSites()
	f := faulty.New(sites[0].Storage, 3)
	f.SetRule(faulty.OpGet, faulty.Rule{FlipRate: 1})
	sites[0].Storage = f
	s := newStore(t, sites, nil)
	multisite.PinReadOrder(s)
	b := body(20)
	want := sha256.Sum256(b)
	put(t, s, "snapshots/s1", b)

	// The Store serves sbg1's flipped bytes: sizes match, storage cannot
	// tell.
	if got := read(t, s, "snapshots/s1", 0, -1); bytes.Equal(got, b) || len(got) != len(b) {
		t.Fatal("expected sbg1's flipped bytes through the Store")
	}

	// The caller sits above a retry wrapper, as a repository would.
	if _, ok := storage.AsReplicated(retry.New(storage.NewMem(), nil)); ok {
		t.Fatal("AsReplicated found a Replicated storage in a plain one")
	}
	top := retry.New(s, nil)
	rs, ok := storage.AsReplicated(top)
	if !ok {
		t.Fatal("AsReplicated found no Replicated storage below the retry wrapper")
	}
	replicas := rs.Replicas()
	if len(replicas) != 3 || replicas[0].Name != "sbg1" || replicas[0].Domain != "strasbourg" {
		t.Fatalf("Replicas = %+v", replicas)
	}
	var good []byte
	for _, r := range replicas {
		got, err := storage.ReadAll(ctx, r.Storage, "snapshots/s1")
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(got) != want {
			rs.ReportBadCopy(r.Name, "snapshots/s1", errors.New("authentication failed"))
			continue
		}
		good = got
		break
	}
	if !bytes.Equal(good, b) {
		t.Fatal("no replica served the right bytes")
	}
	bad := s.BadCopies()
	if len(bad) != 1 || bad[0].Site != "sbg1" || bad[0].Kind != multisite.Corrupt || bad[0].Reason != "authentication failed" {
		t.Fatalf("BadCopies = %+v", bad)
	}
	// From now on the Store reads sbg1's copy of it last.
	if got := read(t, top, "snapshots/s1", 0, -1); !bytes.Equal(got, b) {
		t.Fatal("the Store still serves the reported bad copy first")
	}

	// A copy damaged at rest: catch-up replaces a reported copy even at
	// the same size.
	f.ClearRules()
	damaged := bytes.Clone(b)
	damaged[7] ^= 0x10
	put(t, mems[0], "snapshots/s1", damaged)
	rep, err := s.CatchUp(ctx)
	if err != nil || len(rep.Copied) != 1 || rep.Copied[0].To != "sbg1" || rep.Copied[0].Key != "snapshots/s1" {
		t.Fatalf("CatchUp = %+v, %v; want snapshots/s1 copied to sbg1", rep, err)
	}
	if got := read(t, mems[0], "snapshots/s1", 0, -1); !bytes.Equal(got, b) {
		t.Fatal("sbg1's damaged copy was not replaced")
	}
	if len(s.BadCopies()) != 0 {
		t.Errorf("bad copy still recorded after catch-up: %+v", s.BadCopies())
	}
}

// ---- a site down ----

func TestSiteDownQuorum2(t *testing.T) {
	ctx := t.Context()
	sites, mems := threeSites()
	gra := faulty.New(mems[2], 1)
	sites[2].Storage = gra
	s := newStore(t, sites, &multisite.Options{WriteQuorum: 2})

	put(t, s, "keep/a", []byte("kept"))
	put(t, s, "keep/b", []byte("deleted while gra1 is down"))

	gra.Down(true)
	var missed []string
	for i := range 10 {
		// Create-only, as Reprise writes.
		b := body(i)
		if err := s.Put(ctx, key(i), bytes.NewReader(b), int64(len(b)), &storage.PutOptions{IfNotExist: true}); err != nil {
			t.Fatalf("create-only Put with a site down: %v", err)
		}
		missed = append(missed, key(i))
	}
	slices.Sort(missed)
	if err := s.Delete(ctx, "keep/b"); err != nil {
		t.Fatalf("Delete with a site down: %v", err)
	}

	// Recorded in memory...
	wantMissed := append(slices.Clone(missed), "keep/b")
	slices.Sort(wantMissed)
	if got := s.Missed(); len(got) != 1 || !slices.Equal(got["gra1"], wantMissed) {
		t.Fatalf("Missed = %v, want gra1: %q", got, wantMissed)
	}
	st := s.Stats()
	if st.UnderReplicated != 10 || st.MissedWrites != 10 || st.MissedDeletes != 1 || st.FailedPuts != 0 {
		t.Errorf("Stats = %+v", st)
	}
	if ss := s.SiteStatus(); ss[2].Up || ss[2].Name != "gra1" || ss[2].Missed != 11 || !ss[0].Up || ss[2].LastError == "" {
		t.Errorf("SiteStatus = %+v", ss)
	}
	// ... and in journals on the two other sites, hidden from List.
	for _, m := range mems[:2] {
		js := keys(t, m, "multisite/missed/gra1/")
		if len(js) != 11 {
			t.Fatalf("%d journal objects on a surviving site, want 11", len(js))
		}
		j, err := storage.ReadAll(ctx, m, js[0])
		if err != nil || !strings.Contains(string(j), "put keep/") && !strings.Contains(string(j), "put data/") {
			t.Fatalf("journal %q = %q, %v", js[0], j, err)
		}
	}
	if got := keys(t, s, ""); len(got) != 11 || slices.ContainsFunc(got, func(k string) bool { return strings.HasPrefix(k, "multisite/") }) {
		t.Fatalf("List(\"\") = %q: want the 11 objects, no journal", got)
	}
	if got := keys(t, s, "multisite/"); len(got) != 11 {
		t.Fatalf("List(multisite/) shows %d journal objects, want 11 (each once)", len(got))
	}
	for i := range 10 {
		if got := read(t, s, key(i), 0, -1); !bytes.Equal(got, body(i)) {
			t.Fatalf("read %s with a site down: wrong bytes", key(i))
		}
	}
	if _, err := s.Stat(ctx, "keep/b"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat of the deleted object = %v, want ErrNotExist (1 site down < quorum 2)", err)
	}

	// Another process, later: the journals tell it what gra1 missed.
	later := newStore(t, sites, &multisite.Options{WriteQuorum: 2})
	rep, err := later.CatchUp(ctx)
	if !errors.Is(err, multisite.ErrIncomplete) || len(rep.Copied) != 0 || len(rep.Pending) == 0 {
		t.Fatalf("CatchUp with gra1 still down = %+v, %v; want ErrIncomplete, nothing copied", rep, err)
	}
	if !strings.Contains(err.Error(), "gra1") {
		t.Errorf("CatchUp error %q does not name the site", err)
	}

	gra.Down(false)
	// gra1 is back and still holds keep/b, deleted meanwhile: neither the
	// process that deleted it nor the one that read the journals serves
	// it; a process that knows nothing of it yet does.
	for _, st := range []*multisite.Store{s, later} {
		if _, err := st.Stat(ctx, "keep/b"); !errors.Is(err, storage.ErrNotExist) {
			t.Fatalf("Stat of an object deleted while gra1 was down = %v, want ErrNotExist", err)
		}
		if slices.Contains(keys(t, st, "keep/"), "keep/b") {
			t.Fatal("List shows an object deleted while gra1 was down")
		}
	}
	if unaware := newStore(t, sites, nil); !slices.Contains(keys(t, unaware, "keep/"), "keep/b") {
		t.Fatal("expected a Store that read no journal to list gra1's stale copy (documented)")
	}
	rep, err = later.CatchUp(ctx)
	if err != nil {
		t.Fatalf("CatchUp: %v", err)
	}
	if !slices.Equal(copiedKeys(rep, "gra1"), missed) || len(rep.Copied) != len(missed) {
		t.Fatalf("CatchUp copied %+v, want exactly %q to gra1", rep.Copied, missed)
	}
	if len(rep.Removed) != 1 || rep.Removed[0] != (multisite.SiteKey{Site: "gra1", Key: "keep/b"}) {
		t.Fatalf("CatchUp removed %+v, want keep/b from gra1", rep.Removed)
	}
	if rep.JournalsRead != 11 || rep.JournalsRemoved != 11 {
		t.Errorf("journals read %d, removed %d; want 11, 11", rep.JournalsRead, rep.JournalsRemoved)
	}
	for _, m := range mems {
		if js := keys(t, m, "multisite/"); len(js) != 0 {
			t.Fatalf("journals left after catch-up: %q", js)
		}
	}
	want := append(slices.Clone(missed), "keep/a")
	slices.Sort(want)
	if got := keys(t, mems[2], ""); !slices.Equal(got, want) {
		t.Fatalf("gra1 holds %q after catch-up, want %q", got, want)
	}
	for i := range 10 {
		if got := read(t, mems[2], key(i), 0, -1); !bytes.Equal(got, body(i)) {
			t.Fatalf("gra1: wrong bytes for %s", key(i))
		}
	}
	// Idempotent, also for the first process, whose memory still lists
	// what gra1 missed: nothing left to copy.
	for _, st := range []*multisite.Store{later, s} {
		rep, err = st.CatchUp(ctx)
		if err != nil || len(rep.Copied) != 0 || len(rep.Removed) != 0 {
			t.Fatalf("repeated CatchUp = %+v, %v; want nothing done", rep, err)
		}
	}
	if got := s.Missed(); len(got) != 0 {
		t.Errorf("Missed after catch-up = %v", got)
	}
}

func TestSiteDownQuorumAll(t *testing.T) {
	ctx := t.Context()
	sites, mems := threeSites()
	gra := faulty.New(mems[2], 1)
	sites[2].Storage = gra
	s := newStore(t, sites, nil)
	gra.Down(true)

	b := body(1)
	err := s.Put(ctx, "packs/x", bytes.NewReader(b), int64(len(b)), nil)
	if !errors.Is(err, multisite.ErrQuorum) {
		t.Fatalf("Put with a site down and quorum all = %v, want ErrQuorum", err)
	}
	for _, want := range []string{`"gra1"`, "gravelines", "2 of 3 sites"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if !errors.Is(err, faulty.ErrDown) || !errors.Is(err, storage.ErrTransient) {
		t.Errorf("error %v does not wrap the site's error", err)
	}
	if st := s.Stats(); st.FailedPuts != 1 || st.Puts != 0 {
		t.Errorf("Stats = %+v", st)
	}
	// The copies stay, gra1 is journaled; a retry once it is back works.
	if got := s.Missed()["gra1"]; !slices.Equal(got, []string{"packs/x"}) {
		t.Errorf("Missed = %v", s.Missed())
	}
	gra.Down(false)
	put(t, s, "packs/x", b)
	if got := s.Missed(); len(got) != 0 {
		t.Errorf("Missed after a successful retry = %v", got)
	}

	// Reads need fewer than quorum (3) sites silent to say "missing".
	gra.Down(true)
	if _, err := s.Stat(ctx, "packs/none"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Stat of a missing key with 1 of 3 sites down = %v, want ErrNotExist", err)
	}
}

func TestNotExistNeedsEnoughSites(t *testing.T) {
	sites, mems := threeSites()
	gra := faulty.New(mems[2], 1)
	sites[2].Storage = gra
	s := newStore(t, sites, &multisite.Options{WriteQuorum: 1, MinDomains: 1})
	gra.Down(true)
	// With quorum 1, a durable object may sit on gra1 alone.
	_, err := s.Stat(t.Context(), "packs/none")
	if err == nil || errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat with quorum 1 and a site down = %v, want a failure that is not ErrNotExist", err)
	}
	if !errors.Is(err, storage.ErrTransient) {
		t.Errorf("error %v is not transient", err)
	}
	rc, err := s.Get(t.Context(), "packs/none", 0, -1)
	if err == nil {
		rc.Close()
	}
	if err == nil || errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Get with quorum 1 and a site down = %v, want a failure that is not ErrNotExist", err)
	}
}

func TestDomainsOfQuorum(t *testing.T) {
	mems := []*storage.Mem{storage.NewMem(), storage.NewMem(), storage.NewMem()}
	down := faulty.New(mems[2], 1)
	sites := []multisite.Site{
		{Name: "par1", Domain: "paris", Storage: mems[0]},
		{Name: "par2", Domain: "paris", Storage: mems[1]},
		{Name: "lon1", Domain: "london", Storage: down},
	}
	s := newStore(t, sites, &multisite.Options{WriteQuorum: 2})
	down.Down(true)
	b := []byte("x")
	err := s.Put(t.Context(), "k", bytes.NewReader(b), 1, nil)
	if !errors.Is(err, multisite.ErrQuorum) || !strings.Contains(err.Error(), "2 failure domains") {
		t.Fatalf("Put on two sites of one domain = %v, want ErrQuorum naming the domains", err)
	}
	s1 := newStore(t, sites, &multisite.Options{WriteQuorum: 2, MinDomains: 1})
	put(t, s1, "k", b)
}

// ---- concurrency ----

// gate counts the puts in flight on all sites, and holds each put until
// want are in flight (or a generous timeout passes), so that a Store
// writing one site after another shows a maximum of 1.
type gate struct {
	want     int32
	inFlight atomic.Int32
	max      atomic.Int32
	once     sync.Once
	all      chan struct{}
}

type gated struct {
	storage.Storage
	g *gate
}

func (g *gated) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *storage.PutOptions) error {
	n := g.g.inFlight.Add(1)
	defer g.g.inFlight.Add(-1)
	for {
		m := g.g.max.Load()
		if n <= m || g.g.max.CompareAndSwap(m, n) {
			break
		}
	}
	if n >= g.g.want {
		g.g.once.Do(func() { close(g.g.all) })
	}
	select {
	case <-g.g.all:
	case <-time.After(5 * time.Second):
	}
	return g.Storage.Put(ctx, key, r, size, opts)
}

func TestWritesAreConcurrent(t *testing.T) {
	sites, _ := threeSites()
	g := &gate{want: 3, all: make(chan struct{})}
	for i := range sites {
		f := faulty.New(sites[i].Storage, int64(i))
		f.SetRule(faulty.OpPut, faulty.Rule{Latency: 20 * time.Millisecond})
		sites[i].Storage = &gated{Storage: f, g: g}
	}
	s := newStore(t, sites, nil)
	put(t, s, "packs/p", body(3))
	if m := g.max.Load(); m != 3 {
		t.Fatalf("plain put: at most %d site puts in flight at once, want 3", m)
	}
	// Create-only puts too (Reprise writes everything create-only).
	g.max.Store(0)
	g.once, g.all = sync.Once{}, make(chan struct{})
	b := body(4)
	if err := s.Put(t.Context(), "packs/q", bytes.NewReader(b), int64(len(b)), &storage.PutOptions{IfNotExist: true}); err != nil {
		t.Fatal(err)
	}
	if m := g.max.Load(); m != 3 {
		t.Fatalf("create-only put: at most %d site puts in flight at once, want 3", m)
	}
}

func TestSlowSiteGrace(t *testing.T) {
	sites, mems := threeSites()
	slow := faulty.New(mems[2], 1)
	slow.SetRule(faulty.OpPut, faulty.Rule{Latency: time.Hour})
	sites[2].Storage = slow
	s := newStore(t, sites, &multisite.Options{WriteQuorum: 2, SlowSiteGrace: time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // never reached when the grace works
	defer cancel()
	b := body(4)
	if err := s.Put(ctx, "packs/slow", bytes.NewReader(b), int64(len(b)), nil); err != nil {
		t.Fatalf("Put with a slow site: %v", err)
	}
	if got := s.Missed()["gra1"]; !slices.Equal(got, []string{"packs/slow"}) {
		t.Fatalf("Missed = %v, want packs/slow missed by gra1", s.Missed())
	}
	if ss := s.SiteStatus()[2]; ss.Up || !strings.Contains(ss.LastError, "cut off") {
		t.Errorf("slow site status = %+v", ss)
	}
}

// ---- create-only ----

func TestCreateOnlyWhenFirstSiteLostTheObject(t *testing.T) {
	ctx := t.Context()
	sites, mems := threeSites()
	s := newStore(t, sites, nil)
	old := []byte("the existing envelope")
	put(t, s, "envelope", old)
	wipe(t, mems[0]) // the deciding site lost it
	multisite.SetClaimWait(s, 20*time.Millisecond)

	mine := []byte("another envelope")
	err := s.Put(ctx, "envelope", bytes.NewReader(mine), int64(len(mine)), &storage.PutOptions{IfNotExist: true})
	if !errors.Is(err, storage.ErrExist) {
		t.Fatalf("create-only Put over an object sbg1 lost = %v, want ErrExist", err)
	}
	if _, err := mems[0].Stat(ctx, "envelope"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("sbg1 kept the losing copy: %v", err)
	}
	for _, m := range mems[1:] {
		if got := read(t, m, "envelope", 0, -1); !bytes.Equal(got, old) {
			t.Fatalf("existing copy changed: %q", got)
		}
	}
	if got := s.Missed()["sbg1"]; !slices.Equal(got, []string{"envelope"}) {
		t.Fatalf("Missed = %v", s.Missed())
	}
	rep, err := s.CatchUp(ctx)
	if err != nil || !slices.Equal(copiedKeys(rep, "sbg1"), []string{"envelope"}) {
		t.Fatalf("CatchUp = %+v, %v", rep, err)
	}
	if got := read(t, mems[0], "envelope", 0, -1); !bytes.Equal(got, old) {
		t.Fatalf("sbg1 holds %q after catch-up", got)
	}
}

func TestCreateOnlyShortOfQuorum(t *testing.T) {
	ctx := t.Context()
	sites, mems := threeSites()
	gra := faulty.New(mems[2], 1)
	sites[2].Storage = gra
	s := newStore(t, sites, nil)
	gra.Down(true)
	b := []byte("config")
	create := &storage.PutOptions{IfNotExist: true}
	err := s.Put(ctx, "config", bytes.NewReader(b), int64(len(b)), create)
	if !errors.Is(err, multisite.ErrQuorum) || !strings.Contains(err.Error(), "gra1") {
		t.Fatalf("create-only Put short of quorum = %v, want ErrQuorum naming gra1", err)
	}
	// Not transient: a retry would find the key taken (the copies stay,
	// since a concurrent reader may already use them).
	if errors.Is(err, storage.ErrTransient) {
		t.Errorf("create-only quorum failure %v is transient", err)
	}
	if got := read(t, s, "config", 0, -1); !bytes.Equal(got, b) {
		t.Fatalf("config = %q", got)
	}
	if err := s.Put(ctx, "config", bytes.NewReader(b), int64(len(b)), create); !errors.Is(err, storage.ErrExist) {
		t.Fatalf("second create-only Put = %v, want ErrExist", err)
	}
	gra.Down(false)
	if rep, err := s.CatchUp(ctx); err != nil || !slices.Equal(copiedKeys(rep, "gra1"), []string{"config"}) {
		t.Fatalf("CatchUp = %+v, %v", rep, err)
	}
}

// ---- reads ----

func TestFailingSiteIsReadLast(t *testing.T) {
	sites, mems := threeSites()
	sbg := faulty.New(mems[0], 1)
	sites[0].Storage = sbg
	s := newStore(t, sites, nil)
	multisite.PinReadOrder(s) // sbg1 first while healthy
	put(t, s, "k", []byte("v"))
	sbg.Down(true)
	const reads = 20
	for range reads {
		if got := read(t, s, "k", 0, -1); string(got) != "v" {
			t.Fatalf("read %q", got)
		}
	}
	// Tried once, then demoted for a while (5s, doubling per failure).
	if c := sbg.Counts(faulty.OpGet); c.DownRejects < 1 || c.DownRejects > reads/4 {
		t.Fatalf("the down site was tried %d times in %d reads", c.DownRejects, reads)
	}
	if r := s.Replicas(); r[2].Name != "sbg1" {
		t.Errorf("Replicas order %q..., want the failing sbg1 last", r[0].Name)
	}
}

func TestReaderResumesOnAnotherSite(t *testing.T) {
	sites, mems := threeSites()
	sbg := faulty.New(mems[0], 1)
	sbg.SetRule(faulty.OpGet, faulty.Rule{ReadErrRate: 1})
	sites[0].Storage = sbg
	s := newStore(t, sites, nil)
	multisite.PinReadOrder(s)
	b := body(60)
	put(t, s, "packs/big", b)
	for _, n := range []int64{-1, int64(len(b)), 500} {
		want := b
		if n >= 0 {
			want = b[:n]
		}
		if got := read(t, s, "packs/big", 0, n); !bytes.Equal(got, want) {
			t.Fatalf("read (n=%d) through a connection that drops: %d bytes, want %d", n, len(got), len(want))
		}
	}
	if c := sbg.Counts(faulty.OpGet); c.ReadErrors == 0 {
		t.Fatal("no read error injected")
	}
}

func TestListWithoutAnySite(t *testing.T) {
	sites, mems := threeSites()
	var fs []*faulty.Store
	for i := range sites {
		f := faulty.New(mems[i], 1)
		fs = append(fs, f)
		sites[i].Storage = f
	}
	s := newStore(t, sites, nil)
	put(t, s, "a", []byte("1"))
	fs[1].Down(true)
	if got := keys(t, s, ""); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("List with one site down = %q", got)
	}
	if s.Stats().PartialLists != 1 {
		t.Errorf("PartialLists = %d", s.Stats().PartialLists)
	}
	for _, f := range fs {
		f.Down(true)
	}
	err := s.List(t.Context(), "", func(storage.Info) error { return nil })
	if err == nil || !errors.Is(err, faulty.ErrDown) {
		t.Fatalf("List with every site down = %v", err)
	}
}

func TestReservedKeys(t *testing.T) {
	sites, _ := threeSites()
	s := newStore(t, sites, nil)
	err := s.Put(t.Context(), "multisite/x", bytes.NewReader(nil), 0, nil)
	if !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("Put under the reserved prefix = %v", err)
	}
	if err := s.Delete(t.Context(), "multisite/x"); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("Delete under the reserved prefix = %v", err)
	}
}

// after holds the puts whose data starts with waiter until a put of other
// data has been stored: it decides the order in which two concurrent
// creators reach the site.
type after struct {
	storage.Storage
	waiter byte
	once   sync.Once
	ready  chan struct{}
}

func (a *after) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *storage.PutOptions) error {
	first := make([]byte, 1)
	r.ReadAt(first, 0)
	if first[0] == a.waiter {
		select {
		case <-a.ready:
		case <-time.After(10 * time.Second):
		}
		return a.Storage.Put(ctx, key, r, size, opts)
	}
	err := a.Storage.Put(ctx, key, r, size, opts)
	a.once.Do(func() { close(a.ready) })
	return err
}

// TestCreateOnlyRaceAcrossSites makes two creators win different sites:
// A wins the deciding site sbg1, B the two others. A must end up the only
// winner, with its bytes on every site.
func TestCreateOnlyRaceAcrossSites(t *testing.T) {
	ctx := t.Context()
	sites, mems := threeSites()
	sites[0].Storage = &after{Storage: mems[0], waiter: 'B', ready: make(chan struct{})}
	for i := 1; i < 3; i++ {
		sites[i].Storage = &after{Storage: mems[i], waiter: 'A', ready: make(chan struct{})}
	}
	s := newStore(t, sites, nil)
	a, b := []byte("A's envelope"), []byte("B's envelope")
	var errA, errB error
	var wg sync.WaitGroup
	create := &storage.PutOptions{IfNotExist: true}
	wg.Go(func() { errA = s.Put(ctx, "envelope", bytes.NewReader(a), int64(len(a)), create) })
	wg.Go(func() { errB = s.Put(ctx, "envelope", bytes.NewReader(b), int64(len(b)), create) })
	wg.Wait()
	if errA != nil || !errors.Is(errB, storage.ErrExist) {
		t.Fatalf("A: %v, B: %v; want A to win (it holds the deciding site) and B ErrExist", errA, errB)
	}
	for i, m := range mems {
		if got := read(t, m, "envelope", 0, -1); !bytes.Equal(got, a) {
			t.Fatalf("site %d holds %q, want A's bytes", i, got)
		}
	}
}

// TestCreateOnlyFirstSiteFailedForThisPut covers a deciding site that
// failed for this put: either its answer was lost (it holds our bytes:
// success) or it answered a rival creator (it holds other bytes: the
// rival wins).
func TestCreateOnlyFirstSiteFailedForThisPut(t *testing.T) {
	ctx := t.Context()
	create := &storage.PutOptions{IfNotExist: true}
	mine := []byte("mine")

	t.Run("LostAnswer", func(t *testing.T) {
		sites, mems := threeSites()
		f := faulty.New(mems[0], 1)
		f.SetRule(faulty.OpPut, faulty.Rule{LostReplyRate: 1})
		sites[0].Storage = f
		s := newStore(t, sites, nil)
		if err := s.Put(ctx, "envelope", bytes.NewReader(mine), int64(len(mine)), create); err != nil {
			t.Fatalf("create-only Put whose first answer was lost: %v", err)
		}
		if len(s.Missed()) != 0 {
			t.Errorf("Missed = %v, want nothing (sbg1 holds the object)", s.Missed())
		}
		for _, m := range mems {
			if got := read(t, m, "envelope", 0, -1); !bytes.Equal(got, mine) {
				t.Fatalf("a site holds %q", got)
			}
		}
	})

	t.Run("Rival", func(t *testing.T) {
		sites, mems := threeSites()
		rival := []byte("rival's")
		put(t, mems[0], "envelope", rival) // a rival decided on sbg1...
		f := faulty.New(mems[0], 1)
		f.SetRule(faulty.OpPut, faulty.Rule{ErrRate: 1}) // ...which failed for us
		sites[0].Storage = f
		s := newStore(t, sites, nil)
		err := s.Put(ctx, "envelope", bytes.NewReader(mine), int64(len(mine)), create)
		if !errors.Is(err, storage.ErrExist) {
			t.Fatalf("create-only Put against a rival on the first site = %v, want ErrExist", err)
		}
		for _, m := range mems[1:] {
			if _, err := m.Stat(ctx, "envelope"); !errors.Is(err, storage.ErrNotExist) {
				t.Fatalf("our copy was not withdrawn: %v", err)
			}
		}
		rep, err := s.CatchUp(ctx)
		if err != nil || len(rep.Copied) != 2 {
			t.Fatalf("CatchUp = %+v, %v; want the rival's object copied to 2 sites", rep, err)
		}
		for _, m := range mems {
			if got := read(t, m, "envelope", 0, -1); !bytes.Equal(got, rival) {
				t.Fatalf("a site holds %q, want the rival's bytes", got)
			}
		}
	})
}
