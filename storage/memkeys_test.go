package storage

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// keyList agrees with a sorted copy of a map under random inserts and
// removals, for every prefix asked.
func TestKeyList(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	l := newKeyList()
	ref := map[string]bool{}
	key := func() string { return fmt.Sprintf("t/%d/%c/%03d", rng.IntN(3), "ips"[rng.IntN(3)], rng.IntN(200)) }
	for i := range 20000 {
		k := key()
		switch {
		case rng.IntN(3) == 0:
			l.remove(k) // present or not
			delete(ref, k)
		case !ref[k]:
			l.insert(k)
			ref[k] = true
		}
		if i%500 != 0 {
			continue
		}
		for _, p := range []string{"", "t/", "t/1/", "t/2/s/", "t/0/p/1", k, k + "x", "u"} {
			var want []string
			for k := range ref {
				if strings.HasPrefix(k, p) {
					want = append(want, k)
				}
			}
			slices.Sort(want)
			var got []string
			l.prefix(p, func(k string) { got = append(got, k) })
			if !slices.Equal(got, want) {
				t.Fatalf("after %d ops, prefix %q: %d keys, want %d", i, p, len(got), len(want))
			}
		}
	}
}

// BenchmarkMemList lists one tenant's index objects in a store holding
// 1000 tenants' objects.
func BenchmarkMemList(b *testing.B) {
	m := NewMem()
	put := func(k string) {
		if err := m.Put(b.Context(), k, strings.NewReader(""), 0, nil); err != nil {
			b.Fatal(err)
		}
	}
	for ten := range 1000 {
		for i := range 20 {
			put(fmt.Sprintf("t/%04d/p/%02d", ten, i))
		}
		put(fmt.Sprintf("t/%04d/i/00", ten))
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := m.List(b.Context(), "t/0500/i/", func(Info) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	if n == 0 {
		b.Fatal("listed nothing")
	}
}
