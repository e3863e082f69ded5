package format

import (
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Payload encodings: the first byte of every sealed plaintext says how the
// rest is encoded.
const (
	EncodingRaw  byte = 0
	EncodingZstd byte = 1
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
// of capacity, or Decode grows it.
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
// followed by src compressed with zstd when that saves at least 1/32 of its
// size, or src itself otherwise (data an application already encrypted or
// compressed). zstd gives up early on such data, so the check costs little.
// compress false stores src raw without trying.
func Encode(dst, src []byte, compress bool) []byte {
	if compress && len(src) >= 64 && !incompressible(src) {
		start := len(dst)
		dst = append(dst, EncodingZstd)
		out := encoder().EncodeAll(src, dst)
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
func EncodeFramed(dst, framed []byte, compress bool) []byte {
	src := framed[1:]
	if compress && len(src) >= 64 && !incompressible(src) {
		out := encoder().EncodeAll(src, append(dst[:0], EncodingZstd))
		if len(out)-1 <= len(src)-len(src)/32 {
			return out
		}
	}
	framed[0] = EncodingRaw
	return framed
}

// sampleSize is the size of each probe incompressible takes.
const sampleSize = 4 << 10

var probeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2*sampleSize); return &b }}

// incompressible guesses, from two small probes (the start and the middle
// of a large chunk), that compressing src would not pay: data an
// application already encrypted or compressed then costs two 4 KiB
// compression attempts instead of one over the whole chunk. A chunk whose
// probes both fail to compress is stored raw even if another part of it
// would have compressed: a small loss, measured against the time saved.
func incompressible(src []byte) bool {
	if len(src) < 8*sampleSize {
		return false
	}
	bp := probeBufs.Get().(*[]byte)
	defer probeBufs.Put(bp)
	for _, off := range []int{0, len(src)/2 - sampleSize/2} {
		probe := src[off : off+sampleSize]
		out := encoder().EncodeAll(probe, (*bp)[:0])
		*bp = out[:0]
		if len(out) <= sampleSize-sampleSize/32 {
			return false
		}
	}
	return true
}

// Decode appends the decoded payload to dst. rawLen, when >= 0, is the
// expected decoded length: a payload decoding to another length is
// corrupt, and decompression stops as soon as it would exceed rawLen, so a
// hostile payload cannot make the decoder allocate more. With rawLen < 0
// the output is bounded by MaxMetaSize.
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
	default:
		return nil, fmt.Errorf("%w: unknown payload encoding %d", ErrCorrupt, payload[0])
	}
	if rawLen >= 0 && len(dst)-start != rawLen {
		return nil, fmt.Errorf("%w: payload decodes to %d bytes, want %d", ErrCorrupt, len(dst)-start, rawLen)
	}
	return dst, nil
}
