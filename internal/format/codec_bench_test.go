package format_test

import (
	"math/rand/v2"
	"testing"

	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/internal/testutil"
)

// BenchmarkDecode decodes a zstd payload of a 1 MiB SQL-like text chunk into
// a reused buffer, as a restore decoder does.
func BenchmarkDecode(b *testing.B) {
	raw := testutil.TextBytes(rand.New(rand.NewPCG(1, 2)), 1<<20)
	payload := format.Encode(nil, raw, true)
	if payload[0] != format.EncodingZstd {
		b.Fatal("text did not compress")
	}
	dst := make([]byte, 0, 4<<20)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		out, err := format.Decode(dst[:0], payload, len(raw))
		if err != nil || len(out) != len(raw) {
			b.Fatal(err, len(out))
		}
	}
}
