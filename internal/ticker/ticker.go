// Package ticker runs a progress callback periodically on its own
// goroutine, for the backup and restore packages.
package ticker

import (
	"sync"
	"time"
)

// DefaultInterval is used when the interval given is not positive.
const DefaultInterval = 250 * time.Millisecond

// Ticker calls a function every interval until Stop.
type Ticker struct {
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	last func()
}

// Start calls tick every interval (DefaultInterval if not positive) and
// final once from Stop. A nil tick returns a Ticker whose Stop does
// nothing.
func Start(interval time.Duration, tick, final func()) *Ticker {
	t := &Ticker{done: make(chan struct{}), last: final}
	if tick == nil {
		t.once.Do(func() {})
		return t
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-tk.C:
				tick()
			case <-t.done:
				return
			}
		}
	}()
	return t
}

// Stop ends the ticks, waits for a running one, then calls final. Later
// calls do nothing.
func (t *Ticker) Stop() {
	t.once.Do(func() {
		close(t.done)
		t.wg.Wait()
		if t.last != nil {
			t.last()
		}
	})
}
