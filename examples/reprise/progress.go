package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// formatBytes formats n with a binary unit: "512 B", "1.5 KiB", "30.0 MiB".
func formatBytes(n int64) string {
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 && v > -1024 || u == "TiB" {
			return fmt.Sprintf("%.1f %s", v, u)
		}
	}
	panic("unreachable")
}

// formatRate formats a rate in bytes per second.
func formatRate(bytesPerSec float64) string {
	return formatBytes(int64(bytesPerSec)) + "/s"
}

// formatDuration formats d for humans: "0.4 s", "12.3 s", "2m05s", "1h02m".
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// ratio formats read/stored as "40.0x", or "-" when nothing was stored.
func ratio(read, stored int64) string {
	if stored <= 0 {
		return "-"
	}
	r := float64(read) / float64(stored)
	if r >= 100 {
		return fmt.Sprintf("%.0fx", r)
	}
	return fmt.Sprintf("%.1fx", r)
}

// plural formats a count of things: "1 file", "2 files".
func plural(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// rate returns n bytes over d, in bytes per second.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// statusLine draws one line of live progress on a terminal, redrawn in
// place. A nil *statusLine draws nothing, so callers need not check
// whether progress is wanted.
type statusLine struct {
	mu      sync.Mutex
	w       io.Writer
	meter   rateMeter
	drawn   bool
	stopped bool
}

func newStatusLine(w io.Writer, enabled bool) *statusLine {
	if !enabled {
		return nil
	}
	return &statusLine{w: w}
}

// update redraws the line with a transfer of done bytes out of total (0
// when unknown) after elapsed, followed by extra.
func (s *statusLine) update(verb string, done, total int64, elapsed time.Duration, extra string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	r := s.meter.update(elapsed, done)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", verb, formatBytes(done))
	if total > 0 {
		pct := min(100*float64(done)/float64(total), 100)
		fmt.Fprintf(&b, " / %s (%.0f%%)", formatBytes(total), pct)
	}
	fmt.Fprintf(&b, ", %s", formatRate(r))
	if total > 0 && r > 0 && done < total {
		eta := time.Duration(float64(total-done) / r * float64(time.Second))
		fmt.Fprintf(&b, ", ETA %s", formatDuration(eta))
	}
	if extra != "" {
		b.WriteString(", ")
		b.WriteString(extra)
	}
	// \r returns to the start of the line, ESC[K clears what is left of
	// a longer previous line.
	fmt.Fprintf(s.w, "\r%s\x1b[K", b.String())
	s.drawn = true
}

// clear erases the line, so that what is printed next starts clean.
func (s *statusLine) clear() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drawn {
		fmt.Fprint(s.w, "\r\x1b[K")
		s.drawn = false
	}
}

// stop erases the line and ignores later updates: the library may still
// report progress after a failed backup or restore has returned.
func (s *statusLine) stop() {
	if s == nil {
		return
	}
	s.clear()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

// rateMeter measures a transfer rate over the last few seconds, so the
// rate and the ETA follow changes without jumping at every sample, and
// forget the slow start (opening the repository, loading indexes).
type rateMeter struct {
	samples []rateSample // oldest first; samples[0] is the reference
}

type rateSample struct {
	t time.Duration
	n int64
}

// rateWindow is how far back the rate looks.
const rateWindow = 3 * time.Second

// update records n bytes done after elapsed and returns the rate.
func (m *rateMeter) update(elapsed time.Duration, n int64) float64 {
	if len(m.samples) == 0 {
		m.samples = append(m.samples, rateSample{}) // the start
	}
	m.samples = append(m.samples, rateSample{elapsed, n})
	// Keep one sample at least rateWindow old as the reference.
	for len(m.samples) > 2 && elapsed-m.samples[1].t >= rateWindow {
		m.samples = m.samples[1:]
	}
	ref := m.samples[0]
	dt := (elapsed - ref.t).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(n-ref.n) / dt
}
