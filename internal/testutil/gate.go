package testutil

import (
	"context"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/reprise-backup/reprise/storage"
)

// Gate wraps a Storage to show that reads are issued concurrently, without
// timing anything: between Start and Stop, it holds each Get of a key
// containing Match until Want of them are in flight (or 200 ms have
// passed, so that code issuing fewer never hangs), and records the most
// in flight at once. Once Want were, Gets pass.
type Gate struct {
	storage.Storage
	Match string
	Want  int

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
	g.mu.Lock()
	if !g.on || !strings.Contains(key, g.Match) {
		g.mu.Unlock()
		return g.Storage.Get(ctx, key, off, n)
	}
	g.inflight++
	g.reads++
	g.max = max(g.max, g.inflight)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.inflight--
		g.mu.Unlock()
	}()
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		g.mu.Lock()
		reached := g.max >= g.Want
		g.mu.Unlock()
		if reached {
			break
		}
	}
	return g.Storage.Get(ctx, key, off, n)
}
