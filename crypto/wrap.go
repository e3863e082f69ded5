package crypto

import (
	"errors"
	"fmt"
)

// BoxOverhead is the number of bytes SealBox adds: a 32-byte random salt
// and the tag.
const BoxOverhead = IDSize + Overhead

// WrappedKeySize is the size of a key wrapped by WrapKey.
const WrappedKeySize = KeySize + BoxOverhead

// SealBox seals a small standalone message under k: the result is
// salt || Seal(ObjectCipher(k, salt), seq 0, plaintext, ad), so each box is
// an object of its own, named by its random salt. ad binds the box to its
// place (repository, tenant, generation, slot): opening it with any other
// ad fails.
func SealBox(k *Key, plaintext, ad []byte) ([]byte, error) {
	salt, err := RandomID()
	if err != nil {
		return nil, err
	}
	c, err := NewObjectCipher(k, &salt)
	if err != nil {
		return nil, err
	}
	out := make([]byte, IDSize, len(plaintext)+BoxOverhead)
	copy(out, salt[:])
	return c.Seal(out, 0, plaintext, ad), nil
}

// OpenBox opens a box sealed by SealBox. A wrong key, wrong ad or altered
// box fails with an error wrapping ErrAuth.
func OpenBox(k *Key, box, ad []byte) ([]byte, error) {
	if len(box) < BoxOverhead {
		return nil, fmt.Errorf("crypto: box of %d bytes is too short: %w", len(box), ErrAuth)
	}
	salt := ID(box[:IDSize])
	c, err := NewObjectCipher(k, &salt)
	if err != nil {
		return nil, err
	}
	return c.Open(nil, 0, box[IDSize:], ad)
}

// WrapKey seals key under kek with SealBox.
func WrapKey(kek, key *Key, ad []byte) ([]byte, error) { return SealBox(kek, key[:], ad) }

// UnwrapKey opens a key wrapped by WrapKey. A wrong kek or ad fails with
// ErrIncorrectKey; a malformed input with an error wrapping ErrAuth.
func UnwrapKey(kek *Key, wrapped, ad []byte) (Key, error) {
	if len(wrapped) != WrappedKeySize {
		return Key{}, fmt.Errorf("crypto: wrapped key is %d bytes, want %d: %w", len(wrapped), WrappedKeySize, ErrAuth)
	}
	pt, err := OpenBox(kek, wrapped, ad)
	if err != nil {
		if errors.Is(err, ErrAuth) {
			return Key{}, ErrIncorrectKey
		}
		return Key{}, err
	}
	k := Key(pt)
	Wipe(pt)
	return k, nil
}
