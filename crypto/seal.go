package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"sync"
)

// Overhead is the number of bytes sealing adds to a message (the GCM tag).
const Overhead = 16

// NonceSize is the size of an AES-GCM nonce.
const NonceSize = 12

// LastSeq is the sequence number reserved for the trailing header of a
// multi-message object (a pack's header), so it never collides with the
// sequence numbers of the messages before it.
const LastSeq = ^uint64(0)

// ObjectCipher seals and opens the messages of one stored object.
//
// Its key is Derive(ContextObjectKey, purposeKey || objectID): every object
// gets its own AES-256-GCM key, and the nonce of message number seq within
// the object is the 96-bit big-endian encoding of seq. A writer never seals
// two messages with the same seq in one object, and object IDs are random
// 256-bit values, so (key, nonce) pairs never repeat.
//
// An ObjectCipher is safe for concurrent use. Seal and Open do not allocate
// when dst has room.
type ObjectCipher struct {
	aead cipher.AEAD
}

// NewObjectCipher returns the cipher of the object named id, under the
// purpose key k (a tenant's data or metadata key, or a slot key).
func NewObjectCipher(k *Key, id *ID) (*ObjectCipher, error) {
	ok := Derive(ContextObjectKey, k[:], id[:])
	defer ok.Wipe()
	block, err := aes.NewCipher(ok[:])
	if err != nil {
		return nil, fmt.Errorf("crypto: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("crypto: %w", err)
	}
	return &ObjectCipher{aead: aead}, nil
}

// nonces pools nonce buffers: a nonce passed to cipher.AEAD escapes to the
// heap, and pooling keeps Seal and Open free of allocations.
var nonces = sync.Pool{New: func() any { return new([NonceSize]byte) }}

func nonce(seq uint64) *[NonceSize]byte {
	n := nonces.Get().(*[NonceSize]byte)
	clear(n[:4])
	binary.BigEndian.PutUint64(n[4:], seq)
	return n
}

// Seal appends the sealed form of plaintext (len(plaintext)+Overhead bytes)
// to dst and returns the result. ad is authenticated, not stored.
func (c *ObjectCipher) Seal(dst []byte, seq uint64, plaintext, ad []byte) []byte {
	n := nonce(seq)
	out := c.aead.Seal(dst, n[:], plaintext, ad)
	nonces.Put(n)
	return out
}

// Open authenticates and decrypts sealed, appending the plaintext to dst.
// It fails with an error wrapping ErrAuth when the message was altered,
// truncated, sealed under another key, sequence number or associated data.
func (c *ObjectCipher) Open(dst []byte, seq uint64, sealed, ad []byte) ([]byte, error) {
	n := nonce(seq)
	out, err := c.aead.Open(dst, n[:], sealed, ad)
	nonces.Put(n)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}
