package restore

import "sync"

// fetchShare divides All's Options.Concurrency (the ranged reads in
// flight) between the tenants restored at once. Each tenant's engine
// starts with Concurrency/Parallel fetchers. Once every tenant's engine
// has started (or its restore has ended without one), the fetchers of
// each engine that finishes go to those still running: without that, the
// last tenants of a smallest-first order, the largest, would be restored
// alone with a fraction of the requests, and over an object store the
// slowest part of a mass restore would run with the least parallelism.
//
// An engine only ever gains fetchers. A fetcher added to a running engine
// is like one it had from the start: it takes spans from the same FIFO
// queue, so the argument that an engine's charges cannot stall (see
// charge) holds as it is, and no tenant's fetcher ever waits for another
// tenant's. The fetchers of running engines never add up to more than
// Concurrency (or Parallel, when Concurrency is lower: each engine has
// one at least): an engine's share is handed on only once it has closed,
// its fetchers gone, and only when no tenant is pending.
type fetchShare struct {
	mu      sync.Mutex
	total   int
	pending int            // tenants neither joined with an engine nor ended
	running map[grower]int // fetchers of each running engine
}

// grower is an engine, as the share sees it.
type grower interface {
	// grow starts n more fetchers, unless the engine is closing; it
	// reports whether it did.
	grow(n int) bool
}

func newFetchShare(total, tenants int) *fetchShare {
	return &fetchShare{total: total, pending: tenants, running: map[grower]int{}}
}

// shareMember is one tenant's place in a fetchShare.
type shareMember struct {
	f       *fetchShare
	settled bool // joined, or done without an engine
}

func (f *fetchShare) member() *shareMember { return &shareMember{f: f} }

// settle stops counting m's tenant as pending. Called with f.mu held.
func (m *shareMember) settle() {
	if !m.settled {
		m.settled = true
		m.f.pending--
	}
}

// join registers m's engine, running n fetchers.
func (m *shareMember) join(e grower, n int) {
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	m.settle()
	f.running[e] = n
	f.rebalance()
}

// leave unregisters an engine whose fetchers have all exited.
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

// rebalance gives each running engine total/running fetchers once no
// tenant is pending; until then, a tenant yet to start takes the share of
// one that ends. Called with f.mu held.
func (f *fetchShare) rebalance() {
	if f.pending == 0 && len(f.running) > 0 {
		per := f.total / len(f.running)
		for e, n := range f.running {
			if n < per && e.grow(per-n) {
				f.running[e] = per
			}
		}
	}
}
