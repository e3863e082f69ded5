package chunk

import (
	"encoding/binary"
	"sync"

	"github.com/zeebo/blake3"
)

// GearContext is the BLAKE3 derive-key context string used by [NewGear]. It
// is part of the on-disk format.
const GearContext = "reprise.dev/v1 chunk gear"

// Gear is the table of 256 pseudo-random 64-bit values driving the rolling
// hash: byte value b contributes Gear[b].
type Gear [256]uint64

// NewGear derives a gear table from a secret key, so that chunk boundaries,
// and thus chunk sizes, do not fingerprint content across tenants.
//
// The derivation is part of the on-disk format: BLAKE3 in derive-key mode
// with the context string [GearContext] ("reprise.dev/v1 chunk gear") over
// key as key material, read as an extendable output of 2048 bytes, which are
// 256 little-endian uint64 values: entry i is bytes [8i, 8i+8). A nil or
// empty key gives the public table (the same derivation over an empty key).
//
// Each call returns a new table that the caller may keep or modify.
func NewGear(key []byte) *Gear {
	var out [8 * 256]byte
	blake3.DeriveKey(GearContext, key, out[:])
	g := new(Gear)
	for i := range g {
		g[i] = binary.LittleEndian.Uint64(out[8*i:])
	}
	return g
}

// publicGear is the table for the empty key, derived once.
var publicGear = sync.OnceValue(func() *Gear { return NewGear(nil) })
