package repo_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/internal/repo"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/appendonly"
)

// These tests live here, as an external test package, for the lease
// refresh hook (export_test.go): a backup outlasting several refreshes
// takes a fraction of a second instead of minutes.

// auditStore records the library's own writes, above the append-only
// wrapper: deletes, and puts that are not create-only.
type auditStore struct {
	storage.Storage
	mu        sync.Mutex
	deletes   []string
	plainPuts []string
}

func (a *auditStore) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *storage.PutOptions) error {
	if opts == nil || !opts.IfNotExist {
		a.mu.Lock()
		a.plainPuts = append(a.plainPuts, key)
		a.mu.Unlock()
	}
	return a.Storage.Put(ctx, key, r, size, opts)
}

func (a *auditStore) Delete(ctx context.Context, key string) error {
	a.mu.Lock()
	a.deletes = append(a.deletes, key)
	a.mu.Unlock()
	return a.Storage.Delete(ctx, key)
}

func (a *auditStore) Unwrap() storage.Storage { return a.Storage }

// slowReader serves r in reads of at most 16 KiB, each after a pause: a
// backup of it lasts as long as needed.
type slowReader struct {
	r     io.Reader
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.pause)
	return s.r.Read(p[:min(len(p), 16<<10)])
}

// snapshotStore returns every object of st with a hash of its bytes.
func snapshotStore(t *testing.T, st storage.Storage) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := st.List(t.Context(), "", func(i storage.Info) error {
		b, err := storage.ReadAll(t.Context(), st, i.Key)
		out[i.Key] = sha256.Sum256(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func leaseKeys(t *testing.T, st storage.Storage) []string {
	t.Helper()
	var keys []string
	if err := st.List(t.Context(), "t/", func(i storage.Info) error {
		if strings.Contains(i.Key, "/l/") {
			keys = append(keys, i.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestAppendOnlyBackups(t *testing.T) {
	defer repo.SetLeaseRefresh(20 * time.Millisecond)()
	ctx := t.Context()
	fs, err := storage.NewFS(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	admin := testutil.InitRepo(t, fs, testutil.SmallChunks) // full credentials

	// The backup machine: append-only wrapper, AppendOnly set, and an
	// audit of what the library asks of the storage.
	audit := &auditStore{Storage: appendonly.New(fs)}
	cred := reprise.Credentials{Passphrase: []byte(testutil.Passphrase)}
	ao, err := reprise.Open(ctx, audit, cred, &reprise.Options{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ao.Close()
	if !ao.AppendOnly() {
		t.Fatal("AppendOnly() = false")
	}
	ten, err := ao.Tenant(ctx, "acme") // created append-only
	if err != nil {
		t.Fatal(err)
	}
	defer ten.Close()

	src := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 4))
	testutil.WriteRandomTree(t, src, rng, 40, 256<<10)
	dirRes, err := backup.Dir(ctx, ten, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A second backup, of mostly the same data, and a third lasting
	// many lease refreshes (16 KiB per 5 ms: ~0.3 s, 15 refreshes).
	if _, err := backup.Dir(ctx, ten, src, nil); err != nil {
		t.Fatal(err)
	}
	dump := testutil.RandBytes(rng, 1<<20)
	streamRes, err := backup.Stream(ctx, ten, "db.sql", &slowReader{r: bytes.NewReader(dump), pause: 5 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	audit.mu.Lock()
	deletes, plain := audit.deletes, audit.plainPuts
	audit.mu.Unlock()
	if len(deletes) != 0 || len(plain) != 0 {
		t.Fatalf("append-only backups asked to delete %q and to overwrite %q", deletes, plain)
	}

	// Every lease stays, as refreshes and a release marker; the long
	// backup's lease was refreshed several times.
	leases := leaseKeys(t, fs)
	refreshes := map[string]int{}
	released := 0
	for _, k := range leases {
		dir, name := filepath.Split(k)
		if name == "released" {
			released++
		} else {
			refreshes[dir]++
		}
	}
	if released != 3 || len(refreshes) != 3 {
		t.Fatalf("lease objects %q: want 3 leases, each released", leases)
	}
	most := maxOf(refreshes)
	t.Logf("%d lease objects; the long backup's lease was refreshed %d times", len(leases), most)
	if most < 4 {
		t.Fatalf("the long backup's lease was refreshed %d times, want several (objects %q)", most, leases)
	}

	// Reads work: listing, restores, check.
	snaps, err := ten.Snapshots(ctx)
	if err != nil || len(snaps) != 3 {
		t.Fatalf("snapshots: %d, %v", len(snaps), err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := restore.Dir(ctx, ten, dirRes.Snapshot.ID, dst, nil); err != nil {
		t.Fatal(err)
	}
	testutil.CompareTrees(t, src, dst)
	var out bytes.Buffer
	if _, err := restore.Stream(ctx, ten, streamRes.Snapshot.ID, &out, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), dump) {
		t.Fatal("the stream restored differs")
	}
	rep, err := ao.Check(ctx, &reprise.CheckOptions{ReadData: true})
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check: %v, %v", rep, err)
	}

	// Everything that deletes or rewrites is refused up front, and the
	// store is exactly as it was.
	before := snapshotStore(t, fs)
	refused := map[string]error{}
	_, refused["forget"] = ten.Forget(ctx, reprise.Retention{KeepLast: 1}, nil)
	_, refused["prune"] = ao.Prune(ctx, &reprise.PruneOptions{Grace: time.Nanosecond})
	_, refused["erase"] = ao.EraseTenant(ctx, "acme")
	_, refused["roll"] = ten.RollKey(ctx)
	_, refused["add slot"] = ao.AddKeySlot(ctx, reprise.Credentials{Passphrase: []byte("another")}, &reprise.KeySlotOptions{Argon2: testutil.FastArgon2()})
	refused["remove slot"] = ao.RemoveKeySlot(ctx, ao.KeySlots()[0].ID)
	_, refused["rotate"] = ao.RotateKey(ctx, cred, &reprise.KeySlotOptions{Argon2: testutil.FastArgon2()})
	_, refused["repair"] = ao.Repair(ctx)
	for op, err := range refused {
		if !errors.Is(err, reprise.ErrAppendOnly) {
			t.Errorf("%s in an append-only repository = %v, want ErrAppendOnly", op, err)
		}
	}
	// Dry runs change nothing: allowed.
	if ds, err := ten.Forget(ctx, reprise.Retention{KeepLast: 1}, &reprise.ForgetOptions{DryRun: true}); err != nil || len(ds) != 3 {
		t.Errorf("dry-run forget: %d decisions, %v", len(ds), err)
	}
	if _, err := ao.Prune(ctx, &reprise.PruneOptions{DryRun: true}); err != nil {
		t.Errorf("dry-run prune: %v", err)
	}
	if after := snapshotStore(t, fs); !maps.Equal(before, after) {
		t.Fatalf("refused operations changed the store: %d objects before, %d after", len(before), len(after))
	}

	// Elsewhere, with full credentials: prune removes the leases the
	// append-only backups left, and works as usual.
	aten, err := admin.OpenTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	defer aten.Close()
	if _, err := aten.Forget(ctx, reprise.Retention{KeepLast: 1}, nil); err != nil {
		t.Fatal(err)
	}
	prep, err := admin.Prune(ctx, &reprise.PruneOptions{Grace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if prep.LeasesRemoved != len(leases) {
		t.Errorf("prune removed %d lease objects, want %d", prep.LeasesRemoved, len(leases))
	}
	if left := leaseKeys(t, fs); len(left) != 0 {
		t.Errorf("lease objects left after prune: %q", left)
	}
	for range 2 {
		if _, err := admin.Prune(ctx, &reprise.PruneOptions{Grace: time.Nanosecond}); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	if _, err := restore.Stream(ctx, aten, streamRes.Snapshot.ID, &out, nil); err != nil || !bytes.Equal(out.Bytes(), dump) {
		t.Fatalf("restore after prune: %v", err)
	}
	if rep, err := admin.Check(ctx, &reprise.CheckOptions{ReadData: true}); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check after prune: %+v, %v", rep, err)
	}
}

func maxOf(m map[string]int) int {
	n := 0
	for _, v := range m {
		n = max(n, v)
	}
	return n
}

// TestAppendOnlyWithoutFlag: a repository opened normally over a store
// that refuses deletes (append-only credentials, without AppendOnly set)
// still backs up: the lease it cannot delete is marked released, and
// prune (elsewhere) removes it.
func TestAppendOnlyWithoutFlag(t *testing.T) {
	ctx := t.Context()
	mem := storage.NewMem()
	admin := testutil.InitRepo(t, mem, testutil.SmallChunks)
	r, err := reprise.Open(ctx, appendonly.New(mem), reprise.Credentials{Passphrase: []byte(testutil.Passphrase)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ten, err := r.Tenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	defer ten.Close()
	for _, s := range []string{"one", "two"} {
		if _, err := backup.Stream(ctx, ten, s, strings.NewReader(strings.Repeat(s, 100<<10)), nil); err != nil {
			t.Fatal(err)
		}
	}
	leases := leaseKeys(t, mem)
	if len(leases) != 4 || !strings.HasSuffix(leases[1], "/released") || !strings.HasSuffix(leases[3], "/released") {
		t.Fatalf("lease objects %q: want, for each backup, its first refresh and a release marker", leases)
	}
	// A forget fails with the store's refusal, not ErrAppendOnly.
	_, err = ten.Forget(ctx, reprise.Retention{KeepLast: 1}, nil)
	if !errors.Is(err, storage.ErrPermission) || errors.Is(err, reprise.ErrAppendOnly) {
		t.Fatalf("forget through a store refusing deletes = %v, want ErrPermission", err)
	}
	rep, err := admin.Prune(ctx, nil)
	if err != nil || rep.LeasesRemoved != 4 {
		t.Fatalf("prune: %+v, %v; want 4 lease objects removed", rep, err)
	}
}

// TestStaleLeasesRemoved: prune removes the leases of dead backups (no
// refresh for LeaseStale), in both layouts, and keeps the live ones.
func TestStaleLeasesRemoved(t *testing.T) {
	ctx := t.Context()
	mem := storage.NewMem()
	r := testutil.InitRepo(t, mem, testutil.SmallChunks)
	ten, err := r.Tenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	defer ten.Close()
	if _, err := backup.Stream(ctx, ten, "s", strings.NewReader("data"), nil); err != nil {
		t.Fatal(err)
	}
	var prefix string
	mem.List(ctx, "t/", func(i storage.Info) error { prefix = i.Key[:len("t/")+32+1]; return nil })
	now := time.Now().UTC()
	put := func(key, body string) {
		if err := mem.Put(ctx, prefix+"l/"+key, strings.NewReader(body), int64(len(body)), nil); err != nil {
			t.Fatal(err)
		}
	}
	lease := func(start, refreshed time.Time) string {
		return `{"start":"` + start.Format(time.RFC3339Nano) + `","refreshed":"` + refreshed.Format(time.RFC3339Nano) + `"}`
	}
	id := func(c byte) string { return strings.Repeat(string(c), 64) }
	put(id('a'), lease(now.Add(-time.Hour), now.Add(-time.Hour)))               // legacy, dead
	put(id('b'), lease(now.Add(-time.Minute), now))                             // legacy, live
	put(id('c')+"/0000000001", lease(now.Add(-time.Hour), now.Add(-time.Hour))) // dead
	put(id('d')+"/0000000001", lease(now.Add(-2*time.Minute), now.Add(-time.Minute)))
	put(id('d')+"/0000000002", lease(now.Add(-2*time.Minute), now)) // live, one superseded refresh
	put(id('e')+"/0000000001", lease(now.Add(-time.Minute), now))
	put(id('e')+"/released", lease(now.Add(-time.Minute), now)) // ended
	rep, err := r.Prune(ctx, &reprise.PruneOptions{Grace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, k := range leaseKeys(t, mem) {
		left = append(left, strings.TrimPrefix(k, prefix+"l/"))
	}
	want := []string{id('b'), id('d') + "/0000000002"}
	if rep.LeasesRemoved != 5 || !slices.Equal(left, want) {
		t.Fatalf("prune removed %d lease objects, left %q; want 5 removed, %q left", rep.LeasesRemoved, left, want)
	}
}
