//go:build linux

package restore

import (
	"os"
	"syscall"
)

// openDirect opens name for writing with O_DIRECT; filesystems without it
// (tmpfs) refuse.
func openDirect(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_WRONLY|syscall.O_DIRECT, 0)
}
