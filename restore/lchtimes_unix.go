//go:build unix

package restore

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// lchtimes sets a symbolic link's own modification time (best effort).
func lchtimes(path string, t time.Time) {
	ts := unix.NsecToTimespec(t.UnixNano())
	_ = unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// openNoFollow opens name with flag, refusing a symbolic link in its last
// element.
func openNoFollow(name string, flag int) (*os.File, error) {
	return os.OpenFile(name, flag|unix.O_NOFOLLOW, 0o600)
}

// singleLink reports whether fi is of a file with one hard link.
func singleLink(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return !ok || st.Nlink == 1
}
