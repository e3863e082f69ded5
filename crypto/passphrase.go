package crypto

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the argon2id parameters of a passphrase slot. They are
// stored in the repository, next to the salt, so a repository always opens
// with the parameters it was created with.
type Argon2Params struct {
	Time      uint32 `json:"t"`    // passes over memory
	MemoryKiB uint32 `json:"m"`    // memory in KiB
	Threads   uint8  `json:"p"`    // lanes
	Salt      []byte `json:"salt"` // 32 random bytes
}

// Limits accepted when reading parameters from a repository, so that a
// hostile repository cannot make a client burn unbounded memory or time.
const (
	maxArgon2Memory = 4 << 20 // KiB: 4 GiB
	maxArgon2Time   = 64
)

// DefaultArgon2Memory is the memory cost used by CalibrateArgon2: 64 MiB,
// the RFC 9106 "second recommended option".
const DefaultArgon2Memory = 64 << 10

// ErrInvalidParams reports key-derivation parameters out of range.
var ErrInvalidParams = errors.New("crypto: invalid key derivation parameters")

// Validate checks that the parameters are usable and within the limits a
// client accepts from a repository.
func (p *Argon2Params) Validate() error {
	switch {
	case p.Time < 1 || p.Time > maxArgon2Time:
		return fmt.Errorf("%w: argon2id time %d not in [1, %d]", ErrInvalidParams, p.Time, maxArgon2Time)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxArgon2Memory:
		return fmt.Errorf("%w: argon2id memory %d KiB out of range", ErrInvalidParams, p.MemoryKiB)
	case p.Threads < 1:
		return fmt.Errorf("%w: argon2id needs at least one thread", ErrInvalidParams)
	case len(p.Salt) < 16:
		return fmt.Errorf("%w: argon2id salt of %d bytes, want at least 16", ErrInvalidParams, len(p.Salt))
	}
	return nil
}

// NewArgon2Params returns parameters with a fresh random salt.
func NewArgon2Params(time, memoryKiB uint32, threads uint8) (Argon2Params, error) {
	salt, err := RandomID()
	if err != nil {
		return Argon2Params{}, err
	}
	return Argon2Params{Time: time, MemoryKiB: memoryKiB, Threads: threads, Salt: salt[:]}, nil
}

// CalibrateArgon2 returns parameters (64 MiB, 4 lanes, fresh salt) whose
// time cost makes one derivation on this machine take about target, with at
// least 1 pass. It runs argon2id once to measure.
func CalibrateArgon2(target time.Duration) (Argon2Params, error) {
	p, err := NewArgon2Params(1, DefaultArgon2Memory, 4)
	if err != nil {
		return p, err
	}
	start := time.Now()
	k := argon2.IDKey([]byte("calibration"), p.Salt, 1, p.MemoryKiB, p.Threads, KeySize)
	Wipe(k)
	one := time.Since(start)
	if one > 0 {
		p.Time = uint32(min(int64(target/one), maxArgon2Time))
	}
	p.Time = max(p.Time, 1)
	return p, nil
}

// PassphraseKey derives a slot key from a passphrase with argon2id.
func PassphraseKey(passphrase []byte, p *Argon2Params) (Key, error) {
	if err := p.Validate(); err != nil {
		return Key{}, err
	}
	if len(passphrase) == 0 {
		return Key{}, errors.New("crypto: empty passphrase")
	}
	raw := argon2.IDKey(passphrase, p.Salt, p.Time, p.MemoryKiB, p.Threads, KeySize)
	defer Wipe(raw)
	// Pass the argon2id output through a derivation with its own context,
	// so the slot key is domain-separated from any other use of argon2id
	// with the same passphrase and salt.
	return Derive(ContextPassphrase, raw), nil
}
