package chunk

import (
	"bytes"
	"io"
	"sync"
	"testing"
)

// benchData is 64 MiB of pseudo-random bytes, made once on first use.
var benchData = sync.OnceValue(func() []byte { return randomData(64<<20, 0x5eed) })

var benchParams = []struct {
	name string
	p    Params
}{
	{"avg=64KiB", Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}},
	{"avg=1MiB", DefaultParams()},
}

func BenchmarkCut(b *testing.B) {
	for _, bp := range benchParams {
		b.Run(bp.name, func(b *testing.B) {
			s := mustSplitter(b, bp.p, []byte("bench"))
			data := benchData()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			chunks := 0
			for b.Loop() {
				for d := data; len(d) > 0; chunks++ {
					d = d[s.Cut(d):]
				}
			}
			b.ReportMetric(float64(len(data))*float64(b.N)/float64(chunks), "B/chunk")
		})
	}
}

func BenchmarkChunker(b *testing.B) {
	for _, bp := range benchParams {
		b.Run(bp.name, func(b *testing.B) {
			s := mustSplitter(b, bp.p, []byte("bench"))
			data := benchData()
			r := bytes.NewReader(data)
			c := NewChunker(r, s, nil)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			chunks := 0
			for b.Loop() {
				r.Reset(data)
				c.Reset(r)
				for {
					_, err := c.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					chunks++
				}
			}
			b.ReportMetric(float64(len(data))*float64(b.N)/float64(chunks), "B/chunk")
		})
	}
}
