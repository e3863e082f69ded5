package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/storagetest"
)

func newFS(t testing.TB, opts *storage.FSOptions) *storage.FS {
	t.Helper()
	s, err := storage.NewFS(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestFSConformance runs the suite on the durable configuration. Its
// listing test writes fewer objects than the default, as every put costs
// two fsyncs; TestFSConformanceNoSync runs the full count.
func TestFSConformance(t *testing.T) {
	opts := &storagetest.Options{Objects: 600}
	if testing.Short() {
		opts.Objects = 200
	}
	storagetest.Run(t, func(t *testing.T) storage.Storage { return newFS(t, nil) }, opts)
}

func TestFSConformanceNoSync(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return newFS(t, &storage.FSOptions{NoSync: true})
	}, nil)
}

func BenchmarkFS(b *testing.B) {
	storagetest.Bench(b, func(b *testing.B) storage.Storage { return newFS(b, nil) })
}

func BenchmarkFSNoSync(b *testing.B) {
	storagetest.Bench(b, func(b *testing.B) storage.Storage { return newFS(b, &storage.FSOptions{NoSync: true}) })
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func keys(t *testing.T, s storage.Storage, prefix string) []string {
	t.Helper()
	var ks []string
	if err := s.List(t.Context(), prefix, func(i storage.Info) error { ks = append(ks, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestFSLayoutAndForeignFiles(t *testing.T) {
	s := newFS(t, nil)
	ctx := t.Context()
	if err := s.Put(ctx, "data/ab/abcdef", bytes.NewReader([]byte("x")), 1, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(s.Root(), "data", "ab", "abcdef"))
	if err != nil || string(b) != "x" {
		t.Fatalf("object file: %q, %v", b, err)
	}
	// Temp files of crashed writers, foreign files, odd entries: never listed.
	root := s.Root()
	writeFile(t, filepath.Join(root, "data", "ab", ".reprise-tmp-123"), []byte("partial"))
	writeFile(t, filepath.Join(root, "data", "ab", "README.TXT"), []byte("foreign"))
	writeFile(t, filepath.Join(root, ".DS_Store"), []byte("foreign"))
	writeFile(t, filepath.Join(root, ".hidden", "x"), []byte("foreign"))
	if err := os.Symlink(filepath.Join(root, "data"), filepath.Join(root, "loop")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "nowhere"), filepath.Join(root, "dangling")); err != nil {
		t.Fatal(err)
	}
	got := keys(t, s, "")
	want := []string{"data/ab/abcdef", "loop/ab/abcdef"} // symlinks are followed
	if !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	if _, err := s.Stat(ctx, "data"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat of a directory = %v, want ErrNotExist", err)
	}
	if err := s.Delete(ctx, "data/ab"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Delete of a directory = %v, want ErrNotExist", err)
	}
}

func TestFSSymlinkLoop(t *testing.T) {
	s := newFS(t, nil)
	if err := s.Put(t.Context(), "a/x", bytes.NewReader(nil), 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..", filepath.Join(s.Root(), "a", "up")); err != nil {
		t.Fatal(err)
	}
	n := len(keys(t, s, "")) // must terminate
	if n < 2 {
		t.Fatalf("listed %d keys through the loop, want several", n)
	}
}

func TestFSCleanTemp(t *testing.T) {
	s := newFS(t, nil)
	root := s.Root()
	if n, err := s.CleanTemp(time.Hour); n != 0 || err != nil {
		t.Fatalf("CleanTemp of an empty store = %d, %v", n, err)
	}
	if err := s.Put(t.Context(), "k/v", bytes.NewReader([]byte("v")), 1, nil); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(root, "k", ".reprise-tmp-old")
	fresh := filepath.Join(root, ".reprise-tmp-fresh")
	other := filepath.Join(root, "k", ".other")
	for _, p := range []string{old, fresh, other} {
		writeFile(t, p, []byte("partial"))
	}
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(other, past, past); err != nil {
		t.Fatal(err)
	}
	n, err := s.CleanTemp(time.Hour)
	if n != 1 || err != nil {
		t.Fatalf("CleanTemp = %d, %v; want 1, nil", n, err)
	}
	for p, want := range map[string]bool{old: false, fresh: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", p, err == nil, want)
		}
	}
	if ks := keys(t, s, ""); !slices.Equal(ks, []string{"k/v"}) {
		t.Fatalf("List = %q", ks)
	}
	// A store whose directory does not exist yet.
	s2, err := storage.NewFS(filepath.Join(t.TempDir(), "missing"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s2.CleanTemp(0); n != 0 || err != nil {
		t.Fatalf("CleanTemp of a missing directory = %d, %v", n, err)
	}
}

func TestFSNoTempLeftovers(t *testing.T) {
	s := newFS(t, nil)
	ctx := t.Context()
	b := []byte("abc")
	for range 3 {
		s.Put(ctx, "x/y", bytes.NewReader(b), 3, nil)
		s.Put(ctx, "x/y", bytes.NewReader(b), 3, &storage.PutOptions{IfNotExist: true})
		s.Put(ctx, "x/z", bytes.NewReader(b), 10, nil) // short reader: fails
	}
	n, err := s.CleanTemp(-time.Hour) // everything counts as stale
	if n != 0 || err != nil {
		t.Fatalf("temp files left behind: %d, %v", n, err)
	}
}

func TestFSNewFS(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, []byte("x"))
	if _, err := storage.NewFS(file, nil); err == nil {
		t.Fatal("NewFS on a regular file succeeded")
	}
	if _, err := storage.NewFS("", nil); err == nil {
		t.Fatal("NewFS(\"\") succeeded")
	}
	// A missing directory is created, with parents, by the first Put only.
	root := filepath.Join(dir, "a", "b", "repo")
	s, err := storage.NewFS(root, &storage.FSOptions{FileMode: 0o640, DirMode: 0o750})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("NewFS created its directory: %v", err)
	}
	ctx := t.Context()
	if ks := keys(t, s, ""); len(ks) != 0 {
		t.Fatalf("List of a missing directory = %q", ks)
	}
	if _, err := s.Stat(ctx, "k"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat in a missing directory = %v", err)
	}
	if err := s.Put(ctx, "d/k", bytes.NewReader([]byte("v")), 1, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, "d", "k"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("object mode %v, want 0640", fi.Mode().Perm())
	}
	if !filepath.IsAbs(s.Root()) {
		t.Errorf("Root() = %q is not absolute", s.Root())
	}
}

func TestFSCollision(t *testing.T) {
	s := newFS(t, nil)
	ctx := t.Context()
	put := func(key string, opts *storage.PutOptions) error {
		return s.Put(ctx, key, bytes.NewReader([]byte("v")), 1, opts)
	}
	if err := put("a", nil); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []*storage.PutOptions{nil, {IfNotExist: true}} {
		err := put("a/b", opts)
		if err == nil || errors.Is(err, storage.ErrNotExist) || !strings.Contains(err.Error(), "collides") {
			t.Errorf("Put(a/b) under the object a = %v, want a collision error", err)
		}
	}
	if err := put("c/d", nil); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []*storage.PutOptions{nil, {IfNotExist: true}} {
		err := put("c", opts)
		if err == nil || errors.Is(err, storage.ErrExist) || !strings.Contains(err.Error(), "collides") {
			t.Errorf("Put(c) over the directory c = %v, want a collision error", err)
		}
	}
	if ks := keys(t, s, ""); !slices.Equal(ks, []string{"a", "c/d"}) {
		t.Fatalf("List = %q", ks)
	}
}

func TestFSCreateOnlyAcrossInstances(t *testing.T) {
	// Two stores on one directory stand for two processes: the hard link
	// decides, not any in-process lock.
	dir := t.TempDir()
	var stores [4]*storage.FS
	for i := range stores {
		s, err := storage.NewFS(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = s
	}
	ctx := t.Context()
	for round := range 5 {
		key := fmt.Sprintf("locks/%d", round)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i, s := range stores {
			wg.Go(func() {
				b := []byte(fmt.Sprint(i))
				err := s.Put(ctx, key, bytes.NewReader(b), int64(len(b)), &storage.PutOptions{IfNotExist: true})
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, storage.ErrExist):
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d winners", round, wins.Load())
		}
	}
}

func TestFSReaderStopsOnCancel(t *testing.T) {
	s := newFS(t, nil)
	b := bytes.Repeat([]byte("x"), 1<<16)
	if err := s.Put(t.Context(), "k", bytes.NewReader(b), int64(len(b)), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	rc, err := s.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	p := make([]byte, 100)
	if _, err := rc.Read(p); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := rc.Read(p); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %v, want context.Canceled", err)
	}
}

func TestFSPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores permissions")
	}
	s := newFS(t, nil)
	ctx := t.Context()
	if err := s.Put(ctx, "ro/k", bytes.NewReader([]byte("v")), 1, nil); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Root(), "ro")
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if err := s.Put(ctx, "ro/k2", bytes.NewReader([]byte("v")), 1, nil); !errors.Is(err, storage.ErrPermission) {
		t.Fatalf("Put into a read-only directory = %v, want ErrPermission", err)
	}
}
