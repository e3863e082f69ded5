package restore

import "sync"

// workShare divides All's Options.Concurrency (the ranged reads in
// flight) and its decoders (twice GOMAXPROCS, as for one directory
// restore) between the tenants restored at once. Each tenant's engine
// starts with its 1/Parallel of each (one at least). Once every tenant's
// engine has started (or its restore has ended without one), what each
// engine that finishes had goes to those still running: without that, the
// last tenants of a smallest-first order, the largest, would be restored
// alone with a fraction of the requests and cores, and the slowest part of
// a mass restore would run with the least parallelism. Sharing decoders
// also bounds their buffers (up to a chunk each, outside the memory
// budget) by the machine, not by Parallel times the machine.
//
// An engine only ever gains fetchers and decoders. A fetcher added to a
// running engine is like one it had from the start: it takes spans from
// the same FIFO queue, so the argument that an engine's charges cannot
// stall (see charge) holds as it is, and no tenant's fetcher ever waits
// for another tenant's. What running engines have never adds up to more
// than the totals (or Parallel, when a total is lower: each engine has one
// at least): an engine's share is handed on only once it has closed, its
// fetchers and decoders gone, and only when no tenant is pending.
type workShare struct {
	mu                 sync.Mutex
	fetchers, decoders int              // totals
	pending            int              // tenants neither joined with an engine nor ended
	running            map[grower]*work // what each running engine has
}

// work is what one engine runs.
type work struct{ fetchers, decoders int }

// grower is an engine, as the share sees it.
type grower interface {
	// grow starts more fetchers and decoders, unless the engine is
	// closing; it reports whether it did.
	grow(fetchers, decoders int) bool
}

func newWorkShare(fetchers, decoders, tenants int) *workShare {
	return &workShare{fetchers: fetchers, decoders: decoders, pending: tenants, running: map[grower]*work{}}
}

// start is what each tenant's engine starts with, for parallel tenants.
func (f *workShare) start(parallel int) work {
	return work{max(1, f.fetchers/parallel), max(1, f.decoders/parallel)}
}

// shareMember is one tenant's place in a workShare.
type shareMember struct {
	f       *workShare
	settled bool // joined, or done without an engine
}

func (f *workShare) member() *shareMember { return &shareMember{f: f} }

// settle stops counting m's tenant as pending. Called with f.mu held.
func (m *shareMember) settle() {
	if !m.settled {
		m.settled = true
		m.f.pending--
	}
}

// join registers m's engine, running what w says.
func (m *shareMember) join(e grower, w work) {
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	m.settle()
	f.running[e] = &w
	f.rebalance()
}

// leave unregisters an engine whose fetchers and decoders have exited.
func (m *shareMember) leave(e grower) {
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.running, e)
	f.rebalance()
}

// done is called once m's tenant is restored (or has failed), whether or
// not it ran an engine.
func (m *shareMember) done() {
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	m.settle()
	f.rebalance()
}

// rebalance gives each running engine its 1/running of each total once no
// tenant is pending; until then, a tenant yet to start takes the share of
// one that ends. Called with f.mu held.
func (f *workShare) rebalance() {
	if f.pending > 0 || len(f.running) == 0 {
		return
	}
	per := work{f.fetchers / len(f.running), f.decoders / len(f.running)}
	for e, w := range f.running {
		add := work{max(0, per.fetchers-w.fetchers), max(0, per.decoders-w.decoders)}
		if add != (work{}) && e.grow(add.fetchers, add.decoders) {
			w.fetchers += add.fetchers
			w.decoders += add.decoders
		}
	}
}
