// Package blobstore is a Reprise storage driver over the Go CDK's portable
// blob API (gocloud.dev/blob): Google Cloud Storage, Azure Blob Storage, and
// any other bucket the Go CDK can open (S3 through s3blob, fileblob,
// memblob, ...).
//
// Importing the package registers the "gs" and "azblob" schemes with
// [storage.Register], so [storage.Open] accepts gs:// and azblob:// URLs:
//
//	import _ "github.com/reprise-backup/reprise/storage/blobstore"
//
// S3 is served natively by package s3store, which owns the "s3" scheme;
// [Open] still accepts s3:// URLs (and every scheme linked into the Go CDK's
// default URL mux) for programs that want the Go CDK's S3 driver. A bucket
// opened in code, with any Go CDK driver, becomes a store with [OpenBucket].
//
// # URLs
//
//	gs://BUCKET[/PREFIX][?PARAMETERS]
//	azblob://CONTAINER[/PREFIX][?PARAMETERS]
//
// BUCKET or CONTAINER names the bucket; PREFIX, optional, is a
// slash-separated path under which every object of the store is kept. The
// parameters of this package are:
//
//   - create: true to create the bucket (container) when it does not
//     exist, if the credentials allow it.
//   - project: the Google Cloud project owning a gs bucket to create
//     (default: GOOGLE_CLOUD_PROJECT; any name with the emulator).
//
// Every other parameter goes to the Go CDK driver, which rejects the ones it
// does not know:
//
//   - gs: access_id, private_key_path, anonymous, universe_domain.
//   - azblob: storage_account, domain, protocol (http or https), cdn,
//     localemu (true for Azurite).
//
// The Go CDK's own "prefix" and "key" parameters are refused: the prefix is
// the URL path. For example:
//
//	gs://acme-backups/host1
//	azblob://backups/host1?create=true
//	azblob://backups?storage_account=devstoreaccount1&domain=127.0.0.1:10000&protocol=http&localemu=true
//
// # Credentials
//
// Credentials are never part of the URL; the Go CDK drivers read them from
// the environment.
//
// gs: Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, the
// gcloud user credentials, the metadata server on Google Cloud). With
// STORAGE_EMULATOR_HOST=host:port (no scheme) the driver talks, without
// credentials, to an emulator such as fake-gcs-server.
//
// azblob: AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY (shared key),
// AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_CONNECTION_STRING, else the Azure
// default credential chain (AZURE_CLIENT_ID..., managed identity, az CLI).
// AZURE_STORAGE_DOMAIN, AZURE_STORAGE_PROTOCOL and
// AZURE_STORAGE_IS_LOCAL_EMULATOR point it at Azurite.
//
// # Behaviour
//
// Puts stream the caller's io.ReaderAt through Bucket.Upload (which, unlike
// the Writer path of gocloud.dev v0.47's azureblob driver, does not panic
// when the upload fails). A put whose data fails to read, or is shorter than
// announced, cancels the write's context before the Go CDK closes the
// writer, so that no driver commits the partial object (several would:
// gcsblob and memblob commit on Close whatever they were given).
//
// Create-only puts use WriterOptions.IfNotExist (If-None-Match: * on Azure,
// ifGenerationMatch=0 on GCS) and map the precondition failure to
// [storage.ErrExist]; from 1 MiB on, an existence check first fails the put
// early, without sending the data, when the key is taken. Like package
// s3store, each create-only put stores a random token in the object's
// metadata, so that a put whose outcome is unknown (lost answer, or a
// precondition failure met by a client retry of an attempt that in fact
// succeeded) is settled by reading the object's attributes.
//
// Errors wrap the storage sentinels, from the Go CDK's error codes and the
// HTTP status of the underlying error: not found is [storage.ErrNotExist],
// 401/403 and PermissionDenied are [storage.ErrPermission], 429, 5xx,
// ResourceExhausted, timeouts and connection failures are
// [storage.ErrTransient].
package blobstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/reprise-backup/reprise/storage"
)

// metaToken is the metadata key holding the random token of a create-only
// put (an identifier valid on every service: Azure allows only C#
// identifiers).
const metaToken = "reprise_put"

// preflightSize is the size from which a create-only put first checks
// that the key is free.
var preflightSize int64 = 1 << 20 // a variable for the tests

// Puts below smallPut get an upload buffer of their own size rounded up to
// bufferQuantum (GCS wants multiples of 256 KiB); larger ones keep the
// drivers' defaults (16 MiB chunks for GCS, 8 MiB blocks for Azure).
const (
	smallPut      = 16 << 20
	bufferQuantum = 256 << 10
)

// contentType is sent with every put: objects are opaque sealed bytes, and
// a set content type spares the Go CDK its content sniffing.
const contentType = "application/octet-stream"

// Store is a [storage.Storage] over a Go CDK bucket. It is safe for
// concurrent use.
type Store struct {
	bucket *blob.Bucket
	name   string // for String and messages
}

var _ storage.Storage = (*Store)(nil)

// OpenBucket returns a store over a bucket the caller opened with any Go CDK
// driver (wrap it with blob.PrefixedBucket first to keep the store under a
// prefix). The store takes the bucket over: its Close closes the bucket.
func OpenBucket(ctx context.Context, bucket *blob.Bucket) *Store {
	return &Store{bucket: bucket, name: "gocloud bucket"}
}

// Bucket returns the Go CDK bucket underneath, for operations beyond the
// storage interface (its As method reaches the service's own client).
func (s *Store) Bucket() *blob.Bucket { return s.bucket }

// String returns the store's location, as a URL without parameters when
// the store was opened from one.
func (s *Store) String() string { return s.name }

func (s *Store) check(ctx context.Context, op, key string) error {
	if !storage.ValidKey(key) {
		return fmt.Errorf("blobstore: %s %q: %w", op, key, storage.ErrInvalidKey)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blobstore: %s %q: %w", op, key, err)
	}
	return nil
}

// Put implements [storage.Storage.Put] with Bucket.Upload; see the package
// documentation.
func (s *Store) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *storage.PutOptions) error {
	if err := s.check(ctx, "put", key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("blobstore: put %q: negative size %d", key, size)
	}
	ifNotExist := opts != nil && opts.IfNotExist
	if ifNotExist && size >= preflightSize {
		// Fail early, without sending the data, when the key is
		// taken (Azure would stage every block before its commit
		// fails). The condition on the write remains the authority.
		exists, err := s.bucket.Exists(ctx, key)
		if err != nil {
			return mapCtxError(ctx, "put", key, err)
		}
		if exists {
			return fmt.Errorf("blobstore: put %q: %w", key, storage.ErrExist)
		}
	}
	wopts := &blob.WriterOptions{ContentType: contentType, IfNotExist: ifNotExist}
	if size < smallPut {
		// The drivers allocate their upload buffer whole (GCS: 16 MiB
		// per put by default): size it to the object.
		wopts.BufferSize = int((size/bufferQuantum + 1) * bufferQuantum)
	}
	var token string
	if ifNotExist {
		token = newToken()
		wopts.Metadata = map[string]string{metaToken: token}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	src := &source{r: r, size: size, abort: cancel}
	err := s.bucket.Upload(wctx, key, src, wopts)
	if rerr := src.failure(); rerr != nil {
		// The write was cancelled before the Go CDK closed it: nothing
		// was committed.
		return fmt.Errorf("blobstore: put %q: reading the data: %w", key, rerr)
	}
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("blobstore: put %q: %w", key, cerr)
	}
	if ifNotExist {
		return s.resolveConditional(ctx, key, token, err)
	}
	return mapError("put", key, err)
}

// resolveConditional settles a create-only put that failed with err; see
// the package documentation.
func (s *Store) resolveConditional(ctx context.Context, key, token string, err error) error {
	precondition := isPrecondition(err)
	if !precondition && !outcomeUnknown(err) {
		return mapError("put", key, err)
	}
	attrs, aerr := s.bucket.Attributes(ctx, key)
	switch {
	case aerr == nil && attrs.Metadata[metaToken] == token:
		return nil // our write landed
	case aerr == nil || precondition:
		return fmt.Errorf("blobstore: put %q: %w", key, storage.ErrExist)
	case gcerrors.Code(aerr) == gcerrors.NotFound && httpStatus(aerr) != 403:
		return fmt.Errorf("blobstore: put %q: nothing written after %v: %w", key, err, storage.ErrTransient)
	default:
		return fmt.Errorf("blobstore: put %q: outcome unknown (%v; checking: %v): %w", key, err, aerr, storage.ErrTransient)
	}
}

// Get implements [storage.Storage.Get] with Bucket.NewRangeReader.
func (s *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := s.check(ctx, "get", key); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("blobstore: get %q: negative offset %d: %w", key, off, storage.ErrInvalidRange)
	}
	if n == 0 {
		return s.emptyRead(ctx, key, off, nil)
	}
	if n < 0 || n > math.MaxInt64-off {
		n = -1 // to the end; also keeps off+n from overflowing
	}
	r, err := s.bucket.NewRangeReader(ctx, key, off, n, nil)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("blobstore: get %q: %w", key, cerr)
		}
		if !isNotFound(err) && (off > 0 || n > 0) {
			// Services refuse a range starting at or past the size
			// (every range of an empty object included) in their
			// own ways (416, InvalidArgument, ...): Stat tells an
			// empty read from an invalid one.
			return s.emptyRead(ctx, key, off, err)
		}
		return nil, mapError("get", key, err)
	}
	if off > r.Size() {
		r.Close()
		return nil, fmt.Errorf("blobstore: get %q: offset %d beyond size %d: %w", key, off, r.Size(), storage.ErrInvalidRange)
	}
	return &reader{r: r, key: key}, nil
}

// emptyRead serves a read that yields no bytes: it returns an empty reader
// when off is the object's size (or, for a zero-length read, when off is
// within the object), ErrInvalidRange when off lies beyond. getErr is the
// error of the ranged read that led here, if any; it is returned when the
// object turns out to hold bytes at off (a failure not about the range).
func (s *Store) emptyRead(ctx context.Context, key string, off int64, getErr error) (io.ReadCloser, error) {
	info, err := s.Stat(ctx, key)
	switch {
	case err != nil:
		return nil, err
	case off > info.Size:
		return nil, fmt.Errorf("blobstore: get %q: offset %d beyond size %d: %w", key, off, info.Size, storage.ErrInvalidRange)
	case off < info.Size && getErr != nil:
		return nil, mapCtxError(ctx, "get", key, getErr)
	}
	return io.NopCloser(strings.NewReader("")), nil
}

// Stat implements [storage.Storage.Stat] with Bucket.Attributes.
func (s *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	if err := s.check(ctx, "stat", key); err != nil {
		return storage.Info{}, err
	}
	a, err := s.bucket.Attributes(ctx, key)
	if err != nil {
		return storage.Info{}, mapCtxError(ctx, "stat", key, err)
	}
	return storage.Info{Key: key, Size: a.Size, ModTime: a.ModTime}, nil
}

// List implements [storage.Storage.List]. The services list names in
// byte order; entries that are not valid storage keys (made by other
// tools) are skipped.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	if prefix != "" && !storage.ValidKey(prefix+"x") {
		return fmt.Errorf("blobstore: list %q: %w", prefix, storage.ErrInvalidKey)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blobstore: list %q: %w", prefix, err)
	}
	it := s.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return mapCtxError(ctx, "list", prefix, err)
		}
		if obj.IsDir || !storage.ValidKey(obj.Key) {
			continue
		}
		if err := fn(storage.Info{Key: obj.Key, Size: obj.Size, ModTime: obj.ModTime}); err != nil {
			return err
		}
	}
}

// Delete implements [storage.Storage.Delete]. The Go CDK reports a missing
// blob as NotFound on every service.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.check(ctx, "delete", key); err != nil {
		return err
	}
	if err := s.bucket.Delete(ctx, key); err != nil {
		return mapCtxError(ctx, "delete", key, err)
	}
	return nil
}

// Close implements [storage.Storage.Close]; it closes the bucket.
func (s *Store) Close() error {
	if err := s.bucket.Close(); err != nil {
		return fmt.Errorf("blobstore: close: %w", err)
	}
	return nil
}

// source reads exactly size bytes of r as an io.Reader. A failure of r,
// or r ending early, is recorded and cancels the write (abort) before the
// error reaches the Go CDK, which would otherwise close — and commit — the
// writer.
type source struct {
	r     io.ReaderAt
	size  int64
	off   int64
	abort context.CancelFunc

	mu  sync.Mutex // drivers may read from other goroutines
	err error      // set once, before abort
}

func (s *source) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	if s.off >= s.size {
		return 0, io.EOF
	}
	if rem := s.size - s.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := s.r.ReadAt(p, s.off)
	s.off += int64(n)
	switch {
	case err == nil || (err == io.EOF && n == len(p)):
		return n, nil
	case err == io.EOF:
		err = fmt.Errorf("data ends after %d of %d bytes: %w", s.off, s.size, io.ErrUnexpectedEOF)
	}
	s.err = err
	s.abort()
	return n, err
}

// failure returns the read error, if any.
func (s *source) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// reader wraps a blob.Reader so that transport failures while reading wrap
// ErrTransient.
type reader struct {
	r   *blob.Reader
	key string
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("blobstore: get %q: reading: %w", r.key, transientIf(err))
	}
	return n, err
}

func (r *reader) Close() error { return r.r.Close() }

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
