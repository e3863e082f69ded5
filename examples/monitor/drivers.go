//go:build !nocloud

package main

// Storage drivers (s3://, gs://, azblob://) and KMS drivers (awskms://,
// gcpkms://, azurekeyvault://), as in the reprise command; -tags nocloud
// leaves them out (local directories and base64key:// keys only).
import (
	_ "gocloud.dev/secrets/awskms"
	_ "gocloud.dev/secrets/azurekeyvault"
	_ "gocloud.dev/secrets/gcpkms"

	_ "github.com/reprise-backup/reprise/storage/blobstore"
	_ "github.com/reprise-backup/reprise/storage/s3store"
)
