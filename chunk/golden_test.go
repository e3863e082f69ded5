package chunk

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden_cuts.txt from the current implementation")

const goldenFile = "testdata/golden_cuts.txt"

// goldenCase is one frozen configuration. Its data is pseudo-random bytes
// from xorshift(seed) (see xorshift.fill) with, when zeros > 0, the range
// [zerosAt, zerosAt+zeros) cleared, to pin cuts forced at Max.
type goldenCase struct {
	name    string
	key     string // "" for the public table
	params  Params
	size    int
	seed    uint64
	zerosAt int
	zeros   int
}

var goldenCases = []goldenCase{
	{name: "public-small", params: Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}, size: 1 << 20, seed: 1, zerosAt: 300_000, zeros: 50_000},
	{name: "keyed-small", key: "reprise golden key", params: Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}, size: 1 << 20, seed: 1, zerosAt: 300_000, zeros: 50_000},
	{name: "keyed-odd", key: "reprise golden key", params: Params{Min: 100, Avg: 512, Max: 999}, size: 64 << 10, seed: 3},
	{name: "keyed-1MiB", key: "reprise golden key", params: Params{Min: 256 << 10, Avg: 1 << 20, Max: 4 << 20}, size: 24 << 20, seed: 2, zerosAt: 10 << 20, zeros: 9 << 20},
}

func (c goldenCase) data() []byte {
	d := randomData(c.size, c.seed)
	clear(d[c.zerosAt : c.zerosAt+c.zeros])
	return d
}

func (c goldenCase) header() string {
	return fmt.Sprintf("case %s key=%q params=%d/%d/%d size=%d seed=%d zeros=%d+%d",
		c.name, c.key, c.params.Min, c.params.Avg, c.params.Max, c.size, c.seed, c.zerosAt, c.zeros)
}

// renderGolden produces the golden file: the first entries of the public
// and a keyed gear table, then the chunk lengths of every case. The gear
// entries were checked against the reference BLAKE3 tool, b3sum 1.2.0:
//
//	printf '%s' "$key" | b3sum --derive-key "reprise.dev/v1 chunk gear" -l 2048
//
// prints the table as 2048 bytes of hex, entry i little-endian at [8i, 8i+8).
func renderGolden(t *testing.T) []byte {
	var b bytes.Buffer
	b.WriteString("# Frozen chunk cut points: part of the Reprise on-disk format.\n")
	b.WriteString("# Do not regenerate unless the format version changes:\n")
	b.WriteString("#   go test ./chunk -run TestGolden -update\n")
	for _, key := range []string{"", "reprise golden key"} {
		g := NewGear([]byte(key))
		fmt.Fprintf(&b, "gear key=%q [0..3] %#016x %#016x %#016x %#016x [255] %#016x\n", key, g[0], g[1], g[2], g[3], g[255])
	}
	for _, c := range goldenCases {
		var key []byte
		if c.key != "" {
			key = []byte(c.key)
		}
		s := mustSplitter(t, c.params, key)
		lens := cutAll(s, c.data())
		fmt.Fprintf(&b, "%s chunks=%d\n", c.header(), len(lens))
		for i, n := range lens {
			sep := " "
			if i%10 == 9 || i == len(lens)-1 {
				sep = "\n"
			}
			fmt.Fprintf(&b, "%d%s", n, sep)
		}
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	got := renderGolden(t)
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", goldenFile)
		return
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	// Report the first differing line.
	gs, ws := bufio.NewScanner(bytes.NewReader(got)), bufio.NewScanner(bytes.NewReader(want))
	section := ""
	for line := 1; ; line++ {
		g, w := gs.Scan(), ws.Scan()
		if !g && !w {
			break
		}
		if strings.HasPrefix(ws.Text(), "case ") {
			section = ws.Text()
		}
		if g != w || gs.Text() != ws.Text() {
			t.Fatalf("cut points changed: this breaks the on-disk format.\n%s line %d (in %q):\n got: %s\nwant: %s",
				goldenFile, line, section, gs.Text(), ws.Text())
		}
	}
	t.Fatal("golden file differs")
}
