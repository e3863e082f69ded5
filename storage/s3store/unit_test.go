package s3store

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/reprise-backup/reprise/storage"
)

// Unit tests: no server needed.

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url    string
		bucket string
		prefix string
		opts   Options
	}{
		{"s3://bkt", "bkt", "", Options{}},
		{"s3://bkt/", "bkt", "", Options{}},
		{"s3://bkt/a/b/", "bkt", "a/b/", Options{}},
		{"s3://bkt//a//", "bkt", "a/", Options{}},
		{"s3://bkt/a//b", "", "", Options{}}, // empty segment: error
		{"s3://my.bucket-1/repo?region=eu-west-3", "my.bucket-1", "repo/", Options{Region: "eu-west-3"}},
		{"s3://bkt/r?endpoint=http://127.0.0.1:9000&path_style=true&create=1", "bkt", "r/",
			Options{Endpoint: "http://127.0.0.1:9000", PathStyle: true, CreateBucket: true}},
		{"s3://bkt?part_size=5MiB&concurrency=8", "bkt", "", Options{PartSize: 5 << 20, Concurrency: 8}},
		{"s3://bkt?part_size=64m", "bkt", "", Options{PartSize: 64 << 20}},
		{"s3://bkt?part_size=6291456", "bkt", "", Options{PartSize: 6 << 20}},
		{"s3://bkt?path_style=false", "bkt", "", Options{}},
		{"s3://bkt?object_lock=compliance&retention=30d", "bkt", "", Options{ObjectLock: LockCompliance, Retention: 30 * 24 * time.Hour}},
		{"s3://bkt?object_lock=GOVERNANCE&retention=90m", "bkt", "", Options{ObjectLock: LockGovernance, Retention: 90 * time.Minute}},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		bucket, prefix, opts, err := ParseURL(u)
		if tc.bucket == "" {
			if err == nil {
				t.Errorf("ParseURL(%q) succeeded, want an error", tc.url)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.url, err)
			continue
		}
		if bucket != tc.bucket || prefix != tc.prefix || *opts != tc.opts {
			t.Errorf("ParseURL(%q) = %q, %q, %+v; want %q, %q, %+v", tc.url, bucket, prefix, *opts, tc.bucket, tc.prefix, tc.opts)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"s3://bkt?regoin=x", `unknown URL parameter "regoin"`},
		{"s3://bkt?region=a&region=b", "given 2 times"},
		{"s3://bkt?path_style=maybe", "path_style"},
		{"s3://bkt?create=yes-please", "create"},
		{"s3://bkt?part_size=1MiB", "out of range"},
		{"s3://bkt?part_size=lots", "malformed size"},
		{"s3://bkt?concurrency=0", "concurrency"},
		{"s3://bkt?endpoint=127.0.0.1:9000", "endpoint"},
		{"s3://bkt?endpoint=ftp://host", "endpoint"},
		{"s3:///prefix", "no bucket"},
		{"s3://ab", "3 to 63"},
		{"s3://key:secret@bkt", "must not hold credentials"},
		{"s3://bkt/a/../b", "malformed prefix"},
		{"gs://bkt", "scheme"},
		{"s3://bkt?object_lock=strict&retention=1h", "object_lock"},
		{"s3://bkt?object_lock=COMPLIANCE", "needs a retention"},
		{"s3://bkt?retention=1h", "without an Object Lock mode"},
		{"s3://bkt?object_lock=GOVERNANCE&retention=0s", "retention"},
		{"s3://bkt?object_lock=GOVERNANCE&retention=-1h", "retention"},
		{"s3://bkt?object_lock=GOVERNANCE&retention=soon", "retention"},
		{"s3://bkt?object_lock=GOVERNANCE&retention=99999d", "retention"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		_, _, _, err = ParseURL(u)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseURL(%q) = %v, want an error containing %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q): error shows the secret: %v", tc.url, err)
		}
	}
}

func TestStorageOpenRejectsUnknownParameter(t *testing.T) {
	_, err := storage.Open(context.Background(), "s3://bucket/p?endpiont=http://x")
	if err == nil || !strings.Contains(err.Error(), `"endpiont"`) {
		t.Fatalf("storage.Open with a misspelt parameter = %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "5242880": 5 << 20, "5MiB": 5 << 20, "5mib": 5 << 20, "5M": 5 << 20, "16 MiB": 16 << 20,
		"1GiB": 1 << 30, "2g": 2 << 30, "512KiB": 512 << 10, "100b": 100,
	} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-5MiB", "5TiB", "1.5MiB", "99999999999999999999"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

// respErr builds an SDK error as the client returns it for an HTTP answer.
func respErr(status int, apiErr error) error {
	return &smithy.OperationError{
		ServiceID:     "S3",
		OperationName: "GetObject",
		Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
				Err:      apiErr,
			},
		},
	}
}

func TestMapError(t *testing.T) {
	generic := func(code string) error { return &smithy.GenericAPIError{Code: code, Message: code} }
	sendErr := func(err error) error {
		return &smithy.OperationError{ServiceID: "S3", OperationName: "PutObject", Err: &smithyhttp.RequestSendError{Err: err}}
	}
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: no sentinel
	}{
		{"NoSuchKey", respErr(404, &types.NoSuchKey{}), storage.ErrNotExist},
		{"HEAD 404", respErr(404, &types.NotFound{}), storage.ErrNotExist},
		{"412", respErr(412, generic("PreconditionFailed")), storage.ErrExist},
		{"416", respErr(416, generic("InvalidRange")), storage.ErrInvalidRange},
		{"403", respErr(403, generic("AccessDenied")), storage.ErrPermission},
		{"InvalidAccessKeyId", respErr(403, generic("InvalidAccessKeyId")), storage.ErrPermission},
		{"SignatureDoesNotMatch", respErr(403, generic("SignatureDoesNotMatch")), storage.ErrPermission},
		{"SlowDown 503", respErr(503, generic("SlowDown")), storage.ErrTransient},
		{"500", respErr(500, generic("InternalError")), storage.ErrTransient},
		{"429", respErr(429, generic("TooManyRequests")), storage.ErrTransient},
		{"RequestTimeout 400", respErr(400, generic("RequestTimeout")), storage.ErrTransient},
		{"409 conditional conflict", respErr(409, generic("ConditionalRequestConflict")), storage.ErrTransient},
		{"connection reset", sendErr(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), storage.ErrTransient},
		{"broken pipe", sendErr(&net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}), storage.ErrTransient},
		{"unexpected EOF", sendErr(io.ErrUnexpectedEOF), storage.ErrTransient},
		{"400 other", respErr(400, generic("InvalidArgument")), nil},
		{"NoSuchBucket", respErr(404, generic("NoSuchBucket")), nil},
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
	if !strings.Contains(mapError("get", "k", respErr(404, generic("NoSuchBucket"))).Error(), "bucket does not exist") {
		t.Error("NoSuchBucket: message does not say the bucket is missing")
	}
}

func TestOutcomeUnknown(t *testing.T) {
	if !outcomeUnknown(&smithyhttp.RequestSendError{Err: syscall.ECONNRESET}) {
		t.Error("connection reset: want outcome unknown")
	}
	if !outcomeUnknown(respErr(503, nil)) {
		t.Error("503: want outcome unknown")
	}
	for _, st := range []int{400, 403, 409, 412} {
		if outcomeUnknown(respErr(st, nil)) {
			t.Errorf("%d: want a known outcome", st)
		}
	}
}

// fakeS3 is just enough of an S3 server to test how a create-only put
// whose answer is lost gets resolved: a PutObject may store the object
// (commit) and then close the connection without answering, as servers do
// after sending a 412 before reading a large body; HeadObject reports what
// is stored.
type fakeS3 struct {
	mu       sync.Mutex
	commit   bool   // the first PutObject stores the object before the reset
	resetAll bool   // every PutObject loses its answer, even a 412
	stored   string // token of the stored object; "" if none
	other    bool   // an object of another writer is there
	puts     int
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodHead && r.URL.Path == "/bkt":
		w.WriteHeader(200) // HeadBucket
	case r.Method == http.MethodPut:
		f.puts++
		exists := f.other || f.stored != ""
		if exists && !f.resetAll {
			w.WriteHeader(412)
			io.WriteString(w, "<Error><Code>PreconditionFailed</Code><Message>taken</Message></Error>")
			return
		}
		if !exists && f.commit {
			f.stored = r.Header.Get("X-Amz-Meta-Reprise-Put")
		}
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	case r.Method == http.MethodHead:
		switch {
		case f.other:
			w.Header().Set("X-Amz-Meta-Reprise-Put", "someone-else")
		case f.stored != "":
			w.Header().Set("X-Amz-Meta-Reprise-Put", f.stored)
		default:
			w.WriteHeader(404)
			return
		}
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(200)
	default:
		w.WriteHeader(501)
	}
}

func TestCreateOnlyOutcomeUnknown(t *testing.T) {
	t.Setenv("AWS_MAX_ATTEMPTS", "2") // one SDK retry: enough, and quicker
	for _, tc := range []struct {
		name   string
		fake   *fakeS3
		want   error // nil: success
		wantIn string
	}{
		{"committed, every answer lost", &fakeS3{commit: true, resetAll: true}, nil, ""},
		{"committed, SDK retry meets 412", &fakeS3{commit: true}, nil, ""},
		{"another writer's object, answer lost", &fakeS3{other: true, resetAll: true}, storage.ErrExist, ""},
		{"another writer's object, 412", &fakeS3{other: true}, storage.ErrExist, ""},
		{"nothing written", &fakeS3{resetAll: true}, storage.ErrTransient, "nothing written"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fake
			srv := httptest.NewServer(f)
			defer srv.Close()
			s, err := Open(t.Context(), "bkt", "", &Options{
				Endpoint: srv.URL, PathStyle: true, Region: "us-east-1",
				Credentials: credentials.NewStaticCredentialsProvider("id", "secret", ""),
			})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Put(t.Context(), "k", strings.NewReader("hello"), 5, &storage.PutOptions{IfNotExist: true})
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("Put = %v, want success", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("Put = %v, want %v", err, tc.want)
			case tc.wantIn != "" && !strings.Contains(err.Error(), tc.wantIn):
				t.Fatalf("Put = %v, want a message containing %q", err, tc.wantIn)
			}
			if f.puts == 0 {
				t.Fatal("no PutObject reached the server")
			}
		})
	}
}

func TestCheckedBeforeNetwork(t *testing.T) {
	// A store whose endpoint refuses connections: invalid keys and
	// ranges must be refused before any request.
	s := &Store{bucket: "bkt", partSize: DefaultPartSize, concurrency: 1}
	ctx := context.Background()
	if err := s.Put(ctx, "Bad Key", strings.NewReader(""), 0, nil); !errors.Is(err, storage.ErrInvalidKey) {
		t.Errorf("Put(bad key) = %v", err)
	}
	if _, err := s.Get(ctx, "k", -1, 1); !errors.Is(err, storage.ErrInvalidRange) {
		t.Errorf("Get(off -1) = %v", err)
	}
	if err := s.List(ctx, "/x", nil); !errors.Is(err, storage.ErrInvalidKey) {
		t.Errorf("List(/x) = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Stat(cctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Stat(cancelled) = %v", err)
	}
}
