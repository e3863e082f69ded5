package format_test

import (
	"math/rand/v2"
	"testing"

	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/internal/testutil"
)

// codecBenchData are the 1 MiB chunks the codec benchmarks encode and
// decode: SQL-like text, and random bytes (stored raw after the probes).
func codecBenchData() []struct {
	name string
	raw  []byte
} {
	return []struct {
		name string
		raw  []byte
	}{
		{"text", testutil.TextBytes(rand.New(rand.NewPCG(1, 2)), 1<<20)},
		{"random", testutil.RandBytes(rand.New(rand.NewPCG(3, 4)), 1<<20)},
	}
}

var benchCodecs = []struct {
	name string
	enc  byte
}{{"zstd", format.EncodingZstd}, {"s2", format.EncodingS2}}

// BenchmarkEncode encodes a 1 MiB chunk into a reused buffer, as a
// backup's sealers do, with each codec. The ratio metric is the payload's
// size over the chunk's.
//
//	go test ./internal/format -run '^$' -bench 'Encode|Decode' -count 5
func BenchmarkEncode(b *testing.B) {
	for _, d := range codecBenchData() {
		for _, c := range benchCodecs {
			b.Run("data="+d.name+"/codec="+c.name, func(b *testing.B) {
				framed := append([]byte{0}, d.raw...)
				dst := make([]byte, 0, 2<<20)
				var n int
				b.SetBytes(int64(len(d.raw)))
				b.ReportAllocs()
				for b.Loop() {
					n = len(format.EncodeFramed(dst, framed, c.enc))
				}
				b.ReportMetric(float64(n)/float64(len(d.raw)), "ratio")
			})
		}
	}
}

// BenchmarkDecode decodes the payload of a 1 MiB chunk into a reused
// buffer, as a restore decoder does. data=text/codec=zstd is what this
// benchmark measured before S2 existed; random chunks are stored raw, so
// decoding them is a copy whatever the codec.
func BenchmarkDecode(b *testing.B) {
	for _, d := range codecBenchData() {
		for _, c := range benchCodecs {
			b.Run("data="+d.name+"/codec="+c.name, func(b *testing.B) {
				payload := format.Encode(nil, d.raw, c.enc)
				if d.name == "text" && payload[0] != c.enc {
					b.Fatal("text did not compress")
				}
				dst := make([]byte, 0, 4<<20)
				b.SetBytes(int64(len(d.raw)))
				b.ReportAllocs()
				for b.Loop() {
					out, err := format.Decode(dst[:0], payload, len(d.raw))
					if err != nil || len(out) != len(d.raw) {
						b.Fatal(err, len(out))
					}
				}
			})
		}
	}
}
