package storage

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"testing"
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
