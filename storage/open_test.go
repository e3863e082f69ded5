package storage_test

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reprise-backup/reprise/storage"
)

func TestOpenPathsAndFileURLs(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	t.Chdir(dir)
	abs := filepath.Join(dir, "repo")
	for _, loc := range []string{
		abs,
		"repo",
		"./repo",
		"file://" + filepath.ToSlash(abs),
		"file://localhost" + filepath.ToSlash(abs),
		"file:" + filepath.ToSlash(abs),
		"file:repo",
		"FILE://" + filepath.ToSlash(abs),
		"file://" + filepath.ToSlash(abs) + "?nosync=1",
	} {
		s, err := storage.Open(ctx, loc)
		if err != nil {
			t.Errorf("Open(%q): %v", loc, err)
			continue
		}
		fsys, ok := s.(*storage.FS)
		if !ok {
			t.Errorf("Open(%q) = %T, want *storage.FS", loc, s)
			continue
		}
		if fsys.Root() != abs {
			t.Errorf("Open(%q).Root() = %q, want %q", loc, fsys.Root(), abs)
		}
	}
	// A directory whose name looks like a scheme-less URL is a path.
	odd := filepath.Join(dir, "x:y")
	if s, err := storage.Open(ctx, odd); err != nil || s.(*storage.FS).Root() != odd {
		t.Errorf("Open(%q) = %v, %v", odd, s, err)
	}
	for _, bad := range []string{
		"",
		"file://server/share",
		"file://" + filepath.ToSlash(abs) + "?nosync=maybe",
		"file://" + filepath.ToSlash(abs) + "?colour=blue",
		"file://",
		"mem://x?y=1",
	} {
		if s, err := storage.Open(ctx, bad); err == nil {
			t.Errorf("Open(%q) = %T, want an error", bad, s)
		}
	}
	// A file where the repository should be.
	os.WriteFile(filepath.Join(dir, "plain"), []byte("x"), 0o600)
	if _, err := storage.Open(ctx, "plain"); err == nil {
		t.Error("Open of a regular file succeeded")
	}
}

func TestOpenMem(t *testing.T) {
	ctx := t.Context()
	a, err := storage.Open(ctx, "mem://shared-test")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := storage.Open(ctx, "mem://shared-test")
	c, _ := storage.Open(ctx, "mem://")
	d, _ := storage.Open(ctx, "mem://")
	if err := a.Put(ctx, "k", bytes.NewReader([]byte("v")), 1, nil); err != nil {
		t.Fatal(err)
	}
	a.Close() // does not drop the data
	if got, err := storage.ReadAll(ctx, b, "k"); err != nil || string(got) != "v" {
		t.Fatalf("same name: ReadAll = %q, %v", got, err)
	}
	for _, s := range []storage.Storage{c, d} {
		if _, err := s.Stat(ctx, "k"); err == nil {
			t.Fatal("mem:// is not fresh")
		}
	}
	if c == d {
		t.Fatal("two mem:// opens share a store")
	}
	if _, ok := a.(*storage.Mem); !ok {
		t.Fatalf("Open(mem://) = %T", a)
	}
}

func TestOpenUnknownScheme(t *testing.T) {
	_, err := storage.Open(t.Context(), "s3://user:secret@bucket/prefix?key=hunter2")
	if err == nil {
		t.Fatal("Open(s3://...) succeeded without the driver")
	}
	msg := err.Error()
	for _, want := range []string{`"s3"`, "file", "mem", `import _ "github.com/reprise-backup/reprise/storage/s3store"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	for _, secret := range []string{"secret", "hunter2"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error %q leaks credentials", msg)
		}
	}
	_, err = storage.Open(t.Context(), "ftp2://host/x")
	if err == nil || !strings.Contains(err.Error(), "blank import") {
		t.Errorf("Open(ftp2://) = %v, want an error hinting at a blank import", err)
	}
}

func TestRegister(t *testing.T) {
	var got *url.URL
	storage.Register("regtest+x", func(ctx context.Context, u *url.URL) (storage.Storage, error) {
		got = u
		return storage.NewMem(), nil
	})
	if _, err := storage.Open(t.Context(), "RegTest+X://bucket/p/q?region=r"); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Scheme != "regtest+x" || got.Host != "bucket" || got.Path != "/p/q" || got.Query().Get("region") != "r" {
		t.Fatalf("opener got %#v", got)
	}
	schemes := strings.Join(storage.Schemes(), ",")
	if !strings.Contains(schemes, "file") || !strings.Contains(schemes, "mem") || !strings.Contains(schemes, "regtest+x") {
		t.Fatalf("Schemes() = %s", schemes)
	}
	open := func(context.Context, *url.URL) (storage.Storage, error) { return nil, nil }
	for name, fn := range map[string]func(){
		"duplicate":  func() { storage.Register("regtest+x", open) },
		"file":       func() { storage.Register("file", open) },
		"upper case": func() { storage.Register("Regtest", open) },
		"empty":      func() { storage.Register("", open) },
		"bad char":   func() { storage.Register("a_b", open) },
		"nil opener": func() { storage.Register("regtest-nil", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register %s did not panic", name)
				}
			}()
			fn()
		}()
	}
}

func TestOpenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := storage.Open(ctx, "mem://"); err == nil {
		t.Fatal("Open with a cancelled context succeeded")
	}
}
