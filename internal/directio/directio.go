// Package directio holds what O_DIRECT writes need from memory: buffers
// aligned to the block size. The storage driver writes packs with it, the
// restore engine the inside of large files' chunks.
package directio

import "unsafe"

// Align is the alignment O_DIRECT wants of buffers, file offsets and
// sizes: the largest logical block size in common use.
const Align = 4096

// Buf returns an empty buffer of capacity n starting at an Align
// boundary.
func Buf(n int) []byte {
	b := make([]byte, n+Align)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (Align - 1))
	if off != 0 {
		off = Align - off
	}
	return b[off : off : off+n]
}

// Aligned reports whether b starts at an Align boundary.
func Aligned(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))&(Align-1) == 0
}
