package restore

import (
	"math/rand/v2"
	"testing"
)

// fakeEngine counts the fetchers a fetchShare gives it.
type fakeEngine struct {
	n       int
	closing bool
}

func (e *fakeEngine) grow(n int) bool {
	if e.closing {
		return false
	}
	e.n += n
	return true
}

// TestFetchShare plays All's schedule with random timings: tenants start
// Parallel at a time with total/Parallel fetchers, some end without an
// engine, engines end in any order. The fetchers running never add up to
// more than total, none is given while a tenant is pending, and once
// none is, each running engine has total/running at least.
func TestFetchShare(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 500 {
		total := 1 + rng.IntN(40)
		parallel := 1 + rng.IntN(10)
		tenants := 1 + rng.IntN(30)
		per := max(1, total/parallel)
		f := newFetchShare(total, tenants)
		type tenant struct {
			m      *shareMember
			e      *fakeEngine
			joined bool
		}
		var active []*tenant
		next := 0
		check := func(what string) {
			sum := 0
			for e, n := range f.running {
				if n != e.(*fakeEngine).n {
					t.Fatalf("round %d, %s: share counts %d fetchers, engine runs %d", round, what, n, e.(*fakeEngine).n)
				}
				sum += n
				if f.pending == 0 && n < total/len(f.running) {
					t.Fatalf("round %d, %s: nothing pending, an engine has %d of %d fetchers among %d engines", round, what, n, total, len(f.running))
				}
				if f.pending > 0 && n != per {
					t.Fatalf("round %d, %s: %d tenants pending, an engine has %d fetchers, not %d", round, what, f.pending, n, per)
				}
			}
			if sum > max(total, parallel*per) {
				t.Fatalf("round %d, %s: %d fetchers running, total %d", round, what, sum, total)
			}
		}
		for next < tenants || len(active) > 0 {
			switch {
			case next < tenants && len(active) < parallel && rng.IntN(2) == 0:
				active = append(active, &tenant{m: f.member()})
				next++
			case len(active) > 0:
				i := rng.IntN(len(active))
				tn := active[i]
				switch {
				case !tn.joined && rng.IntN(5) == 0: // failed before its engine
					tn.m.done()
					check("done without an engine")
					active = append(active[:i], active[i+1:]...)
				case !tn.joined:
					tn.e = &fakeEngine{n: per}
					tn.joined = true
					tn.m.join(tn.e, per)
					check("join")
				default:
					tn.e.closing = true
					tn.m.leave(tn.e)
					check("leave")
					tn.m.done()
					check("done")
					active = append(active[:i], active[i+1:]...)
				}
			}
		}
		if f.pending != 0 || len(f.running) != 0 {
			t.Fatalf("round %d: %d pending, %d running at the end", round, f.pending, len(f.running))
		}
	}
}
