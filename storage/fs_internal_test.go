package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/reprise-backup/reprise/internal/directio"
)

func TestMapFSError(t *testing.T) {
	pe := func(errno syscall.Errno) error { return &fs.PathError{Op: "open", Path: "/x", Err: errno} }
	cases := []struct {
		err      error
		sentinel error // nil: none
		text     string
	}{
		{pe(syscall.ENOENT), ErrNotExist, ""},
		{pe(syscall.ENOTDIR), ErrNotExist, ""},
		{pe(syscall.EEXIST), ErrExist, ""},
		{pe(syscall.EACCES), ErrPermission, ""},
		{pe(syscall.EPERM), ErrPermission, ""},
		{pe(syscall.EROFS), ErrPermission, ""},
		{pe(syscall.ENOSPC), nil, "full"},
		{pe(syscall.EDQUOT), nil, "quota"},
		{pe(syscall.EIO), nil, ""},
	}
	all := []error{ErrNotExist, ErrExist, ErrPermission, ErrTransient, ErrInvalidKey, ErrInvalidRange}
	for _, c := range cases {
		got := mapFSError("put", "k", c.err)
		if !errors.Is(got, c.err) {
			t.Errorf("%v: original error lost from %v", c.err, got)
		}
		for _, s := range all {
			if errors.Is(got, s) != (s == c.sentinel) {
				t.Errorf("%v: errors.Is(%v, %v) = %v", c.err, got, s, !(s == c.sentinel))
			}
		}
		if !strings.Contains(got.Error(), c.text) {
			t.Errorf("%v: message %q lacks %q", c.err, got, c.text)
		}
	}
	// Put maps path collisions to a clear error, not ErrNotExist.
	got := putError("a/b", pe(syscall.ENOTDIR))
	if errors.Is(got, ErrNotExist) || !errors.Is(got, errCollision) {
		t.Errorf("putError(ENOTDIR) = %v", got)
	}
}

func TestValidPrefix(t *testing.T) {
	for p, want := range map[string]bool{
		"": true, "a": true, "a/": true, "a/b": true, "a-": true, "a.": true, "a/b.": true,
		"/": false, "/a": false, "a//": false, "A": false, "a/.": false, ".": false, "..": false,
		"../": false, "é": false, strings.Repeat("a", 1024): true, strings.Repeat("a", 1025): false,
		strings.Repeat("a/", 512): false, // 1024 characters ending with a slash
	} {
		if got := ValidPrefix(p); got != want {
			t.Errorf("ValidPrefix(%.20q) = %v, want %v", p, got, want)
		}
	}
}

// Objects of a megabyte or more are written with O_DIRECT where the
// filesystem allows it, the unaligned tail through the cache: whatever
// the size, the object reads back whole, direct or buffered.
func TestFSDirectWrites(t *testing.T) {
	ctx := context.Background()
	for _, buffered := range []bool{false, true} {
		f, err := NewFS(t.TempDir(), &FSOptions{Buffered: buffered})
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{directAtLeast - 1, directAtLeast, 4 << 20, 3<<20 + 123, 5*copyChunk + directio.Align + 1} {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i*7 + i>>12)
			}
			key := fmt.Sprintf("p/%d", size)
			if err := f.Put(ctx, key, bytes.NewReader(data), int64(size), &PutOptions{IfNotExist: true}); err != nil {
				t.Fatalf("buffered=%v size %d: %v", buffered, size, err)
			}
			got, err := os.ReadFile(f.path(key))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("buffered=%v size %d: read back %d bytes (err %v), differ=%v", buffered, size, len(got), err, !bytes.Equal(got, data))
			}
		}
	}
	// Whether this machine's temporary directory takes O_DIRECT decides
	// which path ran; say so.
	tmp, err := os.CreateTemp(t.TempDir(), "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	t.Logf("O_DIRECT on the test directory: %v", setDirect(tmp, true))
}
