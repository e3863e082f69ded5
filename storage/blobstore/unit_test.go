package blobstore

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"gocloud.dev/blob/memblob"
	"google.golang.org/api/googleapi"

	"github.com/reprise-backup/reprise/storage"
)

// Unit tests: no server needed.

func TestSplitURL(t *testing.T) {
	for _, tc := range []struct {
		url, cdk, prefix string
		opts             Options
	}{
		{"gs://bkt", "gs://bkt", "", Options{}},
		{"gs://bkt/a/b/", "gs://bkt", "a/b/", Options{}},
		{"gs://bkt/r?create=true&project=p1", "gs://bkt", "r/", Options{CreateBucket: true, Project: "p1"}},
		{"gs://bkt?anonymous=true", "gs://bkt?anonymous=true", "", Options{}},
		{"azblob://ctr/x?create=1&localemu=true&protocol=http", "azblob://ctr?localemu=true&protocol=http", "x/", Options{CreateBucket: true}},
		{"azblob://ctr?storage_account=acct&domain=127.0.0.1:10000", "azblob://ctr?domain=127.0.0.1%3A10000&storage_account=acct", "", Options{}},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		var o Options
		cdk, prefix, err := splitURL(u, &o)
		if err != nil {
			t.Errorf("splitURL(%q): %v", tc.url, err)
			continue
		}
		if cdk != tc.cdk || prefix != tc.prefix || o != tc.opts {
			t.Errorf("splitURL(%q) = %q, %q, %+v; want %q, %q, %+v", tc.url, cdk, prefix, o, tc.cdk, tc.prefix, tc.opts)
		}
	}
}

func TestSplitURLErrors(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"gs:///x", "malformed URL"},
		{"gs://bkt?create=maybe", "create"},
		{"gs://bkt?create=1&create=0", "given 2 times"},
		{"gs://bkt?prefix=a/", "put the prefix in the URL path"},
		{"azblob://ctr?project=p", "gs:// URLs only"},
		{"gs://bkt/a/../b", "malformed prefix"},
		{"azblob://user:key@ctr", "must not hold credentials"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = splitURL(u, &Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("splitURL(%q) = %v, want an error containing %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "key@") {
			t.Errorf("splitURL(%q): error shows credentials: %v", tc.url, err)
		}
	}
}

// TestUnknownParameter checks that the Go CDK driver's refusal of an
// unknown parameter reaches the caller.
func TestUnknownParameter(t *testing.T) {
	for _, u := range []string{"gs://bkt?regoin=x", "azblob://ctr?storage_acount=x"} {
		_, err := storage.Open(context.Background(), u)
		if err == nil || !strings.Contains(err.Error(), "parameter") {
			t.Errorf("storage.Open(%q) = %v, want an unknown-parameter error", u, err)
		}
	}
}

func TestMapError(t *testing.T) {
	az := func(status int, code string) error {
		return &azcore.ResponseError{StatusCode: status, ErrorCode: code}
	}
	gerr := func(status int) error { return &googleapi.Error{Code: status} }
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: no sentinel
	}{
		{"azure BlobNotFound", az(404, "BlobNotFound"), storage.ErrNotExist},
		{"azure 403", az(403, "AuthorizationFailure"), storage.ErrPermission},
		{"azure 503", az(503, "ServerBusy"), storage.ErrTransient},
		{"azure 500", az(500, "InternalError"), storage.ErrTransient},
		{"azure 416", az(416, "InvalidRange"), storage.ErrInvalidRange},
		{"azure ContainerNotFound", az(404, "ContainerNotFound"), nil},
		{"gcs 404", gerr(404), storage.ErrNotExist},
		{"gcs 403", gerr(403), storage.ErrPermission},
		{"gcs 401", gerr(401), storage.ErrPermission},
		{"gcs 429", gerr(429), storage.ErrTransient},
		{"gcs 502", gerr(502), storage.ErrTransient},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, storage.ErrTransient},
		{"dns not found", &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, nil},
		{"other", errors.New("boom"), nil},
	} {
		err := mapError("get", "k", tc.err)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: mapError lost the original error: %v", tc.name, err)
		}
		for _, s := range []error{storage.ErrNotExist, storage.ErrExist, storage.ErrInvalidRange, storage.ErrPermission, storage.ErrTransient} {
			if errors.Is(err, s) != (s == tc.want) {
				t.Errorf("%s: mapError = %v; errors.Is(%v) = %v", tc.name, err, s, errors.Is(err, s))
			}
		}
	}
}

func TestIsPrecondition(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&azcore.ResponseError{StatusCode: 409, ErrorCode: "BlobAlreadyExists"}, true},
		{&azcore.ResponseError{StatusCode: 412, ErrorCode: "ConditionNotMet"}, true},
		{&googleapi.Error{Code: 412}, true},
		{&azcore.ResponseError{StatusCode: 409, ErrorCode: "LeaseIdMissing"}, false},
		{&googleapi.Error{Code: 500}, false},
	} {
		if got := isPrecondition(tc.err); got != tc.want {
			t.Errorf("isPrecondition(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestSourceShort: a reader shorter than the announced size fails the
// put and cancels the write.
func TestSourceShort(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	src := &source{r: strings.NewReader("abc"), size: 5, abort: cancel}
	buf := make([]byte, 10)
	n, err := src.Read(buf)
	if n != 3 || !errors.Is(err, io.ErrUnexpectedEOF) || ctx.Err() == nil {
		t.Fatalf("Read = %d, %v (ctx %v); want 3, ErrUnexpectedEOF, cancelled", n, err, ctx.Err())
	}
	// Exactly size bytes: EOF without error or cancellation.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	src = &source{r: strings.NewReader("abcdef"), size: 4, abort: cancel2}
	n, err = src.Read(buf)
	if n != 4 || err != nil {
		t.Fatalf("Read = %d, %v; want 4, nil", n, err)
	}
	if n, err = src.Read(buf); n != 0 || err == nil || ctx2.Err() != nil {
		t.Fatalf("second Read = %d, %v (ctx %v); want 0, EOF, not cancelled", n, err, ctx2.Err())
	}
}

func TestOpenBucketMem(t *testing.T) {
	s := OpenBucket(context.Background(), memblob.OpenBucket(nil))
	defer s.Close()
	if err := s.Put(context.Background(), "Bad", strings.NewReader(""), 0, nil); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("Put(Bad) = %v", err)
	}
}
