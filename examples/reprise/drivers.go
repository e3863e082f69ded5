//go:build !nocloud

package main

// The cloud storage drivers register their URL schemes (s3://, gs://,
// azblob://) with storage.Open when linked in, and the KMS drivers theirs
// (awskms://, gcpkms://, azurekeyvault://) with secrets.OpenKeeper for
// REPRISE_KEY_URL. Build with -tags nocloud for a much smaller binary that
// stores on local disks and takes base64key:// keys only (the tests do, to
// keep linking fast). hashivault:// is not here: gocloud.dev/secrets/hashivault
// is a Go module of its own, not a dependency of this one.
import (
	_ "gocloud.dev/secrets/awskms"
	_ "gocloud.dev/secrets/azurekeyvault"
	_ "gocloud.dev/secrets/gcpkms"

	_ "github.com/reprise-backup/reprise/storage/blobstore"
	_ "github.com/reprise-backup/reprise/storage/s3store"
)
