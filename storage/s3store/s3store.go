// Package s3store is a Reprise storage driver for Amazon S3 and S3-compatible
// servers (MinIO, Ceph RGW, versitygw, Cloudflare R2, Backblaze B2, ...),
// written directly on aws-sdk-go-v2.
//
// Importing the package registers the "s3" scheme with [storage.Register],
// so [storage.Open] accepts s3:// URLs:
//
//	import _ "github.com/reprise-backup/reprise/storage/s3store"
//
// Programs that want to configure the driver in code call [Open].
//
// # URLs
//
//	s3://BUCKET[/PREFIX][?PARAMETERS]
//
// BUCKET is the bucket name; PREFIX, optional, is a slash-separated path
// under which every object of the store is kept (a "folder" in the bucket).
// The query parameters are:
//
//   - region: the bucket's region (default: AWS_REGION / the shared config,
//     else us-east-1).
//   - endpoint: the base URL of an S3-compatible server, with its scheme, e.g.
//     http://127.0.0.1:9000 (default: AWS's own endpoint for the region).
//   - path_style: true to address buckets as ENDPOINT/BUCKET rather than
//     BUCKET.ENDPOINT; most self-hosted servers need it. Accepts
//     true/false/1/0.
//   - part_size: size of a multipart part and the threshold above which a
//     put is uploaded in parts; bytes, or with a KiB/MiB/GiB (or K/M/G)
//     suffix. Default 16MiB, at least 5MiB (the S3 minimum part size).
//   - concurrency: parts of one object uploaded in parallel (default 4).
//   - create: true to create the bucket when it does not exist (needs the
//     s3:CreateBucket permission); with object_lock, the bucket is created
//     with Object Lock enabled.
//   - object_lock: GOVERNANCE or COMPLIANCE (case-insensitive): the
//     objects Reprise marks for retention are written under S3 Object Lock
//     in that mode (see Object Lock below). Requires retention.
//   - retention: how long they are locked, from their write: a Go duration
//     (720h) or a number of days (30d).
//
// Any other parameter, or a parameter given twice, is rejected with an
// error naming it, so that a typo does not silently fall back to a default.
// For example:
//
//	s3://backups/host1?region=eu-west-3
//	s3://reprise/test?endpoint=http://127.0.0.1:9000&path_style=true&create=true
//	s3://vault/acme?region=eu-west-3&object_lock=COMPLIANCE&retention=30d
//
// # Credentials
//
// Credentials are never part of the URL. They come from the usual AWS
// chain, as resolved by config.LoadDefaultConfig: the environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), the shared
// files ~/.aws/credentials and ~/.aws/config (AWS_PROFILE), web identity
// tokens, SSO, and the ECS/EC2 instance roles. [Options.Credentials]
// overrides the chain when the driver is opened in code.
//
// # Behaviour
//
// Puts of up to [Options.PartSize] bytes are a single PutObject whose body is
// an io.SectionReader over the caller's io.ReaderAt: nothing is copied into
// memory, and the SDK can rewind the body to retry. Larger puts are multipart
// uploads driven by this package: parts are io.SectionReaders read with
// ReadAt, [Options.Concurrency] of them in flight, and the upload is aborted
// when any part, the completion, or the caller's context fails, so no
// half-written object becomes visible.
//
// Create-only puts ([storage.PutOptions.IfNotExist]) send "If-None-Match: *"
// on the PutObject or on the CompleteMultipartUpload, and map the server's
// 412 Precondition Failed to [storage.ErrExist]. From 1 MiB on, a HeadObject
// first fails the put early when the key is taken, without sending the data
// (servers answer a large conditional PutObject with 412 before reading its
// body and drop the connection, which the client often sees as a reset and
// retries after a backoff); the condition on the write stays the authority
// against a concurrent creator.
//
// Each create-only put carries a random token in the object's metadata
// (x-amz-meta-reprise-put), so that a put whose outcome is unknown — its
// answer lost to a connection reset or a 5xx, or a 412 met by an SDK retry of
// an attempt that had in fact succeeded — is settled with a HeadObject: an
// object carrying our token is our write (success); any other object means
// another writer won ([storage.ErrExist]); no object means nothing was
// written ([storage.ErrTransient], safe to retry). A server that dropped user
// metadata would turn our own lost-answer write into ErrExist, never another
// writer's object into a success.
//
// # Object Lock and versioned buckets
//
// With [Options.ObjectLock] (object_lock=) and [Options.Retention], every put
// made with [storage.PutOptions.Retain] — Reprise sets it on packs, indexes,
// snapshots and run records — carries x-amz-object-lock-mode and
// x-amz-object-lock-retain-until-date (now + retention), and a CRC32
// checksum, which S3 requires of such puts (the SDK computes it; multipart
// uploads declare it at creation and send it with every part). The other
// objects (config, key slots, tenant key envelopes, leases, tombstones) are
// not locked, so that erasing a tenant by destroying its keys stays
// possible. The bucket must have Object Lock enabled (create=true creates
// it so) and no default retention rule, which would lock the keys too:
// Open checks both when the credentials may read the configuration
// (s3:GetBucketObjectLockConfiguration).
//
// Object Lock implies versioning, and on a versioned bucket a plain
// DeleteObject only adds a delete marker: the bytes stay, readable as an
// older version. Delete therefore removes every version and delete marker
// of the key, oldest first (it learns at its first call, from
// GetBucketVersioning, whether the bucket has ever been versioned; on an
// unversioned bucket it is one HeadObject and one DeleteObject as before).
// A version under retention or legal hold stops it with a
// [*storage.RetainedError] (errors.Is [storage.ErrRetained] and
// [storage.ErrPermission]) telling when the retention ends, and the object
// stays whole and readable. Deleting versions needs s3:GetBucketVersioning,
// s3:ListBucketVersions and s3:DeleteObjectVersion (without the first two,
// Delete falls back to the unversioned way); reading a retention,
// s3:GetObjectRetention.
//
// Errors wrap the storage sentinels: 404/NoSuchKey is [storage.ErrNotExist],
// 403 is [storage.ErrPermission], 416 is [storage.ErrInvalidRange],
// throttling, 5xx answers, timeouts and connection failures are
// [storage.ErrTransient] (after the SDK's own retries, 3 attempts by
// default, AWS_MAX_ATTEMPTS, are exhausted). A bucket deleted under an open
// store gives errors that say so, wrapping no sentinel.
package s3store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/reprise-backup/reprise/storage"
)

// Defaults and limits of [Options].
const (
	// DefaultPartSize is the multipart threshold and part size used when
	// Options.PartSize is zero.
	DefaultPartSize = 16 << 20
	// MinPartSize is the smallest part S3 accepts (except for the last
	// part of an upload).
	MinPartSize = 5 << 20
	// MaxPartSize is the largest part S3 accepts.
	MaxPartSize = 5 << 30
	// MaxParts is the largest number of parts of a multipart upload; a
	// put that would need more parts uses larger parts.
	MaxParts = 10000
	// DefaultConcurrency is the number of parts uploaded in parallel when
	// Options.Concurrency is zero.
	DefaultConcurrency = 4
	// DefaultRegion is the region used when neither Options.Region nor
	// the AWS configuration names one.
	DefaultRegion = "us-east-1"
)

// preflightSize is the size from which a create-only put first checks
// with HeadObject that the key is free.
var preflightSize int64 = 1 << 20 // a variable for the tests

// metaToken is the user-metadata key (x-amz-meta-reprise-put) holding the
// random token of a create-only put.
const metaToken = "reprise-put"

// contentType is sent with every put: objects are opaque sealed bytes.
const contentType = "application/octet-stream"

// Options configures [Open]. The zero value opens an existing bucket on AWS
// with credentials and region from the environment.
type Options struct {
	// Region is the bucket's region. Empty means the region of the AWS
	// configuration (AWS_REGION, the shared config file), else
	// DefaultRegion.
	Region string

	// Endpoint is the base URL of an S3-compatible server, scheme
	// included ("http://127.0.0.1:9000"). Empty means AWS.
	Endpoint string

	// PathStyle addresses buckets as ENDPOINT/BUCKET instead of
	// BUCKET.ENDPOINT (virtual-hosted style). Most self-hosted servers
	// need it.
	PathStyle bool

	// PartSize is both the multipart threshold (puts larger than it are
	// uploaded in parts) and the part size. Zero means DefaultPartSize;
	// otherwise it must lie in [MinPartSize, MaxPartSize].
	PartSize int64

	// Concurrency is the number of parts of one put in flight at once.
	// Zero means DefaultConcurrency.
	Concurrency int

	// CreateBucket creates the bucket when it does not exist. Without it
	// a missing bucket makes Open fail with an error naming the bucket.
	CreateBucket bool

	// Credentials, when non-nil, replaces the default AWS credential
	// chain.
	Credentials aws.CredentialsProvider

	// ObjectLock, when set, writes the objects put with
	// storage.PutOptions.Retain under S3 Object Lock in this mode, locked
	// for Retention from their write (see the package documentation,
	// Object Lock). The bucket must have Object Lock enabled; with
	// CreateBucket a new bucket is created so.
	ObjectLock LockMode

	// Retention is how long objects are locked: required with
	// ObjectLock, at most MaxRetention.
	Retention time.Duration
}

// Store is a [storage.Storage] kept in an S3 bucket, under an optional key
// prefix. It is safe for concurrent use.
type Store struct {
	client      *s3.Client
	transport   *http.Transport // nil when not ours
	bucket      string
	prefix      string // "" or ends with "/"
	partSize    int64
	concurrency int
	lockMode    LockMode
	retention   time.Duration
	versioning  atomic.Int32 // verUnchecked, verOff, verOn or verUnknown
	closed      atomic.Bool
}

var _ storage.Storage = (*Store)(nil)

// Open opens the store kept in bucket under prefix (which may be empty).
// It checks that the bucket exists and is reachable with the credentials,
// creating it when opts.CreateBucket is set. A nil opts is the zero Options.
//
// A missing bucket fails with an error naming it that wraps
// [storage.ErrNotExist]; refused credentials wrap [storage.ErrPermission].
func Open(ctx context.Context, bucket, prefix string, opts *Options) (*Store, error) {
	if opts == nil {
		opts = &Options{}
	}
	if err := validBucket(bucket); err != nil {
		return nil, err
	}
	prefix, err := cleanPrefix(prefix)
	if err != nil {
		return nil, err
	}
	partSize := opts.PartSize
	switch {
	case partSize == 0:
		partSize = DefaultPartSize
	case partSize < MinPartSize || partSize > MaxPartSize:
		return nil, fmt.Errorf("s3store: part size %d out of range [%d, %d]", partSize, int64(MinPartSize), int64(MaxPartSize))
	}
	conc := opts.Concurrency
	switch {
	case conc == 0:
		conc = DefaultConcurrency
	case conc < 0:
		return nil, fmt.Errorf("s3store: negative concurrency %d", conc)
	}
	if opts.Endpoint != "" {
		if err := validEndpoint(opts.Endpoint); err != nil {
			return nil, err
		}
	}
	if err := checkLockOptions(opts.ObjectLock, opts.Retention); err != nil {
		return nil, err
	}

	var loadOpts []func(*config.LoadOptions) error
	if opts.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(opts.Region))
	}
	if opts.Credentials != nil {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(opts.Credentials))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3store: loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	// Own the transport, so that Close can release its connections. It
	// is a copy of the one the configuration built (proxy settings, a
	// custom CA bundle from AWS_CA_BUNDLE, timeouts of the dialer).
	var transport *http.Transport
	if bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
		transport = bc.GetTransport()
		cfg.HTTPClient = &http.Client{
			Transport: transport,
			// Like the SDK's client: hand 3xx answers to the SDK
			// (a bucket in another region answers 301).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
		// Whole reads of single-part objects are still checked; only
		// the log line on every other read goes.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	s := &Store{
		client:      client,
		transport:   transport,
		bucket:      bucket,
		prefix:      prefix,
		partSize:    partSize,
		concurrency: conc,
		lockMode:    opts.ObjectLock,
		retention:   opts.Retention,
	}
	if err := s.checkBucket(ctx, cfg.Region, opts.CreateBucket); err != nil {
		return nil, err
	}
	if s.lockMode != "" {
		if err := s.checkObjectLock(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// checkBucket makes sure the bucket exists, creating it when allowed.
func (s *Store) checkBucket(ctx context.Context, region string, create bool) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("s3store: checking bucket %q: %w", s.bucket, ctx.Err())
	}
	switch httpStatus(err) {
	case 301:
		return fmt.Errorf("s3store: bucket %q is not in region %q; set the region (URL parameter region=): %w", s.bucket, region, err)
	case 404:
	default:
		return mapError("checking bucket", s.bucket, err)
	}
	if !create {
		return fmt.Errorf("s3store: bucket %q does not exist (create it, or open with create=true / Options.CreateBucket): %w", s.bucket, storage.ErrNotExist)
	}
	in := &s3.CreateBucketInput{Bucket: &s.bucket}
	if s.lockMode != "" {
		in.ObjectLockEnabledForBucket = aws.Bool(true) // implies versioning
	}
	if region != "" && region != DefaultRegion {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(region),
		}
	}
	_, err = s.client.CreateBucket(ctx, in)
	if err != nil {
		var owned *types.BucketAlreadyOwnedByYou
		if errors.As(err, &owned) {
			return nil // created concurrently by ourselves
		}
		var taken *types.BucketAlreadyExists
		if errors.As(err, &taken) {
			return fmt.Errorf("s3store: creating bucket %q: the name is taken by another account: %w", s.bucket, storage.ErrPermission)
		}
		return mapError("creating bucket", s.bucket, err)
	}
	return nil
}

// Client returns the S3 client the store uses, for operations beyond the
// storage interface (bucket policies, lifecycle rules, tests).
func (s *Store) Client() *s3.Client { return s.client }

// Bucket returns the bucket name.
func (s *Store) Bucket() string { return s.bucket }

// Prefix returns the key prefix of the store within the bucket: empty, or
// a path ending with a slash.
func (s *Store) Prefix() string { return s.prefix }

// String returns the store's location as an s3:// URL without parameters.
func (s *Store) String() string {
	if s.prefix == "" {
		return "s3://" + s.bucket
	}
	return "s3://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/")
}

func (s *Store) check(ctx context.Context, op, key string) error {
	if s.closed.Load() {
		return fmt.Errorf("s3store: %s %q: store is closed", op, key)
	}
	if !storage.ValidKey(key) {
		return fmt.Errorf("s3store: %s %q: %w", op, key, storage.ErrInvalidKey)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3store: %s %q: %w", op, key, err)
	}
	return nil
}

// Put implements [storage.Storage.Put]. See the package documentation for
// how single and multipart puts and create-only puts work.
func (s *Store) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *storage.PutOptions) error {
	if err := s.check(ctx, "put", key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("s3store: put %q: negative size %d", key, size)
	}
	ifNotExist := opts != nil && opts.IfNotExist
	var token string
	if ifNotExist {
		token = newToken()
	}
	if ifNotExist && size >= preflightSize {
		// Fail early, without sending the data, when the key is taken:
		// servers answer 412 to a large conditional PutObject before
		// reading its body and drop the connection, and the client
		// then often sees a reset instead of the 412 and retries with
		// a backoff (about one put in eight on MinIO, 1-3 s each).
		// The condition on the write remains the authority.
		if err := s.checkFree(ctx, key); err != nil {
			return err
		}
	}
	lockMode, lockUntil := s.lockFor(opts)
	if size > s.partSize {
		return s.putMultipart(ctx, key, r, size, token, lockMode, lockUntil)
	}
	body := &trackedBody{SectionReader: io.NewSectionReader(r, 0, size)}
	in := &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           aws.String(s.prefix + key),
		Body:          body,
		ContentLength: aws.Int64(size),
		ContentType:   aws.String(contentType),
	}
	if ifNotExist {
		in.IfNoneMatch = aws.String("*")
		in.Metadata = map[string]string{metaToken: token}
	}
	if lockUntil != nil {
		// S3 requires a checksum of locked puts: ask for one explicitly,
		// whatever AWS_REQUEST_CHECKSUM_CALCULATION says.
		in.ObjectLockMode, in.ObjectLockRetainUntilDate = lockMode, lockUntil
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32
	}
	_, err := s.client.PutObject(ctx, in)
	if err == nil {
		return nil
	}
	if rerr := body.readErr(); rerr != nil {
		// The caller's data failed: the request was cut short, so
		// nothing was written.
		return fmt.Errorf("s3store: put %q: reading the data: %w", key, rerr)
	}
	if ifNotExist {
		return s.resolveConditional(ctx, "put", key, token, err)
	}
	return mapCtxError(ctx, "put", key, err)
}

// unknownOutcomes counts the create-only puts whose outcome had to be
// settled with a HeadObject after a transport or server error (tests log
// it).
var unknownOutcomes atomic.Int64

// checkFree fails with ErrExist when an object exists under key.
func (s *Store) checkFree(ctx context.Context, key string) error {
	_, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)})
	switch {
	case err == nil:
		return fmt.Errorf("s3store: put %q: %w", key, storage.ErrExist)
	case isNotFound(err):
		return nil
	default:
		return mapCtxError(ctx, "put", key, err)
	}
}

// resolveConditional decides the outcome of a create-only put that failed
// with err. A definite 412 means the key is taken, unless the object there
// is our own (an SDK retry after an attempt that succeeded but lost its
// answer). A transport error or 5xx leaves the outcome unknown: HeadObject
// tells, through the token, whether the object there is ours.
func (s *Store) resolveConditional(ctx context.Context, op, key, token string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("s3store: %s %q: %w", op, key, ctx.Err())
	}
	precondition := isPreconditionFailed(err)
	if !precondition && !outcomeUnknown(err) {
		return mapError(op, key, err)
	}
	if !precondition {
		unknownOutcomes.Add(1)
	}
	head, herr := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)})
	switch {
	case herr == nil && metadataValue(head.Metadata, metaToken) == token:
		return nil // our write landed
	case herr == nil || precondition:
		// Another writer's object (or, after a 412, one we could not
		// inspect): the key is taken.
		return fmt.Errorf("s3store: %s %q: %w", op, key, storage.ErrExist)
	case isNotFound(herr):
		return fmt.Errorf("s3store: %s %q: nothing written after %v: %w", op, key, err, storage.ErrTransient)
	default:
		return fmt.Errorf("s3store: %s %q: outcome unknown (%v; checking: %v): %w", op, key, err, herr, storage.ErrTransient)
	}
}

// Get implements [storage.Storage.Get] with a ranged GetObject. The body
// is streamed; transport failures while reading it wrap
// [storage.ErrTransient].
func (s *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := s.check(ctx, "get", key); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("s3store: get %q: negative offset %d: %w", key, off, storage.ErrInvalidRange)
	}
	if n == 0 {
		// No bytes wanted: only the checks of an empty read.
		return s.emptyRead(ctx, key, off, nil)
	}
	if n > math.MaxInt64-off {
		n = -1 // to the end; also keeps off+n from overflowing
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)}
	ranged := off > 0 || n > 0
	if ranged {
		if n < 0 {
			in.Range = aws.String(fmt.Sprintf("bytes=%d-", off))
		} else {
			in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1))
		}
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if httpStatus(err) == 416 || apiCode(err) == "InvalidRange" {
			// S3 refuses any range starting at the size, including
			// every range of an empty object: tell these from a
			// read past the end.
			return s.emptyRead(ctx, key, off, err)
		}
		return nil, mapCtxError(ctx, "get", key, err)
	}
	var body io.ReadCloser = out.Body
	if ranged && out.ContentRange == nil {
		// A server that ignored the Range header sent the whole object.
		body = skipLimit(out.Body, off, n)
	}
	return &reader{rc: body, key: key}, nil
}

// emptyRead serves a read that yields no bytes: it returns an empty reader
// when off is the object's size (or, for a zero-length read, when off is
// within the object), ErrInvalidRange when off lies beyond. getErr is the
// error of the ranged read that led here, if any; it is returned when the
// object turns out to hold bytes at off.
func (s *Store) emptyRead(ctx context.Context, key string, off int64, getErr error) (io.ReadCloser, error) {
	info, err := s.Stat(ctx, key)
	switch {
	case err != nil:
		return nil, err
	case off > info.Size:
		return nil, fmt.Errorf("s3store: get %q: offset %d beyond size %d: %w", key, off, info.Size, storage.ErrInvalidRange)
	case off < info.Size && getErr != nil:
		return nil, mapCtxError(ctx, "get", key, getErr)
	}
	return io.NopCloser(strings.NewReader("")), nil
}

// Stat implements [storage.Storage.Stat] with HeadObject.
func (s *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	if err := s.check(ctx, "stat", key); err != nil {
		return storage.Info{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)})
	if err != nil {
		return storage.Info{}, mapCtxError(ctx, "stat", key, err)
	}
	return storage.Info{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

// List implements [storage.Storage.List] with paginated ListObjectsV2. S3
// lists keys in binary (lexical) order. Objects under the prefix whose
// names are not valid storage keys (such as "folder/" markers made by
// other tools) are skipped.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	if s.closed.Load() {
		return fmt.Errorf("s3store: list %q: store is closed", prefix)
	}
	if !validListPrefix(prefix) {
		return fmt.Errorf("s3store: list %q: %w", prefix, storage.ErrInvalidKey)
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: &s.bucket,
		Prefix: aws.String(s.prefix + prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return mapCtxError(ctx, "list", prefix, err)
		}
		for _, obj := range page.Contents {
			key, ok := strings.CutPrefix(aws.ToString(obj.Key), s.prefix)
			if !ok || !storage.ValidKey(key) {
				continue
			}
			info := storage.Info{Key: key, Size: aws.ToInt64(obj.Size), ModTime: aws.ToTime(obj.LastModified)}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements [storage.Storage.Delete]. S3's DeleteObject succeeds
// on a missing key, so a HeadObject first reports ErrNotExist. On a
// versioned bucket every version of the key is deleted (see the package
// documentation, Object Lock); a version under retention makes it fail
// with a *storage.RetainedError.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.check(ctx, "delete", key); err != nil {
		return err
	}
	versioned, err := s.versioned(ctx, key)
	if err != nil {
		return err
	}
	if versioned {
		if handled, err := s.deleteVersions(ctx, key); handled {
			return err
		}
	}
	k := aws.String(s.prefix + key)
	if _, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: k}); err != nil {
		return mapCtxError(ctx, "delete", key, err)
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: k}); err != nil {
		return mapCtxError(ctx, "delete", key, err)
	}
	return nil
}

// Close implements [storage.Storage.Close]: it closes the idle
// connections of the store's HTTP client. Operations after Close fail;
// readers returned by Get before stay usable until closed.
func (s *Store) Close() error {
	if !s.closed.Swap(true) && s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	return nil
}

// reader wraps a GetObject body so that transport failures while reading
// wrap ErrTransient.
type reader struct {
	rc  io.ReadCloser
	key string
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("s3store: get %q: reading: %w", r.key, transientIf(err))
	}
	return n, err
}

func (r *reader) Close() error { return r.rc.Close() }

// skipLimit discards off bytes of rc and limits the rest to n (n < 0: no
// limit).
func skipLimit(rc io.ReadCloser, off, n int64) io.ReadCloser {
	var r io.Reader = &skipReader{r: rc, skip: off}
	if n >= 0 {
		r = io.LimitReader(r, n)
	}
	return struct {
		io.Reader
		io.Closer
	}{r, rc}
}

type skipReader struct {
	r    io.Reader
	skip int64
}

func (s *skipReader) Read(p []byte) (int, error) {
	if s.skip > 0 {
		if _, err := io.CopyN(io.Discard, s.r, s.skip); err != nil {
			return 0, err
		}
		s.skip = 0
	}
	return s.r.Read(p)
}

// newToken returns a random token identifying one create-only put.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

// metadataValue looks a user-metadata key up case-insensitively (servers
// and SDK versions differ in the case they return).
func metadataValue(md map[string]string, key string) string {
	if v, ok := md[key]; ok {
		return v
	}
	for k, v := range md {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// cleanPrefix trims slashes around a store prefix and checks it.
func cleanPrefix(prefix string) (string, error) {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return "", nil
	}
	for seg := range strings.SplitSeq(prefix, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("s3store: malformed prefix %q", prefix)
		}
	}
	return prefix + "/", nil
}

// validListPrefix accepts the empty prefix and any prefix of a valid key.
func validListPrefix(prefix string) bool {
	return prefix == "" || storage.ValidKey(prefix+"x")
}

// validBucket checks the S3 bucket naming rules that matter for URLs:
// 3 to 63 characters of [a-z0-9.-] (a few servers allow more).
func validBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("s3store: bucket name %q must have 3 to 63 characters", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c >= 'A' && c <= 'Z') {
			return fmt.Errorf("s3store: bucket name %q has a character other than letters, digits, '.', '-' and '_'", b)
		}
	}
	return nil
}

func validEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("s3store: endpoint %q: want a base URL such as http://127.0.0.1:9000", ep)
	}
	if u.User != nil {
		return errors.New("s3store: endpoint must not hold credentials; use the AWS credential chain")
	}
	return nil
}
