package repo

import (
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
)

// BenchmarkIndexMemory measures the memory an in-memory index takes per
// chunk (what prune and backup hold), reported as bytes/chunk, over one
// million chunks. Run with -benchtime=1x.
func BenchmarkIndexMemory(b *testing.B) {
	n := 1_000_000
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		idx := NewIndex()
		const perPack = 64
		for p := 0; p < n/perPack; p++ {
			e := format.PackEntry{Gen: 1}
			binary.LittleEndian.PutUint64(e.ID[:], uint64(p))
			e.Blobs = make([]format.BlobInfo, perPack)
			for j := range e.Blobs {
				var id crypto.ID
				binary.LittleEndian.PutUint64(id[:], uint64(p*perPack+j))
				id[31] = 1
				e.Blobs[j] = format.BlobInfo{ID: id, Seq: uint32(j), Offset: uint32(j << 16), SealedLen: 1 << 16, RawLen: 1 << 16}
			}
			idx.Add(&e)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(idx.Len()), "bytes/chunk")
		runtime.KeepAlive(idx)
	}
}
