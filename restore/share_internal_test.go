package restore

import (
	"math/rand/v2"
	"testing"
)

// fakeEngine counts the fetchers and decoders a workShare gives it.
type fakeEngine struct {
	w       work
	closing bool
}

func (e *fakeEngine) grow(fetchers, decoders int) bool {
	if e.closing {
		return false
	}
	e.w.fetchers += fetchers
	e.w.decoders += decoders
	return true
}

// TestWorkShare plays All's schedule with random timings: tenants start
// Parallel at a time with their 1/Parallel of each total, some end
// without an engine, engines end in any order. What engines run never
// adds up to more than the totals, nothing is given while a tenant is
// pending, and once none is, each running engine has its 1/running of
// each total at least.
func TestWorkShare(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 500 {
		totals := work{1 + rng.IntN(40), 1 + rng.IntN(16)}
		parallel := 1 + rng.IntN(10)
		tenants := 1 + rng.IntN(30)
		f := newWorkShare(totals.fetchers, totals.decoders, tenants)
		per := f.start(parallel)
		if want := (work{max(1, totals.fetchers/parallel), max(1, totals.decoders/parallel)}); per != want {
			t.Fatalf("start(%d) = %v for totals %v, want %v", parallel, per, totals, want)
		}
		type tenant struct {
			m      *shareMember
			e      *fakeEngine
			joined bool
		}
		var active []*tenant
		next := 0
		check := func(what string) {
			var sum work
			for g, w := range f.running {
				e := g.(*fakeEngine)
				if *w != e.w {
					t.Fatalf("round %d, %s: share counts %v, engine runs %v", round, what, *w, e.w)
				}
				sum.fetchers += w.fetchers
				sum.decoders += w.decoders
				n := len(f.running)
				if f.pending == 0 && (w.fetchers < totals.fetchers/n || w.decoders < totals.decoders/n) {
					t.Fatalf("round %d, %s: nothing pending, an engine has %v of %v among %d engines", round, what, *w, totals, n)
				}
				if f.pending > 0 && *w != per {
					t.Fatalf("round %d, %s: %d tenants pending, an engine has %v, not %v", round, what, f.pending, *w, per)
				}
			}
			if sum.fetchers > max(totals.fetchers, parallel*per.fetchers) || sum.decoders > max(totals.decoders, parallel*per.decoders) {
				t.Fatalf("round %d, %s: %v running, totals %v", round, what, sum, totals)
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
					tn.e = &fakeEngine{w: per}
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
