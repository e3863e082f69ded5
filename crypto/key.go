package crypto

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/zeebo/blake3"
)

// KeySize is the size in bytes of every symmetric key in Reprise.
const KeySize = 32

// Key is a 256-bit secret key.
type Key [KeySize]byte

// Errors reported by this package. They never contain key material.
var (
	// ErrIncorrectKey reports that a key (or a passphrase) does not open
	// the sealed data it was tried on.
	ErrIncorrectKey = errors.New("crypto: incorrect key")
	// ErrAuth reports sealed data that fails authentication: it was
	// corrupted, truncated, or moved from where it was sealed.
	ErrAuth = errors.New("crypto: message authentication failed")
)

// Context strings for key derivation. They are part of the on-disk format
// (docs/FORMAT.md, "Key derivation") and must never change within a format
// version.
const (
	ContextChunkID    = "reprise.dev/v1 chunk id"
	ContextData       = "reprise.dev/v1 data"
	ContextMetadata   = "reprise.dev/v1 metadata"
	ContextGear       = "reprise.dev/v1 gear"
	ContextNames      = "reprise.dev/v1 names"
	ContextRepoMeta   = "reprise.dev/v1 repository metadata"
	ContextSlotAuth   = "reprise.dev/v1 slot auth"
	ContextSlotMAC    = "reprise.dev/v1 slot mac"
	ContextEnvAuth    = "reprise.dev/v1 envelope auth"
	ContextGenMAC     = "reprise.dev/v1 generation mac"
	ContextObjectKey  = "reprise.dev/v1 object key"
	ContextPassphrase = "reprise.dev/v1 passphrase"
)

// RandomKey returns a fresh key from the operating system's CSPRNG.
func RandomKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("crypto: reading random key: %w", err)
	}
	return k, nil
}

// Derive returns the BLAKE3 derive-key output for context over the
// concatenation of material. Callers only pass fixed-length materials (or a
// single variable-length one last), so the concatenation is unambiguous.
func Derive(context string, material ...[]byte) Key {
	h := blake3.NewDeriveKey(context)
	for _, m := range material {
		h.Write(m)
	}
	var k Key
	h.Sum(k[:0])
	return k
}

// Sub derives the subkey of k for context.
func (k *Key) Sub(context string) Key { return Derive(context, k[:]) }

// Equal reports whether two keys are equal, in constant time.
func (k *Key) Equal(o *Key) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }

// IsZero reports whether k is all zeros (a wiped or unset key).
func (k *Key) IsZero() bool {
	var z Key
	return subtle.ConstantTimeCompare(k[:], z[:]) == 1
}

// Wipe overwrites the key with zeros.
func (k *Key) Wipe() { clear(k[:]) }

// String hides the key: keys never reach logs or error messages by
// accident through fmt.
func (k Key) String() string { return "crypto.Key(REDACTED)" }

// GoString hides the key from %#v.
func (k Key) GoString() string { return k.String() }

// Wipe overwrites a byte slice holding secret material with zeros.
func Wipe(b []byte) { clear(b) }

// ConstantTimeEqual reports whether a and b are equal, in time that depends
// only on their lengths.
func ConstantTimeEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
