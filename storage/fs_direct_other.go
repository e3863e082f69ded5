//go:build !linux

package storage

import (
	"errors"
	"os"
)

// setDirect is not supported outside Linux: writes go through the cache.
func setDirect(*os.File, bool) error { return errors.ErrUnsupported }
