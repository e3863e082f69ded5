//go:build !unix

package restore

import (
	"fmt"
	"io/fs"
	"os"
	"time"
)

// lchtimes is a no-op where links' own times cannot be set.
func lchtimes(string, time.Time) {}

// openNoFollow opens name with flag, refusing a symbolic link in its last
// element (checked before opening, where the platform has no O_NOFOLLOW).
func openNoFollow(name string, flag int) (*os.File, error) {
	if fi, err := os.Lstat(name); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s: %w: a symbolic link", name, fs.ErrExist)
	}
	return os.OpenFile(name, flag, 0o600)
}

// singleLink reports whether fi is of a file with one hard link. Here the
// platform does not say, so partial copies are never written into: a
// resumed restore fetches large files whole again.
func singleLink(os.FileInfo) bool { return false }
