package retry

import (
	"testing"
	"time"

	"github.com/reprise-backup/reprise/storage"
)

func TestBackoff(t *testing.T) {
	r := New(storage.NewMem(), &Options{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}).(*Store)
	for attempt, bound := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		4: 800 * time.Millisecond, 5: time.Second, 60: time.Second,
	} {
		var maxSeen, sum time.Duration
		const n = 2000
		for range n {
			d := r.backoff(attempt)
			if d < 0 || d > bound {
				t.Fatalf("attempt %d: backoff %v outside [0, %v]", attempt, d, bound)
			}
			maxSeen = max(maxSeen, d)
			sum += d
		}
		// Full jitter: uniform over [0, bound], so mean about bound/2.
		if mean := sum / n; mean < bound*4/10 || mean > bound*6/10 || maxSeen < bound*9/10 {
			t.Errorf("attempt %d: mean %v, max %v for bound %v", attempt, mean, maxSeen, bound)
		}
	}
	d := New(storage.NewMem(), nil).(*Store)
	if d.o.MaxAttempts != 5 || d.o.InitialBackoff != 100*time.Millisecond || d.o.MaxBackoff != 10*time.Second {
		t.Fatalf("defaults %+v", d.o)
	}
}
