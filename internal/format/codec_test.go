package format

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
)

func TestDecodeBoundsOutput(t *testing.T) {
	big := make([]byte, 32<<20) // zeros: compresses to almost nothing
	for _, enc := range []byte{EncodingZstd, EncodingS2} {
		payload := Encode(nil, big, enc)
		if payload[0] != enc || len(payload) > 2<<20 {
			t.Fatalf("encoding %d: zeros did not compress: %d bytes", enc, len(payload))
		}
		// Claimed length far below what the payload holds: refused without
		// inflating it all.
		if _, err := Decode(nil, payload, 1000); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("encoding %d: oversized payload: %v, want ErrCorrupt", enc, err)
		}
		out, err := Decode(make([]byte, 3, 8), payload, len(big))
		if err != nil || len(out) != 3+len(big) || !bytes.Equal(out[3:], big) {
			t.Fatalf("encoding %d: exact length: %v %d", enc, err, len(out))
		}
		if _, err := Decode(nil, payload, len(big)+1); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("encoding %d: short payload: %v, want ErrCorrupt", enc, err)
		}
		raw := Encode(nil, []byte("x"), enc)
		if raw[0] != EncodingRaw {
			t.Fatalf("encoding %d: tiny input compressed", enc)
		}
	}
}

// EncodeFramed stores incompressible chunks from the caller's buffer (no
// copy) and compresses the others; both decode back to the chunk.
func TestEncodeFramed(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	random := make([]byte, 256<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	text := bytes.Repeat([]byte("INSERT INTO t VALUES (1, 'reprise');\n"), 4096)
	for _, tc := range []struct {
		name    string
		chunk   []byte
		enc     byte
		inPlace bool
	}{
		{"random", random, EncodingZstd, true},
		{"random, s2", random, EncodingS2, true},
		{"text", text, EncodingZstd, false},
		{"text, s2", text, EncodingS2, false},
		{"text, no compression", text, EncodingRaw, true},
		{"tiny", []byte("ab"), EncodingZstd, true},
		{"tiny, s2", []byte("ab"), EncodingS2, true},
	} {
		framed := append([]byte{0xff}, tc.chunk...)
		out := EncodeFramed(nil, framed, tc.enc)
		if got := &out[0] == &framed[0]; got != tc.inPlace {
			t.Errorf("%s: payload in place = %v, want %v", tc.name, got, tc.inPlace)
		}
		if !tc.inPlace && out[0] != tc.enc {
			t.Errorf("%s: encoding byte %d, want %d", tc.name, out[0], tc.enc)
		}
		dec, err := Decode(nil, out, len(tc.chunk))
		if err != nil || !bytes.Equal(dec, tc.chunk) {
			t.Errorf("%s: decodes to %d bytes (err %v)", tc.name, len(dec), err)
		}
		if want := Encode(nil, tc.chunk, tc.enc); !bytes.Equal(out, want) {
			t.Errorf("%s: EncodeFramed and Encode disagree", tc.name)
		}
		// Appending to a non-empty dst keeps what is there.
		if got := Encode([]byte("head"), tc.chunk, tc.enc); !bytes.Equal(got, append([]byte("head"), out...)) {
			t.Errorf("%s: Encode does not append", tc.name)
		}
	}
}

// The probes tell random data (stored raw without compressing the whole
// chunk) from text, with either codec.
func TestIncompressibleProbes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 256<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	text := bytes.Repeat([]byte("INSERT INTO t VALUES (3, 'probe');\n"), 8<<10)
	for _, enc := range []byte{EncodingZstd, EncodingS2} {
		if !incompressible(random, enc) {
			t.Errorf("encoding %d: random data found compressible", enc)
		}
		if incompressible(text, enc) {
			t.Errorf("encoding %d: text found incompressible", enc)
		}
		if incompressible(random[:8*sampleSize-1], enc) {
			t.Errorf("encoding %d: a chunk too small to probe was probed", enc)
		}
	}
}

func TestEncodeUnknownEncodingPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Encode with encoding 3 did not panic")
		}
	}()
	Encode(nil, make([]byte, 100), 3)
}

// TestDecodeS2 checks the S2 branch: the stated length is checked before
// decoding, the output goes into dst's spare capacity without allocating,
// and blocks that do not decode are corrupt.
func TestDecodeS2(t *testing.T) {
	text := bytes.Repeat([]byte("INSERT INTO t VALUES (2, 's2');\n"), 2048)
	payload := Encode(nil, text, EncodingS2)
	if payload[0] != EncodingS2 {
		t.Fatal("text did not compress with s2")
	}

	// In place, after what dst holds, with or without DecodeSlack.
	for _, slack := range []int{0, DecodeSlack} {
		buf := make([]byte, 5, 5+len(text)+slack)
		copy(buf, "head:")
		var out []byte
		var err error
		allocs := testing.AllocsPerRun(10, func() { out, err = Decode(buf, payload, len(text)) })
		if err != nil || !bytes.Equal(out[5:], text) || string(out[:5]) != "head:" {
			t.Fatalf("slack %d: %v", slack, err)
		}
		if &out[0] != &buf[0] || cap(out) != cap(buf) || allocs != 0 {
			t.Errorf("slack %d: decoded out of place or with %v allocations", slack, allocs)
		}
	}
	// Without room: grown, dst's contents kept.
	out, err := Decode([]byte("head:"), payload, len(text))
	if err != nil || string(out[:5]) != "head:" || !bytes.Equal(out[5:], text) {
		t.Fatalf("grown: %v", err)
	}
	// Metadata (no known length).
	if out, err := Decode(nil, payload, -1); err != nil || !bytes.Equal(out, text) {
		t.Fatalf("rawLen -1: %v", err)
	}

	// A block of many zeros: small, but its stated length is far above
	// rawLen. Refused before decoding anything.
	bomb := Encode(nil, make([]byte, 16<<20), EncodingS2)
	if bomb[0] != EncodingS2 || len(bomb) > 1<<20 {
		t.Fatalf("zeros: %d bytes", len(bomb))
	}
	dst := make([]byte, 0, 100)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	_, err = Decode(dst, bomb, 100)
	runtime.ReadMemStats(&ms1)
	if !errors.Is(err, ErrCorrupt) || ms1.TotalAlloc-ms0.TotalAlloc > 64<<10 {
		t.Errorf("bomb: %v, %d bytes allocated", err, ms1.TotalAlloc-ms0.TotalAlloc)
	}

	huge := append([]byte{EncodingS2}, binary.AppendUvarint(nil, MaxMetaSize+1)...)
	for _, tc := range []struct {
		name    string
		payload []byte
		rawLen  int
	}{
		{"length mismatch", payload, len(text) - 1},
		{"length mismatch, longer", payload, len(text) + 1},
		{"no length", []byte{EncodingS2}, -1},
		{"bad varint", []byte{EncodingS2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, -1},
		{"metadata above the limit", huge, -1},
		{"truncated", payload[:len(payload)-1], len(text)},
		{"trailing garbage", append(bytes.Clone(payload), 0), len(text)},
		{"offset before the start", append([]byte{EncodingS2, 8}, 0x01, 0x10), 8},
		{"literal past the end", append([]byte{EncodingS2, 2}, 0x08, 'a', 'b', 'c'), 2},
	} {
		if _, err := Decode(nil, tc.payload, tc.rawLen); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", tc.name, err)
		}
	}
	// The empty block.
	if out, err := Decode(nil, []byte{EncodingS2, 0}, 0); err != nil || len(out) != 0 {
		t.Errorf("empty block: %q, %v", out, err)
	}
}

// Blocks written by s2.Encode at any size decode through Decode, and
// through the block format's plain literal form (what a writer that does
// not compress at all could emit).
func TestS2RoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 63, 64, 100, 4 << 10, 32 << 10, 1 << 20, 5 << 20} {
		text := make([]byte, n)
		for i := range text {
			text[i] = "ab \n"[rng.IntN(4)]
		}
		for _, block := range [][]byte{s2.Encode(nil, text), s2.EncodeBetter(nil, text), s2.EncodeBest(nil, text)} {
			out, err := Decode(nil, append([]byte{EncodingS2}, block...), n)
			if err != nil || !bytes.Equal(out, text) {
				t.Fatalf("%d bytes: %v", n, err)
			}
		}
		if n >= 64 {
			p := Encode(nil, text, EncodingS2)
			if out, err := Decode(nil, p, n); err != nil || !bytes.Equal(out, text) {
				t.Fatalf("%d bytes: Encode: %v", n, err)
			}
			if p[0] == EncodingS2 && len(p) > n-n/32+1 {
				t.Errorf("%d bytes: s2 kept at %d bytes", n, len(p))
			}
		}
	}
}

func TestConfigCheckPayload(t *testing.T) {
	for _, tc := range []struct {
		version int
		enc     byte
		ok      bool
	}{
		{Version, EncodingRaw, true}, {Version, EncodingZstd, true}, {Version, EncodingS2, false},
		{Version2, EncodingRaw, true}, {Version2, EncodingZstd, true}, {Version2, EncodingS2, true},
	} {
		c := &Config{Version: tc.version}
		err := c.CheckPayload([]byte{tc.enc, 'x'})
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("version %d, encoding %d: %v", tc.version, tc.enc, err)
		}
	}
	if err := (&Config{Version: Version}).CheckPayload(nil); err != nil {
		t.Errorf("empty payload: %v (Decode reports it)", err)
	}
}

func TestNewConfig(t *testing.T) {
	for _, tc := range []struct {
		codec   string
		version int
		field   string
		enc     byte
	}{
		{CodecZstd, Version, "", EncodingZstd},
		{CodecS2, Version2, CodecS2, EncodingS2},
	} {
		c, err := NewConfig([32]byte{1}, time.Unix(1714564800, 0).UTC(), Chunker{Min: 1 << 18, Avg: 1 << 20, Max: 1 << 22}, 16<<20, tc.codec)
		if err != nil {
			t.Fatal(err)
		}
		if c.Version != tc.version || c.Codec != tc.field || c.ChunkEncoding() != tc.enc {
			t.Errorf("%s: %+v", tc.codec, c)
		}
	}
	if _, err := NewConfig([32]byte{1}, time.Time{}, Chunker{}, 16<<20, "lz4"); err == nil {
		t.Error("codec lz4 accepted")
	}
}

// TestParseConfigVersions checks the rules of docs/FORMAT.md, "Config",
// that the vectors do not cover one by one.
func TestParseConfigVersions(t *testing.T) {
	cfg := func(version int, extra string) []byte {
		return fmt.Appendf(nil, `{"format":"reprise.dev/v1","version":%d,"id":"%064x","created":"2024-05-01T12:00:00Z","chunker":{"min":262144,"avg":1048576,"max":4194304},"pack_size":16777216%s}`, version, 1, extra)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error // nil: parses
	}{
		{"v1", cfg(1, ""), nil},
		{"v2 s2", cfg(2, `,"codec":"s2"`), nil},
		{"v2 zstd", cfg(2, `,"codec":"zstd"`), nil},
		{"v1 with a codec", cfg(1, `,"codec":"zstd"`), ErrCorrupt},
		{"v1 with an empty codec", cfg(1, `,"codec":""`), ErrCorrupt},
		{"v1 with a null codec", cfg(1, `,"codec":null`), ErrCorrupt},
		{"v2 without codec", cfg(2, ""), ErrCorrupt},
		{"v2 with an empty codec", cfg(2, `,"codec":""`), ErrCorrupt},
		{"v2 with a null codec", cfg(2, `,"codec":null`), ErrCorrupt},
		{"v2 with an unknown codec", cfg(2, `,"codec":"lz4"`), ErrCorrupt},
		{"v2 with a codec in capitals", cfg(2, `,"codec":"S2"`), ErrCorrupt},
		{"v2 with a number as codec", cfg(2, `,"codec":2`), ErrCorrupt},
		{"v3", cfg(3, ""), ErrVersion},
		{"v3 with a field v2 does not define", cfg(3, `,"codec":"lz4","dictionary":"x"`), ErrVersion},
		{"v0", cfg(0, ""), ErrVersion},
		{"not JSON", []byte(`{"format"`), ErrCorrupt},
		{"version not a number", []byte(`{"format":"reprise.dev/v1","version":"2"}`), ErrCorrupt},
	} {
		c, err := ParseConfig(tc.b)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v (config %+v), want %v", tc.name, err, c, tc.want)
		}
	}
}
