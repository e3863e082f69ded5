//go:build unix

package restore

import (
	"time"

	"golang.org/x/sys/unix"
)

// lchtimes sets a symbolic link's own modification time (best effort).
func lchtimes(path string, t time.Time) {
	ts := unix.NsecToTimespec(t.UnixNano())
	_ = unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}
