package reprise_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"gocloud.dev/secrets"
	"gocloud.dev/secrets/localsecrets"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
)

func pass(s string) reprise.Credentials { return reprise.Credentials{Passphrase: []byte(s)} }

func newKeeper(t testing.TB) *secrets.Keeper {
	k, err := localsecrets.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	kp := localsecrets.NewKeeper(k)
	t.Cleanup(func() { kp.Close() })
	return kp
}

func open(t testing.TB, st storage.Storage, c reprise.Credentials) *reprise.Repository {
	t.Helper()
	r, err := reprise.Open(context.Background(), st, c, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func backupBytes(t testing.TB, ten *reprise.Tenant, data []byte) string {
	t.Helper()
	res, err := backup.Stream(context.Background(), ten, "db.sql", bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Snapshot.ID
}

func restoreBytes(t testing.TB, ten *reprise.Tenant, id string) []byte {
	t.Helper()
	var out bytes.Buffer
	if _, err := restore.Stream(context.Background(), ten, id, &out, nil); err != nil {
		t.Fatalf("restore %s: %v", id, err)
	}
	return out.Bytes()
}

// TestKeySlots: a passphrase slot and a KMS keeper slot both open the
// repository and every tenant; removing one leaves the other working.
func TestKeySlots(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	r := testutil.InitRepo(t, st, testutil.SmallChunks)
	data := testutil.RandBytes(rand.New(rand.NewPCG(1, 1)), 300<<10)
	id := backupBytes(t, tenant(t, r, "acme"), data)

	kms := newKeeper(t)
	ks, err := r.AddKeySlot(ctx, reprise.Credentials{Keeper: kms}, &reprise.KeySlotOptions{Label: "automation"})
	if err != nil {
		t.Fatal(err)
	}
	bg, err := r.AddKeySlot(ctx, pass("break-glass"), &reprise.KeySlotOptions{Label: "offline", Argon2: testutil.FastArgon2()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.KeySlots()); n != 3 {
		t.Fatalf("%d slots, want 3", n)
	}
	// A tenant created after the slots were added is wrapped to all of them.
	id2 := backupBytes(t, tenant(t, r, "globex"), data[:1000])

	for name, c := range map[string]reprise.Credentials{"kms": {Keeper: kms}, "break-glass": pass("break-glass"), "original": pass(testutil.Passphrase)} {
		r2 := open(t, st, c)
		a, err := r2.OpenTenant(ctx, "acme")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(restoreBytes(t, a, id), data) {
			t.Fatalf("%s: acme restored wrong", name)
		}
		g, _ := r2.OpenTenant(ctx, "globex")
		if !bytes.Equal(restoreBytes(t, g, id2), data[:1000]) {
			t.Fatalf("%s: globex restored wrong", name)
		}
	}
	if _, err := reprise.Open(ctx, st, reprise.Credentials{Keeper: newKeeper(t)}, nil); !errors.Is(err, reprise.ErrWrongKey) {
		t.Errorf("another KMS key: %v, want ErrWrongKey", err)
	}

	// Remove the passphrase slot we opened with: refused (in use); from the KMS session it works.
	var orig string
	for _, s := range r.KeySlots() {
		if s.InUse {
			orig = s.ID
		}
	}
	if err := r.RemoveKeySlot(ctx, orig); err == nil {
		t.Error("removed the slot in use")
	}
	rk := open(t, st, reprise.Credentials{Keeper: kms})
	if err := rk.RemoveKeySlot(ctx, orig[:8]); err != nil {
		t.Fatal(err)
	}
	if _, err := reprise.Open(ctx, st, pass(testutil.Passphrase), nil); !errors.Is(err, reprise.ErrWrongKey) {
		t.Errorf("removed passphrase still opens: %v", err)
	}
	if err := rk.RemoveKeySlot(ctx, bg.ID); err != nil {
		t.Fatal(err)
	}
	if err := rk.RemoveKeySlot(ctx, ks.ID); !errors.Is(err, reprise.ErrLastSlot) {
		t.Errorf("removing the last slot: %v, want ErrLastSlot", err)
	}
	a, err := open(t, st, reprise.Credentials{Keeper: kms}).OpenTenant(ctx, "acme")
	if err != nil || !bytes.Equal(restoreBytes(t, a, id), data) {
		t.Fatalf("after removals: %v", err)
	}
}

// TestRotateThousandTenants: rotation rewraps every tenant key and touches
// no data object.
func TestRotateThousandTenants(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	r := testutil.InitRepo(t, st, testutil.SmallChunks)
	n := 1000
	if testing.Short() {
		n = 100
	}
	data := []byte("one small database")
	ids := map[string]string{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("tenant-%04d", i)
		ten := tenant(t, r, name)
		if i%100 == 0 {
			ids[name] = backupBytes(t, ten, data)
		}
	}
	before := dataObjects(t, st)
	ks, err := r.RotateKey(ctx, pass("new passphrase"), &reprise.KeySlotOptions{Argon2: testutil.FastArgon2()})
	if err != nil {
		t.Fatal(err)
	}
	if !ks.InUse || len(r.KeySlots()) != 1 {
		t.Errorf("after rotation: %+v, %d slots", ks, len(r.KeySlots()))
	}
	if after := dataObjects(t, st); after != before {
		t.Errorf("rotation touched data objects:\n%s\n%s", before, after)
	}
	if _, err := reprise.Open(ctx, st, pass(testutil.Passphrase), nil); !errors.Is(err, reprise.ErrWrongKey) {
		t.Errorf("old passphrase after rotation: %v", err)
	}
	r2 := open(t, st, pass("new passphrase"))
	names, err := r2.Tenants(ctx)
	if err != nil || len(names) != n {
		t.Fatalf("%d tenants after rotation (%v)", len(names), err)
	}
	for name, id := range ids {
		ten, err := r2.OpenTenant(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(restoreBytes(t, ten, id), data) {
			t.Fatalf("%s restored wrong after rotation", name)
		}
	}
}

// dataObjects summarises every object under t/ (keys and sizes).
func dataObjects(t testing.TB, st storage.Storage) string {
	var b strings.Builder
	st.List(context.Background(), "t/", func(i storage.Info) error {
		fmt.Fprintf(&b, "%s:%d\n", i.Key, i.Size)
		return nil
	})
	return b.String()
}

// BenchmarkRotateKey1000 measures a KEK rotation over 1000 tenants.
func BenchmarkRotateKey1000(b *testing.B) {
	ctx := context.Background()
	st := storage.NewMem()
	r := testutil.InitRepo(b, st, testutil.SmallChunks)
	for i := 0; i < 1000; i++ {
		if _, err := r.Tenant(ctx, fmt.Sprintf("tenant-%04d", i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.RotateKey(ctx, pass("p"), &reprise.KeySlotOptions{Argon2: testutil.FastArgon2()}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "µs/tenant")
}

// TestEraseTenant copies a tenant's objects before erasure, erases it, puts
// the copies back (as an old site or a stolen disk would keep them) and
// checks that nothing of them decrypts with what the repository holds.
func TestEraseTenant(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	r := testutil.InitRepo(t, st, testutil.SmallChunks)
	secret := testutil.TextBytes(rand.New(rand.NewPCG(2, 2)), 400<<10)
	victim, other := tenant(t, r, "victim"), tenant(t, r, "other")
	backupBytes(t, victim, secret)
	otherID := backupBytes(t, other, secret[:5000])

	copies := map[string][]byte{}
	st.List(ctx, "t/", func(i storage.Info) error {
		b, err := storage.ReadAll(ctx, st, i.Key)
		copies[i.Key] = b
		return err
	})
	er, err := r.EraseTenant(ctx, "victim")
	if err != nil {
		t.Fatal(err)
	}
	n := er.Deleted
	if n == 0 || len(er.Retained) != 0 {
		t.Fatal("erase deleted no object")
	}
	r2 := open(t, st, pass(testutil.Passphrase))
	if _, err := r2.OpenTenant(ctx, "victim"); !errors.Is(err, reprise.ErrTenantNotFound) {
		t.Fatalf("erased tenant opens: %v", err)
	}
	// Put the old copies back, then try everything the repository holds:
	// a tenant of the same name gets fresh keys and cannot read them.
	restored := 0
	for k, b := range copies {
		if _, err := st.Stat(ctx, k); errors.Is(err, storage.ErrNotExist) {
			st.Put(ctx, k, bytes.NewReader(b), int64(len(b)), nil)
			restored++
		}
	}
	if restored != n {
		t.Fatalf("put back %d objects, erase deleted %d", restored, n)
	}
	again := tenant(t, r2, "victim")
	snaps, err := again.Snapshots(ctx)
	if len(snaps) != 0 || !errors.Is(err, reprise.ErrAuth) {
		t.Errorf("old snapshot objects after erasure: %d readable, err %v (want none readable, ErrAuth)", len(snaps), err)
	}
	rep, err := r2.Check(ctx, &reprise.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	authFailures := 0
	for _, p := range rep.Problems {
		if errors.Is(p, reprise.ErrAuth) && p.Tenant == "victim" {
			authFailures++
		}
	}
	if authFailures == 0 {
		t.Errorf("check read the old copies without authentication failures: %v", rep.Problems)
	}
	// The other tenant is untouched.
	if !bytes.Equal(restoreBytes(t, tenant(t, r2, "other"), otherID), secret[:5000]) {
		t.Error("other tenant damaged by erasure")
	}
}

// TestIsolationAndBinding: objects moved between tenants, or replayed
// under another name, fail authentication.
func TestIsolationAndBinding(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	r := testutil.InitRepo(t, st, testutil.SmallChunks)
	a, b := tenant(t, r, "alice"), tenant(t, r, "bob")
	data := testutil.RandBytes(rand.New(rand.NewPCG(4, 4)), 100<<10)
	backupBytes(t, a, data)
	bID := backupBytes(t, b, data)

	prefixes := map[string]string{}
	// Find each tenant's prefix by its snapshot object.
	st.List(ctx, "t/", func(i storage.Info) error {
		parts := strings.Split(i.Key, "/")
		if parts[2] == "s" {
			prefixes[parts[1]] = i.Key
		}
		return nil
	})
	if len(prefixes) != 2 {
		t.Fatalf("want 2 tenant prefixes, got %v", prefixes)
	}
	var aSnap, bSnap string
	for _, k := range prefixes {
		if strings.HasSuffix(k, bID) {
			bSnap = k
		} else {
			aSnap = k
		}
	}
	copyObj := func(from, to string) {
		data, err := storage.ReadAll(ctx, st, from)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, to, bytes.NewReader(data), int64(len(data)), nil); err != nil {
			t.Fatal(err)
		}
	}
	aPrefix := aSnap[:strings.Index(aSnap, "/s/")]
	bPrefix := bSnap[:strings.Index(bSnap, "/s/")]
	aSnapID := aSnap[strings.LastIndex(aSnap, "/")+1:]

	// 1. Alice's snapshot object moved into Bob's area (same name).
	copyObj(aSnap, bPrefix+"/s/"+aSnapID)
	// 2. Bob's snapshot replayed under another name in his own area.
	copyObj(bSnap, bPrefix+"/s/"+strings.Repeat("ab", 32))
	snaps, err := b.Snapshots(ctx)
	if len(snaps) != 1 || snaps[0].ID != bID {
		t.Errorf("bob sees %d snapshots, want only his own", len(snaps))
	}
	if !errors.Is(err, reprise.ErrAuth) || !strings.Contains(err.Error(), aSnapID) || !strings.Contains(err.Error(), strings.Repeat("ab", 32)) {
		t.Errorf("moved and replayed snapshots not reported as failing authentication: %v", err)
	}
	// 3. Alice's index replayed in Bob's area: Bob's check reports it.
	var aIndex string
	st.List(ctx, aPrefix+"/i/", func(i storage.Info) error { aIndex = i.Key; return nil })
	copyObj(aIndex, bPrefix+"/i/"+strings.Repeat("cd", 32))
	// 4. Alice's index replayed under another name in her own area.
	copyObj(aIndex, aPrefix+"/i/"+strings.Repeat("ef", 32))
	rep, err := r.Check(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		bPrefix + "/s/" + aSnapID:                  false,
		bPrefix + "/s/" + strings.Repeat("ab", 32): false,
		bPrefix + "/i/" + strings.Repeat("cd", 32): false,
		aPrefix + "/i/" + strings.Repeat("ef", 32): false,
	}
	for _, p := range rep.Problems {
		if _, ok := want[p.Object]; ok && errors.Is(p, reprise.ErrAuth) {
			want[p.Object] = true
		}
	}
	for k, found := range want {
		if !found {
			t.Errorf("check did not report %s as failing authentication; problems: %v", k, rep.Problems)
		}
	}
	// Bob still restores his data.
	if !bytes.Equal(restoreBytes(t, b, bID), data) {
		t.Error("bob's restore broken by planted objects")
	}
}

// TestRollKey: new data goes under the new generation, old stays readable.
func TestRollKey(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	r := testutil.InitRepo(t, st, testutil.SmallChunks)
	ten := tenant(t, r, "acme")
	old := testutil.RandBytes(rand.New(rand.NewPCG(5, 5)), 200<<10)
	oldID := backupBytes(t, ten, old)
	gen, err := ten.RollKey(ctx)
	if err != nil || gen != 2 {
		t.Fatalf("roll: %d %v", gen, err)
	}
	newID := backupBytes(t, ten, old) // same data: new generation stores it again
	r2 := open(t, st, pass(testutil.Passphrase))
	t2, err := r2.OpenTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{oldID, newID} {
		if !bytes.Equal(restoreBytes(t, t2, id), old) {
			t.Errorf("snapshot %s restored wrong after roll", id[:8])
		}
	}
	snaps, _ := t2.Snapshots(ctx)
	if len(snaps) != 2 || snaps[1].Stats.NewChunks == 0 {
		t.Errorf("after roll: %d snapshots; the new generation should store its own chunks", len(snaps))
	}
}
