package reprise_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/storage"
)

// TestTenantsReadsEnvelopesConcurrently lists and opens 40 tenants through
// a store that holds each envelope read until 8 are in flight: a name
// costs an envelope read, and reading them one after the other would cost
// a thousand tenants a minute of round trips over an object store.
// OpenTenants reads each envelope once.
func TestTenantsReadsEnvelopesConcurrently(t *testing.T) {
	ctx := context.Background()
	g := &envGate{Storage: storage.NewMem(), want: 8}
	r := testutil.InitRepo(t, g, testutil.SmallChunks)
	var want []string
	for i := range 40 {
		name := fmt.Sprintf("customer-%02d", i)
		ten, err := r.Tenant(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		ten.Close()
		want = append(want, name)
	}
	g.mu.Lock()
	g.on = true
	g.mu.Unlock()
	names, err := r.Tenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Fatalf("Tenants = %v, want %v", names, want)
	}
	g.mu.Lock()
	if g.max < g.want {
		t.Errorf("Tenants: at most %d envelope reads in flight at once, want %d", g.max, g.want)
	}
	g.max, g.reads = 0, 0
	g.mu.Unlock()

	ts, err := r.OpenTenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var opened []string
	for _, ten := range ts {
		opened = append(opened, ten.Name())
		// The keys work: the tenant lists its (no) snapshots.
		if snaps, err := ten.Snapshots(ctx); err != nil || len(snaps) != 0 {
			t.Errorf("%s: %d snapshots, %v", ten.Name(), len(snaps), err)
		}
		ten.Close()
	}
	if !slices.Equal(opened, want) {
		t.Fatalf("OpenTenants = %v, want %v", opened, want)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.max < g.want {
		t.Errorf("OpenTenants: at most %d envelope reads in flight at once, want %d", g.max, g.want)
	}
	if g.reads != len(want) {
		t.Errorf("OpenTenants read %d envelopes for %d tenants", g.reads, len(want))
	}
}

// envGate holds each read of a tenant envelope until want of them are in
// flight (or a moment has passed), and records how many were at once.
type envGate struct {
	storage.Storage
	want     int
	mu       sync.Mutex
	on       bool
	inflight int
	max      int
	reads    int
}

func (g *envGate) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	g.mu.Lock()
	if !g.on || !strings.HasPrefix(key, "tenants/") {
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
		reached := g.max >= g.want
		g.mu.Unlock()
		if reached {
			break
		}
	}
	return g.Storage.Get(ctx, key, off, n)
}
