// Command bench compares Reprise's chunker with peer FastCDC-class
// implementations at equal measured mean chunk size: throughput, chunk size
// spread, and the bytes that would be stored again after small scattered
// edits and after a shift of the content.
//
// It lives in its own module so that the peers never become dependencies of
// Reprise. Run it from this directory:
//
//	go run . -size 256 -rounds 5
//
// The machine is shared, so throughput is the best of -rounds runs, with the
// implementations interleaved in every round.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"hash/maphash"
	"io"
	"log"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	cdc "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/jc"
	jotfs "github.com/jotfs/fastcdc-go"

	"github.com/reprise-backup/reprise/chunk"
)

var (
	sizeMiB  = flag.Int("size", 256, "size of the test buffer in MiB")
	nEdits   = flag.Int("edits", 200, "number of 100-byte edits (overwrites and insertions in turn)")
	editSets = flag.Int("editsets", 10, "number of different sets of edits, each applied to the original data, to average over")
	rounds   = flag.Int("rounds", 3, "throughput rounds (best is kept)")
	shifts   = flag.Int("shifts", 200, "number of shift trials")
	avgsFlag = flag.String("avg", "64K,1M", "comma-separated Avg sizes to compare at")
	only     = flag.String("only", "", "comma-separated name prefixes of implementations to run (default all)")
	sweep    = flag.Bool("sweep", false, "instead of comparing peers, sweep Reprise's Min/Max and algorithm variants")
)

// impl is one chunker configuration: run feeds the lengths of the chunks of
// data, in order, to emit.
type impl struct {
	name string
	p    Params // as given to the implementation
	run  func(data []byte, emit func(n int))
}

// Params are the size options given to an implementation.
type Params struct{ Min, Avg, Max int }

func (p Params) String() string {
	return fmt.Sprintf("%s/%s/%s", size(p.Min), size(p.Avg), size(p.Max))
}

func size(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dK", n>>10)
	}
	return fmt.Sprint(n)
}

func reprise(p Params) impl {
	s, err := chunk.NewSplitter(chunk.Params{Min: p.Min, Avg: p.Avg, Max: p.Max}, chunk.NewGear([]byte("bench key")))
	if err != nil {
		log.Fatal(err)
	}
	r := bytes.NewReader(nil)
	c := chunk.NewChunker(r, s, nil)
	return impl{name: "reprise Chunker", p: p, run: func(data []byte, emit func(int)) {
		r.Reset(data)
		c.Reset(r)
		for {
			b, err := c.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				log.Fatal(err)
			}
			emit(len(b))
		}
	}}
}

func repriseCut(p Params) impl {
	s, err := chunk.NewSplitter(chunk.Params{Min: p.Min, Avg: p.Avg, Max: p.Max}, chunk.NewGear([]byte("bench key")))
	if err != nil {
		log.Fatal(err)
	}
	return impl{name: "reprise Cut", p: p, run: func(data []byte, emit func(int)) {
		for len(data) > 0 {
			n := s.Cut(data)
			emit(n)
			data = data[n:]
		}
	}}
}

func plakar(algo string) func(Params) impl {
	return func(p Params) impl {
		r := bytes.NewReader(nil)
		c, err := cdc.NewChunker(algo, r, &cdc.ChunkerOpts{MinSize: p.Min, NormalSize: p.Avg, MaxSize: p.Max})
		if err != nil {
			log.Fatalf("plakar %s %v: %v", algo, p, err)
		}
		return impl{name: "plakar " + algo, p: p, run: func(data []byte, emit func(int)) {
			r.Reset(data)
			c.Reset(r)
			for {
				b, err := c.Next()
				if len(b) > 0 {
					emit(len(b))
				}
				if err == io.EOF {
					return
				}
				if err != nil {
					log.Fatal(err)
				}
			}
		}}
	}
}

func jotfsFastCDC(p Params) impl {
	return impl{name: "jotfs fastcdc-go", p: p, run: func(data []byte, emit func(int)) {
		c, err := jotfs.NewChunker(bytes.NewReader(data), jotfs.Options{MinSize: p.Min, AverageSize: p.Avg, MaxSize: p.Max})
		if err != nil {
			log.Fatalf("jotfs %v: %v", p, err)
		}
		for {
			ch, err := c.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				log.Fatal(err)
			}
			emit(ch.Length)
		}
	}}
}

// xorshift is the same generator as the chunk package's tests.
type xorshift uint64

func (x *xorshift) next() uint64 {
	v := uint64(*x)
	v ^= v << 13
	v ^= v >> 7
	v ^= v << 17
	*x = xorshift(v)
	return v
}

func (x *xorshift) fill(b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := x.next()
		for k := 0; k < 8 && i+k < len(b); k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
}

// edit applies n 100-byte edits at pseudo-random sorted offsets drawn from
// seed, overwrites and insertions in turn.
func edit(data []byte, n int, seed uint64) []byte {
	x := xorshift(seed)
	pos := make([]int, n)
	for i := range pos {
		pos[i] = int(x.next() % uint64(len(data)-100))
	}
	slices.Sort(pos)
	out := make([]byte, 0, len(data)+n*100)
	prev := 0
	var blk [100]byte
	for i, p := range pos {
		p = max(p, prev)
		out = append(out, data[prev:p]...)
		x.fill(blk[:])
		out = append(out, blk[:]...)
		if i%2 == 0 {
			prev = p + len(blk) // overwrite
		} else {
			prev = p // insert
		}
	}
	return append(out, data[prev:]...)
}

type stats struct {
	chunks   int
	mean, sd float64
}

func lengths(im impl, data []byte) ([]int, stats) {
	var lens []int
	im.run(data, func(n int) { lens = append(lens, n) })
	var sum, sum2 float64
	for _, n := range lens {
		sum += float64(n)
		sum2 += float64(n) * float64(n)
	}
	st := stats{chunks: len(lens), mean: sum / float64(len(lens))}
	st.sd = math.Sqrt(sum2/float64(len(lens)) - st.mean*st.mean)
	return lens, st
}

var seed = maphash.MakeSeed()

func chunkSet(data []byte, lens []int) map[uint64]bool {
	set := make(map[uint64]bool, len(lens))
	for _, n := range lens {
		set[maphash.Bytes(seed, data[:n])] = true
		data = data[n:]
	}
	return set
}

// storedAgainMean returns the mean over bs of storedAgain.
func storedAgainMean(im impl, set map[uint64]bool, bs [][]byte) float64 {
	total := 0
	for _, b := range bs {
		total += storedAgain(im, set, b)
	}
	return float64(total) / float64(len(bs))
}

// storedAgain returns the bytes of b's chunks that are not among set.
func storedAgain(im impl, set map[uint64]bool, b []byte) int {
	again := 0
	im.run(b, func(n int) {
		if !set[maphash.Bytes(seed, b[:n])] {
			again += n
		}
		b = b[n:]
	})
	return again
}

// shiftCost returns the mean bytes, beyond the inserted prefix itself,
// stored again when a random prefix of up to 2*Avg bytes is inserted before
// a segment of data.
func shiftCost(im impl, data []byte, trials int) float64 {
	seg := min(len(data), 32*im.p.Avg)
	x := xorshift(0x5417)
	total := 0
	buf := make([]byte, seg+2*im.p.Avg)
	for range trials {
		off := int(x.next() % uint64(len(data)-seg+1))
		a := data[off : off+seg]
		r := 1 + int(x.next()%uint64(2*im.p.Avg))
		b := buf[:r+seg]
		x.fill(b[:r])
		copy(b[r:], a)
		lens, _ := lengths(im, a)
		total += storedAgain(im, chunkSet(a, lens), b) - r
	}
	return float64(total) / float64(trials)
}

// throughput returns the best MB/s of each implementation over rounds,
// interleaving them.
func throughput(ims []impl, data []byte) []float64 {
	best := make([]time.Duration, len(ims))
	for range *rounds {
		for i, im := range ims {
			start := time.Now()
			im.run(data, func(int) {})
			if d := time.Since(start); best[i] == 0 || d < best[i] {
				best[i] = d
			}
		}
	}
	mbs := make([]float64, len(ims))
	for i, d := range best {
		mbs[i] = float64(len(data)) / d.Seconds() / 1e6
	}
	return mbs
}

// calibrate returns the implementation made by mk whose measured mean chunk
// size on sample is closest to target, searching Min in [64, avg) with
// Max = 4*avg. (Peers cut at different mean sizes for the same options, so
// they are compared at the mean size Reprise has with Min = Avg/4.)
func calibrate(mk func(Params) impl, avg int, target float64, sample []byte) impl {
	mean := func(minSize int) float64 {
		_, st := lengths(mk(Params{minSize, avg, 4 * avg}), sample)
		return st.mean
	}
	lo, hi := 64, avg-1
	if mean(lo) >= target {
		return mk(Params{lo, avg, 4 * avg})
	}
	if mean(hi) <= target {
		return mk(Params{hi, avg, 4 * avg})
	}
	for hi-lo > 1 && float64(hi-lo) > float64(avg)/4096 {
		mid := (lo + hi) / 2
		if mean(mid) < target {
			lo = mid
		} else {
			hi = mid
		}
	}
	if math.Abs(mean(lo)-target) < math.Abs(mean(hi)-target) {
		return mk(Params{lo, avg, 4 * avg})
	}
	return mk(Params{hi, avg, 4 * avg})
}

func parseSize(s string) int {
	var n int
	var unit string
	fmt.Sscanf(s, "%d%s", &n, &unit)
	switch strings.ToUpper(unit) {
	case "K":
		n <<= 10
	case "M":
		n <<= 20
	}
	return n
}

func selected(name string) bool {
	if *only == "" {
		return true
	}
	for _, p := range strings.Split(*only, ",") {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func main() {
	flag.Parse()
	data := make([]byte, *sizeMiB<<20)
	x := xorshift(0xbe7c)
	x.fill(data)
	edited := make([][]byte, *editSets)
	for i := range edited {
		edited[i] = edit(data, *nEdits, 0xed17+uint64(i))
	}

	if *sweep {
		runSweep(data, edited)
		return
	}

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 1, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Printf("%d MiB pseudo-random data; %d sets of %d edits of 100 bytes (overwrite, insert in turn); %d shift trials; throughput best of %d rounds\n",
		*sizeMiB, *editSets, *nEdits, *shifts, *rounds)
	fmt.Printf("peers' Min calibrated to Reprise's mean chunk size at Min = Avg/4, Max = 4*Avg\n\n")
	for _, a := range strings.Split(*avgsFlag, ",") {
		avg := parseSize(a)
		ref := Params{avg / 4, avg, 4 * avg}
		_, refSt := lengths(reprise(ref), data)
		ims := []impl{reprise(ref), repriseCut(ref)}
		for _, mk := range []func(Params) impl{
			plakar("fastcdc-v1.0.0"), plakar("fastcdc"), plakar("jc-v1.1.0"), jotfsFastCDC,
		} {
			if selected(mk(ref).name) {
				ims = append(ims, calibrate(mk, avg, refSt.mean, data))
			}
		}
		ims = slices.DeleteFunc(ims, func(im impl) bool { return !selected(im.name) })
		mbs := throughput(ims, data)
		fmt.Fprintf(w, "implementation\tmin/avg/max\tMB/s\tmean size\tsd\tstored again after edits (mean)\tper edit (mean chunks)\tshift cost (mean chunks)\t\n")
		for i, im := range ims {
			lens, st := lengths(im, data)
			again := storedAgainMean(im, chunkSet(data, lens), edited)
			shift := shiftCost(im, data, *shifts)
			fmt.Fprintf(w, "%s\t%v\t%.0f\t%.0f\t%.0f\t%.0f\t%.3f\t%.2f\t\n", im.name, im.p, mbs[i], st.mean, st.sd,
				again, again/float64(*nEdits)/st.mean, shift/st.mean)
		}
		w.Flush()
		fmt.Println()
	}
}
