package format

import (
	"crypto/rand"
	"testing"

	"github.com/reprise-backup/reprise/crypto"
)

// BenchmarkNestedEncryption measures what storing already-encrypted
// (incompressible) data costs: the compression attempt that gives up, then
// sealing, against sealing alone. docs/SECURITY.md and issue #4 ask for the
// first within 10% of the second. Compare the MB/s of the two sub-benchmarks
// in one run.
func BenchmarkNestedEncryption(b *testing.B) {
	chunk := make([]byte, 1<<20)
	rand.Read(chunk)
	key, _ := crypto.RandomKey()
	var id crypto.ID
	for _, mode := range []struct {
		name string
		enc  byte
	}{{"seal-only", EncodingRaw}, {"detect+seal", EncodingZstd}, {"detect+seal/codec=s2", EncodingS2}} {
		b.Run(mode.name, func(b *testing.B) {
			pb := NewPackBuilder()
			var h Handle
			// Warm up: grow the pack buffer before timing.
			pb.Reset(&key, 1, h)
			for range 16 {
				pb.Add(KindData, &id, chunk, mode.enc)
			}
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if n%16 == 0 {
					pb.Reset(&key, 1, h)
				}
				pb.Add(KindData, &id, chunk, mode.enc)
				n++
			}
		})
	}
}
