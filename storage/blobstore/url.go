package blobstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	gcs "cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // azblob:// in the Go CDK's URL mux
	_ "gocloud.dev/blob/gcsblob"   // gs://
	_ "gocloud.dev/blob/s3blob"    // s3:// (for Open; s3store owns the storage scheme)
	"google.golang.org/api/googleapi"

	"github.com/reprise-backup/reprise/storage"
)

// schemes are the URL schemes the package registers with
// [storage.Register].
var schemes = []string{"azblob", "gs"}

func init() {
	for _, scheme := range schemes {
		storage.Register(scheme, func(ctx context.Context, u *url.URL) (storage.Storage, error) {
			return OpenURL(ctx, u, nil)
		})
	}
}

// Options configures [OpenURL] beyond what the URL says. The zero value
// opens an existing bucket.
type Options struct {
	// CreateBucket creates the bucket (container) when it does not
	// exist. The URL parameter create=true sets it too.
	CreateBucket bool

	// Project is the Google Cloud project a gs bucket is created in.
	// Empty means the URL parameter project=, else the environment
	// (GOOGLE_CLOUD_PROJECT, GCLOUD_PROJECT); with the emulator
	// (STORAGE_EMULATOR_HOST) any name does.
	Project string
}

// Open opens the store at rawURL; see [OpenURL].
func Open(ctx context.Context, rawURL string, opts *Options) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("blobstore: malformed URL: %w", errors.Unwrap(err))
	}
	return OpenURL(ctx, u, opts)
}

// OpenURL opens the store a URL names (see the package documentation,
// section URLs): it opens the bucket with the Go CDK, checks that it exists
// (creating it when asked to), and keeps the store under the URL's path.
// A missing bucket fails with an error naming it that wraps
// [storage.ErrNotExist]. A nil opts is the zero Options.
func OpenURL(ctx context.Context, u *url.URL, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	cdkURL, prefix, err := splitURL(u, &o)
	if err != nil {
		return nil, err
	}
	b, err := blob.OpenBucket(ctx, cdkURL)
	if err != nil {
		return nil, fmt.Errorf("blobstore: opening %s://%s: %w", u.Scheme, u.Host, err)
	}
	name := u.Scheme + "://" + u.Host
	if err := ensureBucket(ctx, b, u.Scheme, u.Host, &o); err != nil {
		b.Close()
		return nil, err
	}
	if prefix != "" {
		b = blob.PrefixedBucket(b, prefix)
		name += "/" + strings.TrimSuffix(prefix, "/")
	}
	return &Store{bucket: b, name: name}, nil
}

// splitURL takes this package's parameters and the prefix out of u,
// leaving the URL the Go CDK opens.
func splitURL(u *url.URL, o *Options) (cdkURL, prefix string, err error) {
	if u.Scheme == "" || u.Host == "" {
		return "", "", fmt.Errorf("blobstore: malformed URL: want SCHEME://BUCKET[/PREFIX]")
	}
	if u.User != nil {
		return "", "", fmt.Errorf("blobstore: %s URLs must not hold credentials; see the package documentation", u.Scheme)
	}
	if prefix, err = cleanPrefix(u.Path); err != nil {
		return "", "", err
	}
	q := u.Query()
	for k, vs := range q {
		if len(vs) != 1 {
			return "", "", fmt.Errorf("blobstore: URL parameter %q given %d times", k, len(vs))
		}
		switch k {
		case "create":
			switch strings.ToLower(vs[0]) {
			case "1", "true", "yes", "on":
				o.CreateBucket = true
			case "0", "false", "no", "off":
				o.CreateBucket = false
			default:
				return "", "", fmt.Errorf("blobstore: URL parameter create=%q: want true or false", vs[0])
			}
		case "project":
			if u.Scheme != "gs" {
				return "", "", fmt.Errorf("blobstore: URL parameter project applies to gs:// URLs only")
			}
			if o.Project == "" {
				o.Project = vs[0]
			}
		case "prefix", "key":
			return "", "", fmt.Errorf("blobstore: URL parameter %q is not supported: put the prefix in the URL path (%s://%s/PREFIX)", k, u.Scheme, u.Host)
		default:
			continue // the Go CDK driver checks the rest
		}
		q.Del(k)
	}
	cdk := url.URL{Scheme: u.Scheme, Host: u.Host, RawQuery: q.Encode()}
	return cdk.String(), prefix, nil
}

// cleanPrefix trims slashes around a store prefix and checks it.
func cleanPrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("blobstore: malformed prefix %q", p)
		}
	}
	return p + "/", nil
}

// ensureBucket checks that the bucket exists, creating it when allowed.
func ensureBucket(ctx context.Context, b *blob.Bucket, scheme, name string, o *Options) error {
	ok, err := b.IsAccessible(ctx)
	if err != nil {
		return mapCtxError(ctx, "open bucket", name, err)
	}
	if ok {
		return nil
	}
	if !o.CreateBucket {
		return fmt.Errorf("blobstore: bucket %s://%s does not exist (create it, or open with create=true / Options.CreateBucket): %w", scheme, name, storage.ErrNotExist)
	}
	if err := createBucket(ctx, b, name, o); err != nil {
		return err
	}
	// A name already taken (by another project or account) answers the
	// creation with a conflict: check that the bucket is now ours to use.
	ok, err = b.IsAccessible(ctx)
	if err != nil {
		return fmt.Errorf("blobstore: bucket %s://%s created: %w", scheme, name, mapCtxError(ctx, "open bucket", name, err))
	}
	if !ok {
		return fmt.Errorf("blobstore: bucket %s://%s still missing after creating it (name taken elsewhere?): %w", scheme, name, storage.ErrNotExist)
	}
	return nil
}

// createBucket creates the bucket through the service's own client, which
// the Go CDK hands out through Bucket.As.
func createBucket(ctx context.Context, b *blob.Bucket, name string, o *Options) error {
	var cc *container.Client
	var gc *gcs.Client
	var sc *s3.Client
	switch {
	case b.As(&cc):
		_, err := cc.Create(ctx, nil)
		if err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
			return mapCtxError(ctx, "create container", name, err)
		}
	case b.As(&gc):
		project := o.Project
		if project == "" {
			project = os.Getenv("GOOGLE_CLOUD_PROJECT")
		}
		if project == "" {
			project = os.Getenv("GCLOUD_PROJECT")
		}
		if project == "" && os.Getenv("STORAGE_EMULATOR_HOST") != "" {
			project = "reprise"
		}
		if project == "" {
			return fmt.Errorf("blobstore: creating bucket gs://%s: no project; set the URL parameter project= or GOOGLE_CLOUD_PROJECT", name)
		}
		err := gc.Bucket(name).Create(ctx, project, nil)
		var ge *googleapi.Error
		if err != nil && !(errors.As(err, &ge) && ge.Code == 409) {
			return mapCtxError(ctx, "create bucket", name, err)
		}
	case b.As(&sc):
		_, err := sc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name})
		var owned *s3types.BucketAlreadyOwnedByYou
		if err != nil && !errors.As(err, &owned) {
			return mapCtxError(ctx, "create bucket", name, err)
		}
	default:
		return fmt.Errorf("blobstore: bucket %q does not exist, and this package cannot create buckets of its kind", name)
	}
	return nil
}
