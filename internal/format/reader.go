package format

import (
	"encoding/binary"
	"fmt"
)

// reader is a bounds-checked cursor over hostile bytes. The first error
// sticks; later reads return zero values.
type reader struct {
	b    []byte
	err  error
	what string
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s: %s", ErrCorrupt, r.what, fmt.Sprintf(format, args...))
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// kind reads a chunk kind byte, which must be KindData or KindTree.
func (r *reader) kind() byte {
	k := r.byte()
	if r.err == nil && k != KindData && k != KindTree {
		r.fail("unknown chunk kind %d", k)
	}
	return k
}

func (r *reader) read(dst []byte) {
	if r.err != nil {
		return
	}
	if len(r.b) < len(dst) {
		r.fail("truncated")
		return
	}
	copy(dst, r.b)
	r.b = r.b[len(dst):]
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.fail("truncated")
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) uvarint(max uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	if v > max {
		r.fail("value %d above limit %d", v, max)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) u32(max uint32) uint32 { return uint32(r.uvarint(uint64(max))) }

// count reads an element count and checks it against the bytes left, given
// the minimum encoded size of one element, so a hostile count cannot make
// the decoder allocate more than the input justifies.
func (r *reader) count(minItem int) int {
	n := r.uvarint(uint64(len(r.b)))
	if r.err == nil && n*uint64(minItem) > uint64(len(r.b)) {
		r.fail("count %d larger than the data", n)
		return 0
	}
	return int(n)
}

func (r *reader) end() {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
}
