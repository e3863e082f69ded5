package blobstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	gcs "cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"
	"google.golang.org/api/iterator"

	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/blobstore"
	"github.com/reprise-backup/reprise/storage/storagetest"
)

// Integration tests run against emulators named by the environment
// (.ci/servers.sh starts them and sets it):
//
//	Azurite:         REPRISE_TEST_AZURITE=1 with AZURE_STORAGE_ACCOUNT,
//	                 AZURE_STORAGE_KEY, AZURE_STORAGE_DOMAIN=127.0.0.1:10000,
//	                 AZURE_STORAGE_PROTOCOL=http, AZURE_STORAGE_IS_LOCAL_EMULATOR=true
//	fake-gcs-server: REPRISE_TEST_GCS_EMULATOR=1 with STORAGE_EMULATOR_HOST=127.0.0.1:4443
//
// Without them the tests skip, except under CI=true, where they fail.

// multipartSize makes the suite's large object (2×8 MiB + a bit) span
// several of the Azure driver's 8 MiB blocks (a block list commit) and
// several of GCS's resumable-upload chunks.
const multipartSize = 8 << 20

func require(tb testing.TB, flag, what string, vars ...string) {
	tb.Helper()
	missing := os.Getenv(flag) == ""
	for _, v := range vars {
		if os.Getenv(v) == "" {
			missing = true
		}
	}
	if !missing {
		return
	}
	msg := "no " + what + ": set " + flag + "=1 with " + strings.Join(vars, ", ") + " (or run under `source .ci/servers.sh`)"
	if os.Getenv("CI") == "true" {
		tb.Fatal("CI=true: " + msg)
	}
	tb.Skip(msg)
}

func requireAzurite(tb testing.TB) {
	require(tb, "REPRISE_TEST_AZURITE", "Azurite", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY", "AZURE_STORAGE_DOMAIN", "AZURE_STORAGE_PROTOCOL")
}

func requireGCS(tb testing.TB) {
	require(tb, "REPRISE_TEST_GCS_EMULATOR", "GCS emulator", "STORAGE_EMULATOR_HOST")
}

func uniqueName() string {
	var b [6]byte
	rand.Read(b[:])
	return "reprise-test-" + hex.EncodeToString(b[:])
}

// openFresh opens a store in a new bucket (container) made by OpenURL, and
// deletes the bucket at cleanup.
func openFresh(tb testing.TB, scheme, prefix string) *blobstore.Store {
	tb.Helper()
	name := uniqueName()
	u := scheme + "://" + name + prefix + "?create=true"
	s, err := blobstore.Open(context.Background(), u, nil)
	if err != nil {
		tb.Fatalf("Open(%q): %v", u, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := deleteBucket(ctx, s.Bucket(), name); err != nil {
			tb.Errorf("cleanup: deleting %s://%s: %v", scheme, name, err)
		}
		s.Close()
	})
	return s
}

func deleteBucket(ctx context.Context, b *blob.Bucket, name string) error {
	var cc *container.Client
	if b.As(&cc) {
		_, err := cc.Delete(ctx, nil) // deletes the blobs too
		return err
	}
	var gc *gcs.Client
	if b.As(&gc) {
		bkt := gc.Bucket(name)
		it := bkt.Objects(ctx, nil)
		for {
			o, err := it.Next()
			if err == iterator.Done {
				break
			}
			if err != nil {
				return err
			}
			if err := bkt.Object(o.Name).Delete(ctx); err != nil {
				return err
			}
		}
		return bkt.Delete(ctx)
	}
	return errors.New("unknown bucket kind")
}

func TestAzuriteConformance(t *testing.T) {
	requireAzurite(t)
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return openFresh(t, "azblob", "")
	}, &storagetest.Options{MultipartSize: multipartSize, Objects: 1200})
}

func TestAzuriteConformancePrefix(t *testing.T) {
	requireAzurite(t)
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return openFresh(t, "azblob", "/some/prefix")
	}, &storagetest.Options{MultipartSize: multipartSize, Objects: 1200})
}

func TestGCSConformance(t *testing.T) {
	requireGCS(t)
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return openFresh(t, "gs", "")
	}, &storagetest.Options{MultipartSize: multipartSize, Objects: 1200})
}

func TestGCSConformancePrefix(t *testing.T) {
	requireGCS(t)
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return openFresh(t, "gs", "/some/prefix")
	}, &storagetest.Options{MultipartSize: multipartSize, Objects: 1200})
}

// TestMemConformance runs the suite over the Go CDK's in-memory driver:
// no server needed, and it checks what the driver adds on top of the Go
// CDK (a failing reader must not commit a partial object, which memblob
// and gcsblob would otherwise do).
func TestMemConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		s := blobstore.OpenBucket(t.Context(), memblob.OpenBucket(nil))
		t.Cleanup(func() { s.Close() })
		return s
	}, &storagetest.Options{MultipartSize: 1 << 20})
}

func TestOpenMissingBucket(t *testing.T) {
	for _, tc := range []struct {
		scheme  string
		require func(testing.TB)
	}{{"azblob", requireAzurite}, {"gs", requireGCS}} {
		t.Run(tc.scheme, func(t *testing.T) {
			tc.require(t)
			name := uniqueName()
			_, err := blobstore.Open(t.Context(), tc.scheme+"://"+name, nil)
			if !errors.Is(err, storage.ErrNotExist) || !strings.Contains(err.Error(), name) {
				t.Fatalf("Open of a missing bucket = %v, want ErrNotExist naming %q", err, name)
			}
		})
	}
}

// TestStorageOpen goes through the registry, with a prefix, and checks
// where the objects land.
func TestStorageOpen(t *testing.T) {
	for _, tc := range []struct {
		scheme  string
		require func(testing.TB)
	}{{"azblob", requireAzurite}, {"gs", requireGCS}} {
		t.Run(tc.scheme, func(t *testing.T) {
			tc.require(t)
			name := uniqueName()
			s, err := storage.Open(t.Context(), tc.scheme+"://"+name+"/repo/x?create=true")
			if err != nil {
				t.Fatalf("storage.Open: %v", err)
			}
			bs := s.(*blobstore.Store)
			if got, want := bs.String(), tc.scheme+"://"+name+"/repo/x"; got != want {
				t.Errorf("String() = %q, want %q", got, want)
			}
			// A second store on the bucket root sees the prefix.
			root, err := blobstore.Open(t.Context(), tc.scheme+"://"+name, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				deleteBucket(context.Background(), root.Bucket(), name)
				root.Close()
			})
			if err := s.Put(t.Context(), "k", strings.NewReader("v"), 1, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := root.Stat(t.Context(), "repo/x/k"); err != nil {
				t.Fatalf("object not under the URL's prefix: %v", err)
			}
			if err := root.Put(t.Context(), "repo/xy", strings.NewReader("v"), 1, nil); err != nil {
				t.Fatal(err)
			}
			var keys []string
			s.List(t.Context(), "", func(i storage.Info) error { keys = append(keys, i.Key); return nil })
			if len(keys) != 1 || keys[0] != "k" {
				t.Fatalf("List under the prefix = %q, want [k]", keys)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCreateOnlyLarge: a create-only put over an existing key, larger than
// one upload block, fails with ErrExist on every try and changes nothing.
func TestCreateOnlyLarge(t *testing.T) {
	for _, tc := range []struct {
		scheme    string
		require   func(testing.TB)
		preflight bool
	}{
		{"azblob", requireAzurite, true}, {"gs", requireGCS, true},
		// The conditional writes themselves, without the existence
		// check that fails them early.
		{"azblob", requireAzurite, false}, {"gs", requireGCS, false},
	} {
		name := tc.scheme
		if !tc.preflight {
			name += "-nopreflight"
		}
		t.Run(name, func(t *testing.T) {
			tc.require(t)
			if !tc.preflight {
				defer blobstore.SetPreflightSize(1 << 62)()
			}
			s := openFresh(t, tc.scheme, "")
			ctx := t.Context()
			b := make([]byte, 20<<20)
			rand.Read(b)
			create := &storage.PutOptions{IfNotExist: true}
			if err := s.Put(ctx, "big", strings.NewReader(string(b)), int64(len(b)), create); err != nil {
				t.Fatal(err)
			}
			for i := range 4 {
				other := strings.Repeat(string(rune('a'+i)), len(b))
				err := s.Put(ctx, "big", strings.NewReader(other), int64(len(other)), create)
				if !errors.Is(err, storage.ErrExist) {
					t.Fatalf("attempt %d = %v, want ErrExist", i, err)
				}
			}
			rc, err := s.Get(ctx, "big", 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || string(got) != string(b) {
				t.Fatalf("object changed by refused puts (%d bytes, %v)", len(got), err)
			}
		})
	}
}

func BenchmarkAzurite(b *testing.B) {
	requireAzurite(b)
	storagetest.Bench(b, func(b *testing.B) storage.Storage { return openFresh(b, "azblob", "") })
}

func BenchmarkGCS(b *testing.B) {
	requireGCS(b)
	storagetest.Bench(b, func(b *testing.B) storage.Storage { return openFresh(b, "gs", "") })
}
