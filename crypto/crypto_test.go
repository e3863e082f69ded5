package crypto

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

func mustKey(t testing.TB) Key {
	k, err := RandomKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestObjectCipherBindsEverything(t *testing.T) {
	k := mustKey(t)
	id1, _ := RandomID()
	id2, _ := RandomID()
	c1, _ := NewObjectCipher(&k, &id1)
	c2, _ := NewObjectCipher(&k, &id2)
	pt := []byte("tenant data")
	sealed := c1.Seal(nil, 7, pt, []byte("ad"))
	if got, err := c1.Open(nil, 7, sealed, []byte("ad")); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open: %q %v", got, err)
	}
	other := mustKey(t)
	c3, _ := NewObjectCipher(&other, &id1)
	for name, open := range map[string]func() ([]byte, error){
		"other object": func() ([]byte, error) { return c2.Open(nil, 7, sealed, []byte("ad")) },
		"other seq":    func() ([]byte, error) { return c1.Open(nil, 8, sealed, []byte("ad")) },
		"other ad":     func() ([]byte, error) { return c1.Open(nil, 7, sealed, []byte("AD")) },
		"other key":    func() ([]byte, error) { return c3.Open(nil, 7, sealed, []byte("ad")) },
		"truncated":    func() ([]byte, error) { return c1.Open(nil, 7, sealed[:len(sealed)-1], []byte("ad")) },
		"flipped": func() ([]byte, error) {
			b := bytes.Clone(sealed)
			b[0] ^= 1
			return c1.Open(nil, 7, b, []byte("ad"))
		},
	} {
		if _, err := open(); !errors.Is(err, ErrAuth) {
			t.Errorf("%s: %v, want ErrAuth", name, err)
		}
	}
}

func TestWrapKeyAndStanzas(t *testing.T) {
	kek, key := mustKey(t), mustKey(t)
	w, err := WrapKey(&kek, &key, []byte("slot 1"))
	if err != nil || len(w) != WrappedKeySize {
		t.Fatal(err, len(w))
	}
	if got, err := UnwrapKey(&kek, w, []byte("slot 1")); err != nil || !got.Equal(&key) {
		t.Fatal("unwrap", err)
	}
	if _, err := UnwrapKey(&kek, w, []byte("slot 2")); !errors.Is(err, ErrIncorrectKey) {
		t.Errorf("other ad: %v", err)
	}
	wrong := mustKey(t)
	if _, err := UnwrapKey(&wrong, w, []byte("slot 1")); !errors.Is(err, ErrIncorrectKey) {
		t.Errorf("other kek: %v", err)
	}
	if _, err := UnwrapKey(&kek, w[:10], []byte("slot 1")); !errors.Is(err, ErrAuth) {
		t.Errorf("short: %v", err)
	}

	a, _ := GenerateSlotKey()
	b, _ := GenerateSlotKey()
	st, err := WrapToPublic(a.Public(), &key, []byte("tenant x"))
	if err != nil || len(st) != StanzaSize {
		t.Fatal(err)
	}
	if got, err := a.Unwrap(st, []byte("tenant x")); err != nil || !got.Equal(&key) {
		t.Fatal("stanza unwrap", err)
	}
	if _, err := b.Unwrap(st, []byte("tenant x")); !errors.Is(err, ErrIncorrectKey) {
		t.Errorf("other slot: %v", err)
	}
	if _, err := a.Unwrap(st, []byte("tenant y")); !errors.Is(err, ErrIncorrectKey) {
		t.Errorf("other tenant: %v", err)
	}
	pa, _ := ParseSlotPrivateKey(a.Bytes())
	if !bytes.Equal(pa.Public(), a.Public()) {
		t.Error("private key does not round-trip")
	}
}

func TestPassphraseKey(t *testing.T) {
	p, err := NewArgon2Params(1, 64, 1)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := PassphraseKey([]byte("pw"), &p)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := PassphraseKey([]byte("pw"), &p)
	k3, _ := PassphraseKey([]byte("pW"), &p)
	if !k1.Equal(&k2) || k1.Equal(&k3) {
		t.Error("passphrase keys not deterministic or not distinct")
	}
	bad := []Argon2Params{
		{Time: 0, MemoryKiB: 64, Threads: 1, Salt: p.Salt},
		{Time: 1, MemoryKiB: 1 << 30, Threads: 1, Salt: p.Salt},
		{Time: 1, MemoryKiB: 64, Threads: 0, Salt: p.Salt},
		{Time: 1, MemoryKiB: 64, Threads: 1, Salt: []byte("short")},
	}
	for _, b := range bad {
		if _, err := PassphraseKey([]byte("pw"), &b); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("%+v: %v", b, err)
		}
	}
	if _, err := PassphraseKey(nil, &p); err == nil {
		t.Error("empty passphrase accepted")
	}
}

func TestKeysNeverPrint(t *testing.T) {
	k := mustKey(t)
	tk := NewTenantKeys(&k)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, tk, tk, k)} {
		if strings.Contains(s, fmt.Sprintf("%x", k[:4])) || strings.Contains(s, fmt.Sprint(k[0], " ", k[1])) {
			t.Errorf("key material printed: %s", s)
		}
	}
	k.Wipe()
	if !k.IsZero() {
		t.Error("Wipe left key material")
	}
}

func TestDerivedKeysIndependent(t *testing.T) {
	root := mustKey(t)
	tk := NewTenantKeys(&root)
	ks := []Key{tk.ChunkID, tk.Data, tk.Metadata, tk.Gear, root}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[i].Equal(&ks[j]) {
				t.Errorf("keys %d and %d equal", i, j)
			}
		}
	}
	h := NewIDHasher(&tk.ChunkID)
	other := NewIDHasher(&tk.Data)
	if h.Sum([]byte("x")) == other.Sum([]byte("x")) {
		t.Error("chunk IDs do not depend on the key")
	}
	if h.Sum([]byte("x")) != h.Clone().Sum([]byte("x")) {
		t.Error("clone differs")
	}
}

func TestHotPathsDoNotAllocate(t *testing.T) {
	k := mustKey(t)
	id, _ := RandomID()
	c, _ := NewObjectCipher(&k, &id)
	h := NewIDHasher(&k)
	data := make([]byte, 64<<10)
	dst := make([]byte, 0, len(data)+Overhead)
	out := make([]byte, 0, len(data))
	sealed := c.Seal(nil, 1, data, id[:])
	if n := testing.AllocsPerRun(50, func() { h.Sum(data) }); n != 0 {
		t.Errorf("IDHasher.Sum: %v allocs", n)
	}
	if n := testing.AllocsPerRun(50, func() { c.Seal(dst[:0], 1, data, id[:]) }); n != 0 {
		t.Errorf("Seal: %v allocs", n)
	}
	if n := testing.AllocsPerRun(50, func() { c.Open(out[:0], 1, sealed, id[:]) }); n != 0 {
		t.Errorf("Open: %v allocs", n)
	}
}

// BenchmarkAEAD compares the candidate ciphers on 1 MiB chunks (the
// default average chunk size), for docs/SECURITY.md.
func BenchmarkAEAD(b *testing.B) {
	data := make([]byte, 1<<20)
	rand.Read(data)
	k := mustKey(b)
	id, _ := RandomID()
	ad := make([]byte, 57)
	b.Run("AES-256-GCM/seal", func(b *testing.B) {
		c, _ := NewObjectCipher(&k, &id)
		dst := make([]byte, 0, len(data)+Overhead)
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			c.Seal(dst[:0], uint64(i), data, ad)
		}
	})
	b.Run("AES-256-GCM/open", func(b *testing.B) {
		c, _ := NewObjectCipher(&k, &id)
		sealed := c.Seal(nil, 1, data, ad)
		dst := make([]byte, 0, len(data))
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Open(dst[:0], 1, sealed, ad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("XChaCha20-Poly1305/seal", func(b *testing.B) {
		a, _ := chacha20poly1305.NewX(k[:])
		nonce := make([]byte, a.NonceSize())
		dst := make([]byte, 0, len(data)+Overhead)
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			a.Seal(dst[:0], nonce, data, ad)
		}
	})
	b.Run("XChaCha20-Poly1305/open", func(b *testing.B) {
		a, _ := chacha20poly1305.NewX(k[:])
		nonce := make([]byte, a.NonceSize())
		sealed := a.Seal(nil, nonce, data, ad)
		dst := make([]byte, 0, len(data))
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Open(dst[:0], nonce, sealed, ad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("BLAKE3-keyed-ID", func(b *testing.B) {
		h := NewIDHasher(&k)
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			h.Sum(data)
		}
	})
	b.Run("NewObjectCipher", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			NewObjectCipher(&k, &id)
		}
	})
}
