package crypto

import (
	"encoding/hex"
	"fmt"

	"github.com/zeebo/blake3"
)

// IDSize is the size of chunk and object identifiers.
const IDSize = 32

// ID identifies a chunk (keyed BLAKE3 of its plaintext) or an object
// (random). IDs are comparable and usable as map keys.
type ID [IDSize]byte

// String returns the lowercase hex form of the ID.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hex digits, for display.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// ParseID parses the 64-digit lowercase hex form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return id, fmt.Errorf("crypto: ID %q: want %d hex digits", s, 2*IDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("crypto: ID %q: %w", s, err)
	}
	if id.String() != s { // reject upper case: one spelling per ID
		return id, fmt.Errorf("crypto: ID %q: not lowercase hex", s)
	}
	return id, nil
}

// RandomID returns a random ID from the operating system's CSPRNG.
func RandomID() (ID, error) {
	k, err := RandomKey()
	return ID(k), err
}

// IDHasher computes keyed chunk IDs. It is not safe for concurrent use;
// give each goroutine its own (they are cheap to clone with [IDHasher.Clone]).
// Sum does not allocate.
type IDHasher struct {
	h *blake3.Hasher
}

// NewIDHasher returns a hasher computing BLAKE3 in keyed mode under key.
func NewIDHasher(key *Key) *IDHasher {
	h, err := blake3.NewKeyed(key[:])
	if err != nil {
		panic(err) // only on a key of the wrong length, impossible with Key
	}
	return &IDHasher{h: h}
}

// Clone returns an independent hasher with the same key.
func (x *IDHasher) Clone() *IDHasher { return &IDHasher{h: x.h.Clone()} }

// Sum returns the keyed ID of data.
func (x *IDHasher) Sum(data []byte) ID {
	x.h.Reset()
	x.h.Write(data)
	var id ID
	x.h.Sum(id[:0])
	return id
}

// MarshalText encodes the ID as lowercase hex (and so in JSON).
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes the lowercase hex form of an ID.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
