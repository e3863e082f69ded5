package testutil

import (
	"context"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/reprise-backup/reprise/storage"
)

// Gate wraps a Storage to show that reads (or, with Deletes, deletes) are
// issued concurrently, without timing anything: between Start and Stop,
// it holds each Get (each Delete) of a key containing Match until Want of
// them are in flight (or 200 ms have passed, so that code issuing fewer
// never hangs), and records the most in flight at once. Once Want were,
// they pass.
type Gate struct {
	storage.Storage
	Match   string
	Want    int
	Deletes bool // hold deletes instead of reads

	mu                   sync.Mutex
	on                   bool
	inflight, max, reads int
}

// Start resets the counts and starts holding reads.
func (g *Gate) Start() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.on, g.max, g.reads = true, 0, 0
}

// Stop stops holding reads and returns the most that were in flight at
// once and how many there were since Start.
func (g *Gate) Stop() (most, reads int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.on = false
	return g.max, g.reads
}

// Get holds a matching read as described on Gate.
func (g *Gate) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	defer g.hold(!g.Deletes, key)()
	return g.Storage.Get(ctx, key, off, n)
}

// Delete holds a matching delete as described on Gate.
func (g *Gate) Delete(ctx context.Context, key string) error {
	defer g.hold(g.Deletes, key)()
	return g.Storage.Delete(ctx, key)
}

// hold waits, for an operation held (op) on a matching key, as described
// on Gate; the caller calls what it returns once its call is done.
func (g *Gate) hold(op bool, key string) (done func()) {
	g.mu.Lock()
	if !g.on || !op || !strings.Contains(key, g.Match) {
		g.mu.Unlock()
		return func() {}
	}
	g.inflight++
	g.reads++
	g.max = max(g.max, g.inflight)
	g.mu.Unlock()
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		g.mu.Lock()
		reached := g.max >= g.Want
		g.mu.Unlock()
		if reached {
			break
		}
	}
	return func() {
		g.mu.Lock()
		g.inflight--
		g.mu.Unlock()
	}
}
