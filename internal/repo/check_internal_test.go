package repo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestInOrder runs 40 checks that finish in random order within a budget
// of 4 slots and 10 bytes: never more than that is taken at once (a check
// larger than the whole budget runs alone), and the problems come out in
// the order of the checks.
func TestInOrder(t *testing.T) {
	for _, c := range []struct {
		name string
		size func(i int) int64
	}{
		{"slots", func(int) int64 { return 1 }},
		{"bytes", func(i int) int64 { return int64(1 + i%5) }},
		{"larger than the budget", func(i int) int64 { return int64(1 + i%3*20) }},
	} {
		b := newBudget(4, 10)
		var mu sync.Mutex
		running, most, held, mostHeld := 0, 0, int64(0), int64(0)
		subs, err := inOrder(context.Background(), b, 40, c.size, func(ctx context.Context, i int, sub *CheckReport) error {
			n := min(c.size(i), 10)
			mu.Lock()
			running++
			held += n
			most, mostHeld = max(most, running), max(mostHeld, held)
			mu.Unlock()
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
			sub.Problems = append(sub.Problems, Problem{Object: fmt.Sprint(i)}, Problem{Object: fmt.Sprint(i, "b")})
			sub.BytesRead = int64(i)
			mu.Lock()
			running--
			held -= n
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rep := &CheckReport{}
		rep.addRead(subs)
		if most > 4 || mostHeld > 10 {
			t.Errorf("%s: %d checks of %d bytes at once, want at most 4 and 10", c.name, most, mostHeld)
		}
		if c.name == "slots" && most != 4 {
			t.Errorf("%s: at most %d checks at once, want 4", c.name, most)
		}
		if len(rep.Problems) != 80 || rep.BytesRead != 40*39/2 {
			t.Fatalf("%s: %d problems, %d bytes read", c.name, len(rep.Problems), rep.BytesRead)
		}
		for i := range 40 {
			if a, b := rep.Problems[2*i].Object, rep.Problems[2*i+1].Object; a != fmt.Sprint(i) || b != fmt.Sprint(i, "b") {
				t.Fatalf("%s: problems %d and %d are %q, %q", c.name, 2*i, 2*i+1, a, b)
			}
		}
		if len(b.slots) != 0 || !b.bytes.TryAcquire(10) {
			t.Errorf("%s: %d slots still taken, or bytes", c.name, len(b.slots))
		}
	}
}

// TestInOrderStops: the first error stops the checks not yet started and
// is returned; the whole budget is given back, so that other tenants
// sharing it go on.
func TestInOrderStops(t *testing.T) {
	b := newBudget(2, 10)
	one := func(int) int64 { return 1 }
	boom := errors.New("boom")
	var mu sync.Mutex
	started := 0
	_, err := inOrder(context.Background(), b, 1000, one, func(ctx context.Context, i int, sub *CheckReport) error {
		mu.Lock()
		started++
		mu.Unlock()
		switch {
		case i < 5:
			return nil
		case i == 5:
			return boom
		}
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if started > 10 {
		t.Errorf("%d checks started after the error", started)
	}
	if len(b.slots) != 0 || !b.bytes.TryAcquire(10) {
		t.Errorf("%d slots still taken, or bytes", len(b.slots))
	}
	b.bytes.Release(10)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := inOrder(ctx, b, 10, one, func(ctx context.Context, i int, sub *CheckReport) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}
