package reprise_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/storage"
)

// retainStore imitates S3 Object Lock over an in-memory store: an object
// put with PutOptions.Retain cannot be deleted until period has passed on
// the store's own clock, which the test moves forward.
type retainStore struct {
	storage.Storage
	period time.Duration
	only   string // when set, only keys containing it are retained

	mu     sync.Mutex
	offset time.Duration
	until  map[string]time.Time
	puts   map[string]bool // key -> was put with Retain
}

func newRetainStore(period time.Duration) *retainStore {
	return &retainStore{Storage: storage.NewMem(), period: period, until: map[string]time.Time{}, puts: map[string]bool{}}
}

func (s *retainStore) now() time.Time { return time.Now().Add(s.offset) }

func (s *retainStore) advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
}

// release ends the retention of the objects whose keys contain part.
func (s *retainStore) release(part string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.until {
		if strings.Contains(k, part) {
			delete(s.until, k)
		}
	}
}

func (s *retainStore) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *storage.PutOptions) error {
	err := s.Storage.Put(ctx, key, r, size, opts)
	if err == nil {
		s.mu.Lock()
		retain := opts != nil && opts.Retain
		s.puts[key] = retain
		if retain && strings.Contains(key, s.only) {
			s.until[key] = s.now().Add(s.period)
		}
		s.mu.Unlock()
	}
	return err
}

func (s *retainStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	until, ok := s.until[key]
	if ok && until.After(s.now()) {
		s.mu.Unlock()
		return &storage.RetainedError{Key: key, Until: until}
	}
	delete(s.until, key)
	s.mu.Unlock()
	return s.Storage.Delete(ctx, key)
}

func (s *retainStore) Unwrap() storage.Storage { return s.Storage }

// keysWith lists the stored keys containing part.
func keysWith(t *testing.T, st storage.Storage, part string) []string {
	t.Helper()
	var out []string
	if err := st.List(t.Context(), "", func(i storage.Info) error {
		if strings.Contains(i.Key, part) {
			out = append(out, i.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPruneRespectsRetention: objects the storage retains are kept and
// reported; prune goes on, the repository stays sound (every index object
// names packs that exist, nothing a snapshot uses is lost), and a prune
// after the retention deletes them.
func TestPruneRespectsRetention(t *testing.T) {
	t.Run("data objects", func(t *testing.T) { testPruneRetention(t, "") })
	// Packs retained, index objects not: prune drops the packs from the
	// index and keeps them marked until it can delete them.
	t.Run("packs only", func(t *testing.T) { testPruneRetention(t, "/p/") })
}

func testPruneRetention(t *testing.T, only string) {
	ctx := context.Background()
	st := newRetainStore(10 * time.Hour)
	st.only = only
	r := testutil.InitRepo(t, st, testutil.SmallChunks)
	ten := tenant(t, r, "acme")
	rng := rand.New(rand.NewPCG(5, 6))
	dataA, dataB := testutil.RandBytes(rng, 300<<10), testutil.RandBytes(rng, 300<<10)
	idA, idB := backupBytes(t, ten, dataA), backupBytes(t, ten, dataB)

	// What is retained: data objects, never keys nor coordination.
	st.mu.Lock()
	for k, retain := range st.puts {
		data := strings.Contains(k, "/p/") || strings.Contains(k, "/i/") || strings.Contains(k, "/s/") || strings.Contains(k, "/r/")
		if retain != (data && strings.HasPrefix(k, "t/")) {
			t.Errorf("%s put with Retain=%v", k, retain)
		}
	}
	st.mu.Unlock()

	// Forget: the retained snapshot stays, reported, and it is no error.
	ds, err := ten.Forget(ctx, reprise.Retention{KeepLast: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if only == "" {
		if len(ds) != 2 || ds[1].Snapshot.ID != idA || !ds[1].Retained || ds[1].RetainedUntil.IsZero() || ds[0].Retained {
			t.Fatalf("decisions %+v: want A retained (with its end), B kept", ds)
		}
		if snaps, _ := ten.Snapshots(ctx); len(snaps) != 2 {
			t.Fatalf("%d snapshots after forgetting a retained one, want 2", len(snaps))
		}
		// The snapshot's retention ends before its data's: forget takes it.
		st.release("/s/" + idA)
		if ds, err = ten.Forget(ctx, reprise.Retention{KeepLast: 1}, nil); err != nil || ds[1].Retained {
			t.Fatalf("forget after the snapshot's retention: %+v, %v", ds, err)
		}
	} else if ds[1].Retained {
		t.Fatalf("snapshot reported retained: %+v", ds)
	}

	now := time.Now()
	if rep := mustPrune(t, r, &reprise.PruneOptions{Now: now}); rep.PacksMarked == 0 {
		t.Fatalf("first prune marked nothing: %+v", rep)
	}
	sweep := mustPrune(t, r, &reprise.PruneOptions{Now: now.Add(2 * time.Hour)})
	t.Logf("sweep under retention: %+v", sweep)
	if sweep.PacksDeleted != 0 || sweep.PacksRetained == 0 || (sweep.IndexesRetained == 0) != (only != "") ||
		len(sweep.Retained) != sweep.PacksRetained+sweep.IndexesRetained {
		t.Fatalf("sweep under retention: %+v", sweep)
	}
	checkClean(t, r)
	if !bytes.Equal(restoreBytes(t, ten, idB), dataB) {
		t.Fatal("B restores wrong")
	}
	// The retained packs stay marked: a new backup of A's data does not
	// deduplicate against them, and restores.
	idC := backupBytes(t, ten, dataA)
	if !bytes.Equal(restoreBytes(t, ten, idC), dataA) {
		t.Fatal("C restores wrong")
	}
	// Not due before the retention ends: no retry, no error.
	if again := mustPrune(t, r, &reprise.PruneOptions{Now: now.Add(3 * time.Hour)}); again.PacksDeleted != 0 || again.PacksRetained != 0 || again.PacksWaiting == 0 {
		t.Fatalf("prune before the retention ends: %+v", again)
	}
	checkClean(t, r)

	// The retention ends: the next prunes delete what was kept.
	st.advance(20 * time.Hour)
	var deleted int
	for i := range 3 {
		rep := mustPrune(t, r, &reprise.PruneOptions{Now: now.Add(time.Duration(21+i) * time.Hour)})
		if rep.PacksRetained != 0 {
			t.Fatalf("prune after the retention: %+v", rep)
		}
		deleted += rep.PacksDeleted
	}
	if deleted == 0 {
		t.Fatal("nothing deleted once the retention ended")
	}
	checkClean(t, r)
	for id, want := range map[string][]byte{idB: dataB, idC: dataA} {
		if !bytes.Equal(restoreBytes(t, ten, id), want) {
			t.Fatalf("snapshot %s restores wrong after the final prune", id[:8])
		}
	}
}

// TestEraseUnderRetention: erasing a tenant whose objects the storage
// retains destroys its keys all the same, reports the objects left, and
// erasing again after the retention deletes them.
func TestEraseUnderRetention(t *testing.T) {
	ctx := context.Background()
	st := newRetainStore(time.Hour)
	r := testutil.InitRepo(t, st, testutil.SmallChunks)
	other := tenant(t, r, "other")
	otherData := testutil.RandBytes(rand.New(rand.NewPCG(1, 2)), 50<<10)
	otherID := backupBytes(t, other, otherData)
	before := keysWith(t, st, "tenants/")
	gone := tenant(t, r, "gone")
	backupBytes(t, gone, testutil.RandBytes(rand.New(rand.NewPCG(3, 4)), 200<<10))
	envelope := ""
	for _, k := range keysWith(t, st, "tenants/") {
		if !slices.Contains(before, k) {
			envelope = k
		}
	}
	handle := strings.Split(envelope, "/")[1]

	rep, err := r.EraseTenant(ctx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Retained) == 0 || rep.RetainedUntil.IsZero() {
		t.Fatalf("erase under retention: %+v, want retained objects reported", rep)
	}
	if left := keysWith(t, st, "tenants/"+handle); len(left) != 0 {
		t.Fatalf("envelope left after erasure: %q", left)
	}
	if _, err := r.OpenTenant(ctx, "gone"); !errors.Is(err, reprise.ErrTenantNotFound) {
		t.Fatalf("erased tenant opens: %v", err)
	}
	if again, err := r.EraseTenant(ctx, "gone"); err != nil || len(again.Retained) != len(rep.Retained) {
		t.Fatalf("erasing again under retention: %+v, %v", again, err)
	}
	st.advance(2 * time.Hour)
	final, err := r.EraseTenant(ctx, "gone")
	if err != nil || len(final.Retained) != 0 || final.Deleted != len(rep.Retained) {
		t.Fatalf("erasing after the retention: %+v, %v; want %d deleted", final, err, len(rep.Retained))
	}
	if left := keysWith(t, st, "t/"+handle); len(left) != 0 {
		t.Fatalf("objects left: %q", left)
	}
	if _, err := r.EraseTenant(ctx, "gone"); !errors.Is(err, reprise.ErrTenantNotFound) {
		t.Fatalf("erasing a fully erased tenant: %v", err)
	}
	if !bytes.Equal(restoreBytes(t, other, otherID), otherData) {
		t.Fatal("the other tenant was damaged")
	}
	checkClean(t, r)
}
