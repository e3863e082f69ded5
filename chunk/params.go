package chunk

import (
	"errors"
	"fmt"
	"math/bits"
)

// ErrInvalidParams is wrapped by every error that [Params.Validate] (and so
// [NewSplitter]) returns; test for it with [errors.Is].
var ErrInvalidParams = errors.New("chunk: invalid params")

// Bounds enforced by [Params.Validate].
const (
	// minMin is the smallest allowed Params.Min: the 64-byte hash window
	// must fit inside the shortest chunk.
	minMin = window
	// maxMax is the largest allowed Params.Max.
	maxMax = 64 << 20
)

// Params sets the chunk size bounds in bytes. The zero value means
// [DefaultParams].
//
// Min is the smallest length of any chunk but the last of a stream, Max the
// largest length of any chunk. Avg is the target ("normal") size: below it
// cuts are rare, above it frequent (see the package documentation). With
// Min = Avg/4 and Max = 4*Avg the measured mean chunk size is about
// 1.15*Avg on incompressible data.
type Params struct {
	Min, Avg, Max int
}

// DefaultParams returns the default chunk size bounds: Min 256 KiB, Avg
// 1 MiB, Max 4 MiB. The ratios were chosen by measurement (see the package
// documentation); Avg may be retuned, so a repository must record the params
// it was created with rather than rely on the defaults.
func DefaultParams() Params {
	return Params{Min: 256 << 10, Avg: 1 << 20, Max: 4 << 20}
}

// withDefaults returns DefaultParams for the zero value and p otherwise.
func (p Params) withDefaults() Params {
	if p == (Params{}) {
		return DefaultParams()
	}
	return p
}

// Validate reports whether p describes a usable chunker. The rules are:
//
//	64 <= Min < Avg < Max <= 64 MiB, and Avg is a power of two.
//
// The zero value is valid (it means [DefaultParams]). Errors wrap
// [ErrInvalidParams].
func (p Params) Validate() error {
	if p == (Params{}) {
		return nil
	}
	switch {
	case p.Min < minMin:
		return fmt.Errorf("%w: Min %d is below %d", ErrInvalidParams, p.Min, minMin)
	case p.Avg <= p.Min:
		return fmt.Errorf("%w: Avg %d must be greater than Min %d", ErrInvalidParams, p.Avg, p.Min)
	case p.Max <= p.Avg:
		return fmt.Errorf("%w: Max %d must be greater than Avg %d", ErrInvalidParams, p.Max, p.Avg)
	case p.Max > maxMax:
		return fmt.Errorf("%w: Max %d is above %d (64 MiB)", ErrInvalidParams, p.Max, maxMax)
	case bits.OnesCount(uint(p.Avg)) != 1:
		return fmt.Errorf("%w: Avg %d is not a power of two", ErrInvalidParams, p.Avg)
	}
	return nil
}

// String formats p as "min/avg/max" in bytes.
func (p Params) String() string {
	return fmt.Sprintf("%d/%d/%d", p.Min, p.Avg, p.Max)
}
