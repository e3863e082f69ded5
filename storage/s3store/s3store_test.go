package s3store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/s3store"
	"github.com/reprise-backup/reprise/storage/storagetest"
)

// Integration tests run against a real S3 server named by the environment
// (.ci/servers.sh starts MinIO and sets it):
//
//	REPRISE_TEST_S3_ENDPOINT=http://127.0.0.1:9000
//	AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... [AWS_REGION=us-east-1]
//
// Without them the tests skip, except under CI=true, where they fail.

// testPartSize is the smallest part size S3 accepts, so that the suite's
// large objects (2×5 MiB + a bit) are multipart uploads of three parts.
const testPartSize = s3store.MinPartSize

func endpoint(tb testing.TB) string {
	tb.Helper()
	ep := os.Getenv("REPRISE_TEST_S3_ENDPOINT")
	if ep == "" || os.Getenv("AWS_ACCESS_KEY_ID") == "" || os.Getenv("AWS_SECRET_ACCESS_KEY") == "" {
		msg := "no S3 server: set REPRISE_TEST_S3_ENDPOINT (e.g. http://127.0.0.1:9000), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run under `source .ci/servers.sh`"
		if os.Getenv("CI") == "true" {
			tb.Fatal("CI=true: " + msg)
		}
		tb.Skip(msg)
	}
	return ep
}

func uniqueBucket() string {
	var b [6]byte
	rand.Read(b[:])
	return "reprise-test-" + hex.EncodeToString(b[:])
}

// newStore opens a store in a fresh bucket (created by Open) and removes
// the bucket, its objects and any multipart upload left at cleanup.
func newStore(tb testing.TB, prefix string, opts s3store.Options) *s3store.Store {
	tb.Helper()
	ep := endpoint(tb)
	opts.Endpoint = ep
	opts.PathStyle = true
	opts.CreateBucket = true
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	bucket := uniqueBucket()
	s, err := s3store.Open(context.Background(), bucket, prefix, &opts)
	if err != nil {
		tb.Fatalf("Open(%q): %v", bucket, err)
	}
	tb.Cleanup(func() {
		s.Close()
		removeBucket(tb, s.Client(), bucket)
	})
	return s
}

func removeBucket(tb testing.TB, c *s3.Client, bucket string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			tb.Errorf("cleanup: listing %s: %v", bucket, err)
			return
		}
		if len(page.Contents) == 0 {
			continue
		}
		var ids []types.ObjectIdentifier
		for _, o := range page.Contents {
			ids = append(ids, types.ObjectIdentifier{Key: o.Key})
		}
		if _, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &bucket, Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}}); err != nil {
			tb.Errorf("cleanup: deleting objects of %s: %v", bucket, err)
			return
		}
	}
	if n := pendingUploads(tb, c, bucket); n > 0 {
		tb.Errorf("cleanup: %d multipart uploads left unaborted in %s", n, bucket)
	}
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket}); err != nil {
		tb.Errorf("cleanup: deleting bucket %s: %v", bucket, err)
	}
}

// pendingUploads counts (and aborts) the multipart uploads in progress.
func pendingUploads(tb testing.TB, c *s3.Client, bucket string) int {
	ctx := context.Background()
	out, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		tb.Errorf("listing multipart uploads of %s: %v", bucket, err)
		return 0
	}
	for _, u := range out.Uploads {
		c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: u.Key, UploadId: u.UploadId})
	}
	return len(out.Uploads)
}

func TestConformance(t *testing.T) {
	endpoint(t)
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return newStore(t, "", s3store.Options{PartSize: testPartSize, Concurrency: 3})
	}, &storagetest.Options{MultipartSize: testPartSize, Objects: 1200})
}

// TestConformancePrefix runs the suite on a store kept under a prefix, in
// a bucket that also holds objects outside it.
func TestConformancePrefix(t *testing.T) {
	endpoint(t)
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		s := newStore(t, "/some/prefix/", s3store.Options{PartSize: testPartSize})
		// Neighbours the store must never see. (Not "some/prefix"
		// itself: MinIO cannot hold an object and a "directory" of
		// the same name.)
		for _, k := range []string{"some/prefixx/a", "some/prefi", "some/other", "top"} {
			if _, err := s.Client().PutObject(t.Context(), &s3.PutObjectInput{
				Bucket: aws.String(s.Bucket()), Key: aws.String(k), Body: strings.NewReader("neighbour"),
			}); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}, &storagetest.Options{MultipartSize: testPartSize, Objects: 1200})
}

// TestCreateOnlyLarge puts create-only objects larger than a socket buffer
// over an existing key: servers answer 412 before reading the body and
// close the connection, which the client may see as a connection reset
// instead of the 412. Every attempt must still be ErrExist, never a
// transient error nor a success, and leave no upload behind.
func TestCreateOnlyLarge(t *testing.T) {
	endpoint(t)
	for _, tc := range []struct {
		name      string
		size      int
		preflight bool
	}{
		{"single", 12 << 20, true},    // one PutObject (below the 16 MiB part size)
		{"multipart", 20 << 20, true}, // multipart, condition on completion
		// The conditional writes themselves, without the HeadObject
		// that fails them early.
		{"single-nopreflight", 12 << 20, false},
		{"multipart-nopreflight", 20 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.preflight {
				defer s3store.SetPreflightSize(1 << 62)()
			}
			s := newStore(t, "", s3store.Options{PartSize: 16 << 20})
			ctx := t.Context()
			b := make([]byte, tc.size)
			rand.Read(b)
			create := &storage.PutOptions{IfNotExist: true}
			if err := s.Put(ctx, "big", bytes.NewReader(b), int64(len(b)), create); err != nil {
				t.Fatalf("first create-only put: %v", err)
			}
			before := s3store.UnknownOutcomes()
			defer func() {
				t.Logf("%d of 8 refused puts lost every answer and were settled by HeadObject", s3store.UnknownOutcomes()-before)
			}()
			for i := range 8 {
				other := bytes.Repeat([]byte{byte(i)}, tc.size)
				err := s.Put(ctx, "big", bytes.NewReader(other), int64(len(other)), create)
				if !errors.Is(err, storage.ErrExist) {
					t.Fatalf("attempt %d: create-only put over an existing key = %v, want ErrExist", i, err)
				}
			}
			got, err := storage.ReadAll(ctx, s, "big")
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("object changed by the refused puts (%d bytes, %v)", len(got), err)
			}
			if n := pendingUploads(t, s.Client(), s.Bucket()); n != 0 {
				t.Fatalf("%d multipart uploads left behind", n)
			}
		})
	}
}

// TestMultipartFailureAborts checks that a multipart put failing midway
// (the caller's reader, or its context) aborts its upload.
func TestMultipartFailureAborts(t *testing.T) {
	s := newStore(t, "", s3store.Options{PartSize: testPartSize, Concurrency: 2})
	size := int64(3*testPartSize + 1)
	ctx, cancel := context.WithCancel(t.Context())
	r := &cancelAt{r: bytes.NewReader(make([]byte, size)), at: 2 * testPartSize, cancel: cancel}
	err := s.Put(ctx, "x", r, size, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put cancelled midway = %v, want context.Canceled", err)
	}
	if n := pendingUploads(t, s.Client(), s.Bucket()); n != 0 {
		t.Fatalf("%d multipart uploads left behind after a cancelled put", n)
	}
	if _, err := s.Stat(t.Context(), "x"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat after a cancelled put = %v, want ErrNotExist", err)
	}
}

// cancelAt cancels a context when a read reaches offset at.
type cancelAt struct {
	r      *bytes.Reader
	at     int64
	cancel func()
}

func (c *cancelAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > c.at {
		c.cancel()
	}
	return c.r.ReadAt(p, off)
}

func TestOpenMissingBucket(t *testing.T) {
	ep := endpoint(t)
	bucket := uniqueBucket()
	_, err := s3store.Open(t.Context(), bucket, "", &s3store.Options{Endpoint: ep, PathStyle: true, Region: "us-east-1"})
	if err == nil || !errors.Is(err, storage.ErrNotExist) || !strings.Contains(err.Error(), bucket) {
		t.Fatalf("Open of a missing bucket = %v, want ErrNotExist naming %q", err, bucket)
	}
}

func TestOpenBadCredentials(t *testing.T) {
	ep := endpoint(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "nobody")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
	_, err := s3store.Open(t.Context(), uniqueBucket(), "", &s3store.Options{Endpoint: ep, PathStyle: true, Region: "us-east-1"})
	if !errors.Is(err, storage.ErrPermission) {
		t.Fatalf("Open with unknown credentials = %v, want ErrPermission", err)
	}
}

// TestStorageOpen goes through the registry with an s3:// URL.
func TestStorageOpen(t *testing.T) {
	ep := endpoint(t)
	bucket := uniqueBucket()
	s, err := storage.Open(t.Context(), "s3://"+bucket+"/repo?endpoint="+ep+"&path_style=true&region=us-east-1&create=true&part_size=5MiB&concurrency=2")
	if err != nil {
		t.Fatalf("storage.Open: %v", err)
	}
	st := s.(*s3store.Store)
	t.Cleanup(func() { removeBucket(t, st.Client(), bucket) })
	if err := s.Put(t.Context(), "k", strings.NewReader("v"), 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Client().HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String("repo/k")}); err != nil {
		t.Fatalf("object not under the URL's prefix: %v", err)
	}
	if got := st.String(); got != "s3://"+bucket+"/repo" {
		t.Errorf("String() = %q", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(t.Context(), "k"); err == nil {
		t.Fatal("Stat after Close succeeded")
	}
}

func BenchmarkS3(b *testing.B) {
	endpoint(b)
	storagetest.Bench(b, func(b *testing.B) storage.Storage {
		return newStore(b, "", s3store.Options{})
	})
}
