package storagetest

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/reprise-backup/reprise/storage"
)

// Bench measures put and get throughput of stores made by newStore (fresh
// and empty, cleaned up by newStore with b.Cleanup) on 1 MiB and 16 MiB
// objects, in the sub-benchmarks Put/1MiB, Put/16MiB, Get/1MiB and
// Get/16MiB. Puts overwrite a few keys in turn, so a memory store does not
// grow with b.N; gets read a whole object through a 1 MiB buffer.
func Bench(b *testing.B, newStore func(b *testing.B) storage.Storage) {
	for _, size := range []int{1 << 20, 16 << 20} {
		name := fmt.Sprintf("%dMiB", size>>20)
		payload := data(uint64(size), size)
		b.Run("Put/"+name, func(b *testing.B) {
			s := newStore(b)
			ctx := b.Context()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				key := fmt.Sprintf("bench/put/%d", i%4)
				i++
				if err := s.Put(ctx, key, bytes.NewReader(payload), int64(size), nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Get/"+name, func(b *testing.B) {
			s := newStore(b)
			ctx := b.Context()
			if err := s.Put(ctx, "bench/get", bytes.NewReader(payload), int64(size), nil); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				rc, err := s.Get(ctx, "bench/get", 0, -1)
				if err != nil {
					b.Fatal(err)
				}
				var n int64
				for {
					k, err := rc.Read(buf)
					n += int64(k)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				rc.Close()
				if n != int64(size) {
					b.Fatalf("read %d bytes, want %d", n, size)
				}
			}
		})
	}
}
