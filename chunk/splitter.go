package chunk

import "math/bits"

// window is the number of bytes the gear hash depends on: each step shifts
// the 64-bit state left by one, so a byte's contribution is gone 64 bytes
// later.
const window = 64

// Splitter finds content-defined cut points. It is safe for concurrent use:
// it is read-only after construction.
type Splitter struct {
	p     Params
	g     Gear // gear table
	g2    Gear // g2[b] = g[b] << 1, for the two-bytes-per-step loop
	maskS uint64
	maskL uint64
}

// NewSplitter returns a Splitter for params p and gear table g. Zero params
// mean [DefaultParams]; a nil g means the public table, NewGear(nil). The
// table is copied. Invalid params give an error wrapping [ErrInvalidParams].
func NewSplitter(p Params, g *Gear) (*Splitter, error) {
	p = p.withDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if g == nil {
		g = publicGear()
	}
	s := &Splitter{p: p, g: *g}
	for i, v := range g {
		s.g2[i] = v << 1
	}
	n := bits.TrailingZeros(uint(p.Avg))
	s.maskS = mask(n + 2)
	s.maskL = mask(n - 2)
	return s, nil
}

// mask returns a mask of n one bits, bits 62 down to 63-n. Bit 63 is left
// out so that mask<<1 loses nothing, which the two-bytes-per-step loop
// relies on.
func mask(n int) uint64 {
	return (1<<n - 1) << (63 - n)
}

// Params returns the (defaulted) params the splitter was built with.
func (s *Splitter) Params() Params { return s.p }

// Cut returns the length of the next chunk at the start of data. data is
// either at least Max bytes long, or it is the whole rest of the stream (then
// the last chunk may be shorter than Min). Only data[:Max] is looked at. The
// result is in [1, len(data)] for non-empty data, and 0 for empty data.
//
// The cut point is a pure function of the gear table, the params and the
// bytes: see the package documentation for the exact definition. It follows
// that when data is shorter than Max but not the rest of the stream, a
// result smaller than len(data) is still the right cut point (a hash match
// ended the scan); only a result of len(data) calls for more data.
func (s *Splitter) Cut(data []byte) int {
	n, _ := s.cut(data, 0)
	return n
}

// cut is Cut for a caller that already knows that no candidate length
// below from is a cut point (from <= Min means nothing is known): the
// Chunker, which scanned the bytes it had before reading more, resumes the
// scan there instead of hashing the chunk again. This is exact because the
// test at length L depends only on data[L-64:L]. It also reports whether
// the cut is a hash match, which tells a match at len(data) from running out
// of data.
func (s *Splitter) cut(data []byte, from int) (int, bool) {
	minSize, avg := s.p.Min, s.p.Avg
	n := min(len(data), s.p.Max)
	if n <= minSize {
		return n, false
	}
	data = data[:n]
	from = max(from, minSize)
	if from > n {
		return n, false
	}

	// Warm up: hash the 63 bytes before the last byte of the shortest
	// candidate still to test, so that the hash tested for length L covers
	// exactly data[L-64:L].
	var h uint64
	for _, b := range data[from-window : from-1] {
		h = h<<1 + s.g[b]
	}
	if from <= avg {
		// Lengths L in [from, Avg] are tested with maskS: their last
		// bytes are data[from-1:Avg].
		end := min(avg, n)
		k, h2, ok := s.scan(data[from-1:end], h, s.maskS)
		if ok {
			return from - 1 + k, true
		}
		if end == n {
			return n, false
		}
		h, from = h2, avg+1
	}
	// Lengths L in [from, n], all above Avg, are tested with maskL.
	if k, _, ok := s.scan(data[from-1:n], h, s.maskL); ok {
		return from - 1 + k, true
	}
	return n, false
}

// scan rolls the hash h over p, testing each new value against mask m. It
// returns k, the number of bytes hashed, and true when the hash after byte
// p[k-1] has no bit of m set; otherwise len(p), the final hash and false.
//
// It goes two bytes per step, as in the FastCDC 2020 paper: with
// g2[b] = g[b]<<1, x = h<<2 + g2[a] is the hash after byte a shifted left by
// one, so it is tested with m<<1 (m has no bit 63, so nothing is lost), and
// x + g[b] is the hash after byte b. The main loop is unrolled to eight bytes.
func (s *Splitter) scan(p []byte, h, m uint64) (int, uint64, bool) {
	g, g2 := &s.g, &s.g2
	m2 := m << 1
	i := 0
	for ; i < len(p)-7; i += 8 {
		q := p[i : i+8 : i+8]
		a, b, c, d := g2[q[0]], g[q[1]], g2[q[2]], g[q[3]]
		x := h<<2 + a
		if x&m2 == 0 {
			return i + 1, h, true
		}
		h = h<<2 + (a + b)
		if h&m == 0 {
			return i + 2, h, true
		}
		x = h<<2 + c
		if x&m2 == 0 {
			return i + 3, h, true
		}
		h = h<<2 + (c + d)
		if h&m == 0 {
			return i + 4, h, true
		}
		a, b, c, d = g2[q[4]], g[q[5]], g2[q[6]], g[q[7]]
		x = h<<2 + a
		if x&m2 == 0 {
			return i + 5, h, true
		}
		h = h<<2 + (a + b)
		if h&m == 0 {
			return i + 6, h, true
		}
		x = h<<2 + c
		if x&m2 == 0 {
			return i + 7, h, true
		}
		h = h<<2 + (c + d)
		if h&m == 0 {
			return i + 8, h, true
		}
	}
	for j, b := range p[i:] {
		h = h<<1 + g[b]
		if h&m == 0 {
			return i + j + 1, h, true
		}
	}
	return len(p), h, false
}
