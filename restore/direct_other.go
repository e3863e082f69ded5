//go:build !linux

package restore

import (
	"errors"
	"os"
)

// openDirect is not supported outside Linux: restores write through the
// cache.
func openDirect(string) (*os.File, error) { return nil, errors.ErrUnsupported }
