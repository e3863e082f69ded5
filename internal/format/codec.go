package format

import (
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Payload encodings: the first byte of every sealed plaintext says how the
// rest is encoded (docs/FORMAT.md, "Payload encoding"). Encode and
// EncodeFramed also take one to say how to compress: EncodingRaw not at
// all, the others with that codec when it pays.
const (
	// EncodingRaw is the plaintext itself.
	EncodingRaw byte = 0
	// EncodingZstd is one or more zstd frames.
	EncodingZstd byte = 1
	// EncodingS2 is one S2 block (the block format, not the stream
	// format): format version 2 only.
	EncodingS2 byte = 2
)

var (
	encOnce sync.Once
	enc     *zstd.Encoder
	decOnce sync.Once
	dec     *zstd.Decoder // output capped at the capacity of dst
	metaDec *zstd.Decoder // output capped at MaxMetaSize
)

// codecConcurrency is how many EncodeAll/DecodeAll calls may run at once.
// It is fixed when the codec is first used, so it takes the larger of
// GOMAXPROCS then and the number of CPUs: a process that raises
// GOMAXPROCS later (or a benchmark at GOMAXPROCS 1 that runs first) must
// not be left with one shared decoder.
func codecConcurrency() int { return max(runtime.GOMAXPROCS(0), runtime.NumCPU()) }

func encoder() *zstd.Encoder {
	encOnce.Do(func() {
		var err error
		enc, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(codecConcurrency()),
			zstd.WithEncoderCRC(false), // sealed by AES-GCM already
			zstd.WithZeroFrames(true),
			zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err)
		}
	})
	return enc
}

// DecodeSlack is the room Decode leaves the zstd decoder past the end of a
// chunk: a block (128 KiB) and the 16 bytes its fast copies may overrun. A
// caller decoding into a reused buffer gives it len(dst)+rawLen+DecodeSlack
// of capacity, or Decode grows it. S2 blocks decode within rawLen: the
// slack is unused there, and harmless.
const DecodeSlack = 128<<10 + 16

func decoders() (capped, meta *zstd.Decoder) {
	decOnce.Do(func() {
		var err error
		dec, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(codecConcurrency()),
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderMaxMemory(MaxMetaSize),
			zstd.IgnoreChecksum(true))
		if err != nil {
			panic(err)
		}
		metaDec, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(codecConcurrency()),
			zstd.WithDecoderMaxMemory(MaxMetaSize),
			zstd.IgnoreChecksum(true))
		if err != nil {
			panic(err)
		}
	})
	return dec, metaDec
}

// Encode appends the payload encoding of src to dst: an encoding byte
// followed by src compressed with the codec enc names (EncodingZstd or
// EncodingS2) when that saves at least 1/32 of its size, or src itself
// otherwise (data an application already encrypted or compressed). Both
// codecs give up early on such data, so the check costs little.
// EncodingRaw stores src raw without trying; any other enc panics.
func Encode(dst, src []byte, enc byte) []byte {
	if compressible(src, enc) {
		start := len(dst)
		out := compress(append(dst, enc), src, enc)
		if len(out)-start-1 <= len(src)-len(src)/32 {
			return out
		}
		dst = out[:start]
	}
	dst = append(dst, EncodingRaw)
	return append(dst, src...)
}

// EncodeFramed is Encode for a chunk held at framed[1:] with one spare
// byte in front of it: when the chunk is stored raw the payload is framed
// itself, its first byte set, and nothing is copied (a backup of data an
// application already encrypted saves a copy of every byte); otherwise the
// chunk is compressed into dst.
func EncodeFramed(dst, framed []byte, enc byte) []byte {
	src := framed[1:]
	if compressible(src, enc) {
		out := compress(append(dst[:0], enc), src, enc)
		if len(out)-1 <= len(src)-len(src)/32 {
			return out
		}
	}
	framed[0] = EncodingRaw
	return framed
}

// compressible reports whether Encode should try to compress src with enc.
func compressible(src []byte, enc byte) bool {
	switch enc {
	case EncodingRaw:
		return false
	case EncodingZstd, EncodingS2:
		return len(src) >= 64 && !incompressible(src, enc)
	}
	panic(fmt.Sprintf("format: Encode with payload encoding %d", enc))
}

// compress appends src compressed with enc (EncodingZstd or EncodingS2)
// to dst.
func compress(dst, src []byte, enc byte) []byte {
	if enc == EncodingZstd {
		return encoder().EncodeAll(src, dst)
	}
	// s2.Encode writes from the start of the slice it is given, which
	// must have room for the worst case.
	start := len(dst)
	dst = slices.Grow(dst, s2.MaxEncodedLen(len(src)))
	out := s2.Encode(dst[start:cap(dst)], src)
	return dst[:start+len(out)]
}

// sampleSize is the size of each probe incompressible takes.
const sampleSize = 4 << 10

var probeBufs = sync.Pool{New: func() any { b := make([]byte, 0, s2.MaxEncodedLen(sampleSize)); return &b }}

// incompressible guesses, from two small probes (the start and the middle
// of a large chunk) compressed with enc, that compressing src would not
// pay: data an application already encrypted or compressed then costs two
// 4 KiB compression attempts instead of one over the whole chunk. A chunk
// whose probes both fail to compress is stored raw even if another part of
// it would have compressed: a small loss, measured against the time saved.
// The probes use the chunk's own codec, so that they predict what it will
// do. S2 gives up on random data even faster than zstd, but still copies
// the whole chunk as one literal before Encode discards it: without the
// probes, a random 1 MiB chunk costs about 30 µs, a tenth of sealing it;
// with them about 1 µs (BenchmarkEncode/data=random).
func incompressible(src []byte, enc byte) bool {
	if len(src) < 8*sampleSize {
		return false
	}
	bp := probeBufs.Get().(*[]byte)
	defer probeBufs.Put(bp)
	for _, off := range []int{0, len(src)/2 - sampleSize/2} {
		out := compress((*bp)[:0], src[off:off+sampleSize], enc)
		*bp = out[:0]
		if len(out) <= sampleSize-sampleSize/32 {
			return false
		}
	}
	return true
}

// Decode appends the decoded payload to dst. rawLen, when >= 0, is the
// expected decoded length: a payload decoding to another length is
// corrupt, and decompression stops as soon as it would exceed rawLen (an
// S2 block stating another length is refused before decoding), so a
// hostile payload cannot make the decoder allocate more. With rawLen < 0
// the output is bounded by MaxMetaSize. Decode accepts every encoding;
// Config.CheckPayload says which ones a repository may hold.
func Decode(dst, payload []byte, rawLen int) ([]byte, error) {
	if len(payload) == 0 {
		return nil, fmt.Errorf("%w: empty payload", ErrCorrupt)
	}
	if rawLen < 0 && len(payload)-1 > MaxMetaSize {
		return nil, fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrCorrupt, len(payload)-1, MaxMetaSize)
	}
	start := len(dst)
	switch payload[0] {
	case EncodingRaw:
		dst = append(dst, payload[1:]...)
	case EncodingZstd:
		capped, meta := decoders()
		var err error
		if rawLen >= 0 {
			// Cap the output: room for rawLen bytes plus DecodeSlack (the
			// three-index slice hides any extra capacity from the
			// decoder), so a hostile payload cannot make it allocate,
			// and the length check below rejects one that decodes to
			// more. Without the slack the decoder takes its bounds-exact
			// copy loops for the last block of every chunk, which on SQL
			// text cost nearly half of the decoding time.
			full := slices.Grow(dst, rawLen+DecodeSlack)
			dst, err = capped.DecodeAll(payload[1:], full[:start:start+rawLen+DecodeSlack])
			if err == nil && rawLen > 0 && len(dst) == start+rawLen && &dst[start] == &full[start : start+rawLen][0] {
				// Decoded in place: give the caller back the capacity the
				// cap hid, so that appending the next chunk does not copy.
				dst = full[:start+rawLen]
			}
		} else {
			dst, err = meta.DecodeAll(payload[1:], dst)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
	case EncodingS2:
		// The block states its decoded length up front: check it before
		// decoding, so that the output is bounded exactly (rawLen, or
		// MaxMetaSize) and decoded in place, without allocating when dst
		// has room. Unlike zstd, S2 needs no slack past the end.
		n, err := s2.DecodedLen(payload[1:])
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrCorrupt, err)
		}
		if rawLen >= 0 && n != rawLen {
			return nil, fmt.Errorf("%w: s2 block of %d bytes, want %d", ErrCorrupt, n, rawLen)
		}
		if n > MaxMetaSize {
			return nil, fmt.Errorf("%w: s2 block of %d bytes exceeds %d", ErrCorrupt, n, MaxMetaSize)
		}
		dst = slices.Grow(dst, n)
		out, err := s2.Decode(dst[start:start+n], payload[1:])
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrCorrupt, err)
		}
		if n > 0 && &out[0] != &dst[start : start+n][0] {
			// Not expected (the slice has room for the stated length),
			// but correct either way.
			dst = append(dst[:start], out...)
		} else {
			dst = dst[:start+n]
		}
	default:
		return nil, fmt.Errorf("%w: unknown payload encoding %d", ErrCorrupt, payload[0])
	}
	if rawLen >= 0 && len(dst)-start != rawLen {
		return nil, fmt.Errorf("%w: payload decodes to %d bytes, want %d", ErrCorrupt, len(dst)-start, rawLen)
	}
	return dst, nil
}
