//go:build !nocloud

package main

// The cloud storage drivers register their URL schemes (s3://, gs://,
// azblob://) with storage.Open when linked in. Build with -tags nocloud
// for a much smaller binary that stores on local disks only (the tests
// do, to keep linking fast).
import (
	_ "github.com/reprise-backup/reprise/storage/blobstore"
	_ "github.com/reprise-backup/reprise/storage/s3store"
)
