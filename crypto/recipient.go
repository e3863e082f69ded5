package crypto

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
)

// Key slots are X25519 key pairs, in the manner of age recipients: anyone
// who knows a slot's public key can wrap a key to it (so a new tenant's
// root key is wrapped to every slot at once, without unlocking them), and
// only the holder of the slot's private key (unlocked by a passphrase or a
// KMS) can unwrap it.

// PublicKeySize is the size of a slot public key.
const PublicKeySize = 32

// StanzaSize is the size of a key wrapped to a slot public key: the
// ephemeral public key and a wrapped key.
const StanzaSize = PublicKeySize + WrappedKeySize

// ContextStanza derives a stanza's wrapping key from the X25519 shared
// secret.
const ContextStanza = "reprise.dev/v1 stanza"

// SlotPrivateKey is the private half of a key slot.
type SlotPrivateKey struct {
	k *ecdh.PrivateKey
}

// GenerateSlotKey returns a fresh slot key pair.
func GenerateSlotKey() (*SlotPrivateKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("crypto: generating slot key: %w", err)
	}
	return &SlotPrivateKey{k: k}, nil
}

// ParseSlotPrivateKey parses the 32-byte private scalar.
func ParseSlotPrivateKey(b []byte) (*SlotPrivateKey, error) {
	k, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("crypto: slot private key: %w", err)
	}
	return &SlotPrivateKey{k: k}, nil
}

// Bytes returns the private scalar. Wipe it after use.
func (s *SlotPrivateKey) Bytes() []byte { return s.k.Bytes() }

// Public returns the 32-byte public key.
func (s *SlotPrivateKey) Public() []byte { return s.k.PublicKey().Bytes() }

// WrapToPublic wraps key to the slot public key pub:
//
//	stanza = ephemeralPub || WrapKey(Derive(ContextStanza, shared || ephemeralPub || pub), key, ad)
func WrapToPublic(pub []byte, key *Key, ad []byte) ([]byte, error) {
	rp, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("crypto: slot public key: %w", err)
	}
	e, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("crypto: ephemeral key: %w", err)
	}
	shared, err := e.ECDH(rp)
	if err != nil {
		return nil, fmt.Errorf("crypto: %w", err)
	}
	epub := e.PublicKey().Bytes()
	wk := Derive(ContextStanza, shared, epub, pub)
	defer wk.Wipe()
	Wipe(shared)
	w, err := WrapKey(&wk, key, ad)
	if err != nil {
		return nil, err
	}
	return append(epub, w...), nil
}

// Unwrap opens a stanza made by WrapToPublic for this slot. A stanza for
// another slot, or with another ad, fails with ErrIncorrectKey.
func (s *SlotPrivateKey) Unwrap(stanza, ad []byte) (Key, error) {
	if len(stanza) != StanzaSize {
		return Key{}, fmt.Errorf("crypto: stanza of %d bytes, want %d: %w", len(stanza), StanzaSize, ErrAuth)
	}
	epub := stanza[:PublicKeySize]
	ep, err := ecdh.X25519().NewPublicKey(epub)
	if err != nil {
		return Key{}, fmt.Errorf("crypto: stanza: %w", ErrAuth)
	}
	shared, err := s.k.ECDH(ep)
	if err != nil { // low-order point
		return Key{}, fmt.Errorf("crypto: stanza: %w", ErrAuth)
	}
	wk := Derive(ContextStanza, shared, epub, s.Public())
	defer wk.Wipe()
	Wipe(shared)
	return UnwrapKey(&wk, stanza[PublicKeySize:], ad)
}
