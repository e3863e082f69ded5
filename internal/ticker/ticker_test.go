package ticker

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestTicker(t *testing.T) {
	var ticks, finals atomic.Int32
	tk := Start(time.Millisecond, func() { ticks.Add(1) }, func() { finals.Add(1) })
	for ticks.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	tk.Stop()
	n := ticks.Load()
	tk.Stop()
	time.Sleep(5 * time.Millisecond)
	if ticks.Load() != n || finals.Load() != 1 {
		t.Fatalf("after Stop: %d ticks (was %d), %d finals", ticks.Load(), n, finals.Load())
	}
	Start(time.Millisecond, nil, nil).Stop() // no callback: nothing runs
}
