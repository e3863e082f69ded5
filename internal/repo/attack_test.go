package repo

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/storage"
)

// These tests play an attacker who can read and write the backend but holds
// no key, and a second administrator racing the first.

var testCred = Credentials{Passphrase: []byte("pw")}

func setup(t *testing.T) (storage.Storage, *Repo) {
	t.Helper()
	st := storage.NewMem()
	r, err := Init(context.Background(), st, testCred, InitOptions{
		Chunker: format.Chunker{Min: 4096, Avg: 16384, Max: 65536}, PackSize: 1 << 20,
		Argon2: &crypto.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st, r
}

func putJSONT(t *testing.T, st storage.Storage, key string, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := st.Put(context.Background(), key, bytes.NewReader(b), int64(len(b)), nil); err != nil {
		t.Fatal(err)
	}
}

func onlySlot(t *testing.T, st storage.Storage) *format.Slot {
	t.Helper()
	var s *format.Slot
	st.List(context.Background(), "keys/", func(i storage.Info) error {
		b, _ := storage.ReadAll(context.Background(), st, i.Key)
		s, _ = format.ParseSlot(b)
		return nil
	})
	return s
}

func latestEnvelope(t *testing.T, st storage.Storage) (string, *format.Envelope, format.Handle) {
	t.Helper()
	var key string
	st.List(context.Background(), "tenants/", func(i storage.Info) error { key = i.Key; return nil })
	b, _ := storage.ReadAll(context.Background(), st, key)
	env, err := format.ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	var h format.Handle
	hex.Decode(h[:], []byte(strings.Split(key, "/")[1]))
	return key, env, h
}

// An attacker appends a generation whose root key it chose (wrapping to a
// slot's public key needs no secret). The tenant refuses to open instead
// of writing new data under the attacker's key.
func TestPlantedGenerationRefused(t *testing.T) {
	ctx := context.Background()
	st, r := setup(t)
	if _, err := r.Tenant(ctx, "acme", true); err != nil {
		t.Fatal(err)
	}
	slot := onlySlot(t, st)
	key, env, h := latestEnvelope(t, st)
	evil, _ := crypto.RandomKey()
	stz, _ := crypto.WrapToPublic(slot.PublicKey, &evil, format.TenantKeyAD(&r.Config.ID, &h, 2, &slot.ID))
	env.Generations = append(env.Generations, format.Generation{Gen: 2, Keys: map[string][]byte{slot.ID.String(): stz}, MAC: make([]byte, 32)})
	putJSONT(t, st, key, env)

	r2, err := Open(ctx, st, testCred, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Tenant(ctx, "acme", false); !errors.Is(err, crypto.ErrAuth) {
		t.Fatalf("tenant with a planted generation opened: %v", err)
	}
}

// An attacker plants a key slot of its own, MACed under a key it chose: it
// is ignored, and new tenants' keys are not wrapped to it.
func TestPlantedSlotIgnored(t *testing.T) {
	ctx := context.Background()
	st, _ := setup(t)
	slot := onlySlot(t, st)
	fake, _ := crypto.RandomKey()
	evil, _ := crypto.GenerateSlotKey()
	eid, _ := crypto.RandomID()
	planted := &format.Slot{Version: 1, ID: eid, Type: format.SlotPassphrase, Argon2: slot.Argon2,
		PublicKey: evil.Public(), Secret: make([]byte, format.SlotSecretSize+crypto.BoxOverhead)}
	planted.MAC = format.SlotMAC(&fake, &slot.ID, planted)
	putJSONT(t, st, slotKeyName(eid), planted)

	r2, err := Open(ctx, st, testCred, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r2.Slots()); n != 1 {
		t.Fatalf("%d slots accepted, want only the genuine one", n)
	}
	if _, err := r2.Tenant(ctx, "globex", true); err != nil {
		t.Fatal(err)
	}
	_, env, _ := latestEnvelope(t, st)
	if _, ok := env.Generations[0].Keys[eid.String()]; ok {
		t.Fatal("new tenant's key wrapped to a planted slot")
	}

	// Replacing the genuine slot's public key is detected at open.
	slot.PublicKey = evil.Public()
	putJSONT(t, st, slotKeyName(slot.ID), slot)
	if _, err := Open(ctx, st, testCred, nil); err == nil {
		t.Fatal("open accepted a slot whose public key was replaced")
	}
}

// hookStore runs hook once, right after the first envelope read.
type hookStore struct {
	storage.Storage
	once sync.Once
	arm  bool
	hook func()
}

func (h *hookStore) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := h.Storage.Get(ctx, key, off, n)
	if h.arm && strings.HasPrefix(key, "tenants/") {
		h.once.Do(h.hook)
	}
	return rc, err
}

// Two administrators roll the same tenant's key at the same moment: both
// generations survive (envelope versions are written create-only).
func TestConcurrentRollsLoseNothing(t *testing.T) {
	ctx := context.Background()
	mem, r := setup(t)
	if _, err := r.Tenant(ctx, "acme", true); err != nil {
		t.Fatal(err)
	}
	hs := &hookStore{Storage: mem}
	ra, _ := Open(ctx, mem, testCred, nil)
	rb, _ := Open(ctx, hs, testCred, nil)
	ta, _ := ra.Tenant(ctx, "acme", false)
	tb, _ := rb.Tenant(ctx, "acme", false)
	var genA uint32
	var errA error
	hs.hook = func() { genA, errA = ta.Roll(ctx) } // A rolls while B is between read and write
	hs.arm = true
	genB, err := tb.Roll(ctx)
	if err != nil || errA != nil {
		t.Fatal(err, errA)
	}
	if genA == genB {
		t.Fatalf("both rolls produced generation %d", genA)
	}
	rc, _ := Open(ctx, mem, testCred, nil)
	tc, err := rc.Tenant(ctx, "acme", false)
	if err != nil {
		t.Fatal(err)
	}
	_, ka := ta.Current()
	_, kb := tb.Current()
	for _, g := range []struct {
		gen  uint32
		keys *crypto.TenantKeys
	}{{genA, ka}, {genB, kb}} {
		k, err := tc.Keys(g.gen)
		if err != nil || !k.Data.Equal(&g.keys.Data) {
			t.Errorf("generation %d lost or changed: %v", g.gen, err)
		}
	}
}
