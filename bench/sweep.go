package main

import (
	"fmt"
	"math/bits"
	"os"
	"text/tabwriter"

	"github.com/reprise-backup/reprise/chunk"
)

// variant is a slow reference gear chunker with the same hash as Reprise
// (the 64-byte window ending at the candidate length) but configurable
// normalization and optional JC-style jumps, used to measure choices that
// the chunk package does not expose.
type variant struct {
	name        string
	p           Params
	level       int // normalization level: mask bits log2(Avg)+level before Avg, -level after
	jump        int // jump length, 0 for none
	jumpBitsOff int // the jump mask has this many fewer bits than the cut mask
}

func mask(n int) uint64 { return (1<<n - 1) << (63 - n) }

// hashed counts the bytes variants hash (including warm-ups), for the
// speed estimate.
var hashed int

func (v variant) impl() impl {
	g := chunk.NewGear([]byte("bench key"))
	b := bits.TrailingZeros(uint(v.p.Avg))
	mS, mL := mask(b+v.level), mask(b-v.level)
	jS, jL := mask(b+v.level-v.jumpBitsOff), mask(b-v.level-v.jumpBitsOff)
	cut := func(d []byte) int {
		n := min(len(d), v.p.Max)
		if n <= v.p.Min {
			return n
		}
		var h uint64
		warm := func(l int) {
			h = 0
			for _, c := range d[l-64 : l-1] {
				h = h<<1 + g[c]
			}
			hashed += 63
		}
		l := v.p.Min
		warm(l)
		for l <= n {
			h = h<<1 + g[d[l-1]]
			hashed++
			m, j := mS, jS
			if l > v.p.Avg {
				m, j = mL, jL
			}
			if v.jump == 0 {
				if h&m == 0 {
					return l
				}
			} else if h&j == 0 {
				if h&m == 0 {
					return l
				}
				l += v.jump
				if l > n {
					return n
				}
				warm(l)
				continue
			}
			l++
		}
		return n
	}
	return impl{name: v.name, p: v.p, run: func(data []byte, emit func(int)) {
		for len(data) > 0 {
			n := cut(data)
			emit(n)
			data = data[n:]
		}
	}}
}

// runSweep measures Reprise's Min and Max choices, and normalization levels
// and JC-style jumps with the reference variant, at Avg 64 KiB. The variants
// are compared at equal mean chunk size: their Min is calibrated to the mean
// of Reprise at 16K/64K/256K.
func runSweep(data []byte, edited [][]byte) {
	const avg = 64 << 10
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 1, ' ', tabwriter.AlignRight|tabwriter.Debug)
	defer w.Flush()
	fmt.Printf("sweep at Avg 64 KiB over %d MiB, %d sets of %d edits, %d shifts; throughput best of %d rounds\n\n", len(data)>>20, len(edited), *nEdits, *shifts, *rounds)
	fmt.Fprintf(w, "config\tmin/avg/max\tMB/s (Cut) or hashed\tmean size\tsd\tper edit (mean chunks)\tshift cost (mean chunks)\t\n")
	row := func(im impl, speed string) {
		lens, st := lengths(im, data)
		again := storedAgainMean(im, chunkSet(data, lens), edited)
		shift := shiftCost(im, data, *shifts)
		fmt.Fprintf(w, "%s\t%v\t%s\t%.0f\t%.0f\t%.2f\t%.2f\t\n", im.name, im.p, speed, st.mean, st.sd,
			again/float64(*nEdits)/st.mean, shift/st.mean)
	}
	var ims []impl
	for _, p := range []Params{
		{avg / 8, avg, 4 * avg},
		{avg / 4, avg, 4 * avg},
		{3 * avg / 8, avg, 4 * avg},
		{avg / 2, avg, 4 * avg},
		{3 * avg / 4, avg, 4 * avg},
		{avg / 4, avg, 2 * avg},
		{avg / 4, avg, 8 * avg},
	} {
		im := repriseCut(p)
		im.name = "reprise (NC2)"
		ims = append(ims, im)
	}
	for i, mbs := range throughput(ims, data) {
		row(ims[i], fmt.Sprintf("%.0f MB/s", mbs))
	}
	_, ref := lengths(repriseCut(Params{avg / 4, avg, 4 * avg}), data)
	for _, v := range []variant{
		{name: "NC0", level: 0},
		{name: "NC1", level: 1},
		{name: "NC2 (reference)", level: 2},
		{name: "NC3", level: 3},
		{name: "NC1 + jumps avg/8", level: 1, jump: avg / 8, jumpBitsOff: 1},
		{name: "NC2 + jumps avg/4", level: 2, jump: avg / 4, jumpBitsOff: 1},
		{name: "NC2 + jumps avg/8", level: 2, jump: avg / 8, jumpBitsOff: 1},
		{name: "NC2 + jumps avg/16, 2 bits", level: 2, jump: avg / 16, jumpBitsOff: 2},
		{name: "NC2 + jumps avg/32, 3 bits", level: 2, jump: avg / 32, jumpBitsOff: 3},
	} {
		im := calibrate(func(p Params) impl { v.p = p; return v.impl() }, avg, ref.mean, data)
		hashed = 0
		im.run(data, func(int) {})
		row(im, fmt.Sprintf("%.0f%% hashed", 100*float64(hashed)/float64(len(data))))
	}
}
