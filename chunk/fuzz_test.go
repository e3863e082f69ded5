package chunk

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// FuzzChunker checks the chunking invariants on fuzzed data, params and
// read sizes: chunks concatenate to the input, every chunk but the last is
// within [Min, Max], Cut follows the specification, and the Chunker agrees
// with Cut whatever the read sizes.
func FuzzChunker(f *testing.F) {
	f.Add([]byte("hello, world"), uint16(0), uint16(0), uint8(1), uint64(1))
	f.Add(randomData(5000, 1), uint16(0), uint16(0), uint8(2), uint64(2))
	f.Add(randomData(9000, 2), uint16(300), uint16(2000), uint8(0), uint64(3))
	f.Add(make([]byte, 4000), uint16(1), uint16(1), uint8(3), uint64(4))
	f.Add(mixedData(20000, 3), uint16(64), uint16(200), uint8(1), uint64(5))
	f.Fuzz(checkChunking)
}

// checkChunking is the body of FuzzChunker.
func checkChunking(t *testing.T, data []byte, minExtra, maxExtra uint16, avgShift uint8, readSeed uint64) {
	// Small params around 64/256/1024, all valid.
	avg := 128 << (avgShift % 4)               // 128 .. 1024
	minSize := 64 + int(minExtra)%(avg-64)     // 64 .. avg-1
	maxSize := avg + 1 + int(maxExtra)%(4*avg) // avg+1 .. 5*avg
	p := Params{Min: minSize, Avg: avg, Max: maxSize}
	g := NewGear([]byte{avgShift})
	s, err := NewSplitter(p, g)
	if err != nil {
		t.Fatalf("%v: %v", p, err)
	}
	want := cutAll(s, data)
	checkSizes(t, p, want, len(data))
	rest := data
	for _, n := range want {
		if ref := refCut(g, p, rest); n != ref {
			t.Fatalf("%v: Cut = %d, spec says %d", p, n, ref)
		}
		rest = rest[n:]
	}
	r := &randomReader{data: data, x: xorshift(readSeed | 1), eofWithData: readSeed%2 == 0}
	got := chunkAll(t, s, r, data)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%v: Chunker gives %v, Cut gives %v", p, got, want)
	}
	// A buffer of exactly Max bytes must work too.
	c := NewChunker(bytes.NewReader(data), s, make([]byte, p.Max))
	for i := 0; ; i++ {
		b, err := c.Next()
		if err == io.EOF {
			if i != len(want) {
				t.Fatalf("%d chunks with a Max-sized buffer, want %d", i, len(want))
			}
			break
		}
		if err != nil || len(b) != want[i] {
			t.Fatalf("chunk %d with a Max-sized buffer: %d bytes, %v; want %d", i, len(b), err, want[i])
		}
	}
}
