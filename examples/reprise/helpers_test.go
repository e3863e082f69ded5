package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// treeStats counts what writeTree made, as backup counts it (the root is
// a directory).
type treeStats struct {
	files, dirs, links, bytes int64
}

// writeTree writes a random tree of about n entries under dir: files from
// empty to maxSize bytes (random or text), several permission modes, deep
// directories, empty directories, and relative, absolute and dangling
// symlinks, with random modification times on files and directories.
func writeTree(t testing.TB, dir string, rng *rand.Rand, n, maxSize int) treeStats {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	st := treeStats{dirs: 1}
	dirs := []string{dir}
	randTime := func() time.Time {
		return time.Unix(1500000000+rng.Int64N(3e8), rng.Int64N(1e9))
	}
	for i := range n {
		parent := dirs[rng.IntN(len(dirs))]
		switch k := rng.IntN(10); {
		case k < 2:
			d := filepath.Join(parent, fmt.Sprintf("d%03d", i))
			levels := []string{d}
			if rng.IntN(3) == 0 {
				levels = append(levels, filepath.Join(d, "deeper"), filepath.Join(d, "deeper", "still"))
			}
			for _, l := range levels {
				must(os.Mkdir(l, 0o755))
				must(os.Chmod(l, []fs.FileMode{0o755, 0o700, 0o750}[rng.IntN(3)]))
				dirs = append(dirs, l)
				st.dirs++
			}
		case k < 3:
			target := []string{fmt.Sprintf("f%03d", rng.IntN(i+1)), "../elsewhere", "/etc/hostname", "no such file"}[rng.IntN(4)]
			must(os.Symlink(target, filepath.Join(parent, fmt.Sprintf("l%03d", i))))
			st.links++
		default:
			var size int
			switch rng.IntN(6) {
			case 0:
				size = 0
			case 1:
				size = 1
			case 2:
				size = rng.IntN(maxSize + 1)
			default:
				size = rng.IntN(8 << 10)
			}
			var data []byte
			if rng.IntN(2) == 0 {
				data = randBytes(rng, size)
			} else {
				data = textBytes(rng, size)
			}
			p := filepath.Join(parent, fmt.Sprintf("f%03d", i))
			must(os.WriteFile(p, data, 0o644))
			must(os.Chmod(p, []fs.FileMode{0o644, 0o600, 0o755, 0o444}[rng.IntN(4)]))
			mt := randTime()
			must(os.Chtimes(p, mt, mt))
			st.files++
			st.bytes += int64(size)
		}
	}
	// Directory times last, deepest first: creating entries changes them.
	slices.SortFunc(dirs, func(a, b string) int {
		return strings.Count(b, string(filepath.Separator)) - strings.Count(a, string(filepath.Separator))
	})
	for _, d := range dirs {
		mt := randTime()
		must(os.Chtimes(d, mt, mt))
	}
	return st
}

// randBytes returns n pseudo-random (incompressible) bytes.
func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b[:n]
}

// textBytes returns n bytes of SQL-dump-like text.
func textBytes(rng *rand.Rand, n int) []byte {
	var b bytes.Buffer
	words := []string{"INSERT", "INTO", "customers", "VALUES", "(", ")", "'paris'", "'lyon'", "NULL", "42", "2021-03-10", ",", ";\n"}
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
		if rng.IntN(8) == 0 {
			fmt.Fprintf(&b, "%d", rng.Uint32())
		}
	}
	return b.Bytes()[:n]
}

// compareTrees fails the test unless the trees under a and b hold the
// same paths, types, contents, permission bits, symlink targets, and
// modification times (of files, directories, the root included, and
// symlinks).
func compareTrees(t testing.TB, a, b string) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		seen[rel] = true
		ai, err := os.Lstat(p)
		if err != nil {
			return err
		}
		q := filepath.Join(b, rel)
		bi, err := os.Lstat(q)
		if err != nil {
			t.Errorf("%s: missing from the restore: %v", rel, err)
			return nil
		}
		if ai.Mode() != bi.Mode() {
			t.Errorf("%s: mode %v, restored %v", rel, ai.Mode(), bi.Mode())
			return nil
		}
		if !ai.ModTime().Equal(bi.ModTime()) {
			t.Errorf("%s: mtime %v, restored %v", rel, ai.ModTime(), bi.ModTime())
		}
		switch {
		case ai.Mode().IsRegular():
			ad, err1 := os.ReadFile(p)
			bd, err2 := os.ReadFile(q)
			if err1 != nil || err2 != nil || !bytes.Equal(ad, bd) {
				t.Errorf("%s: contents differ (%d vs %d bytes; %v, %v)", rel, len(ad), len(bd), err1, err2)
			}
		case ai.Mode()&fs.ModeSymlink != 0:
			at, _ := os.Readlink(p)
			bt, _ := os.Readlink(q)
			if at != bt {
				t.Errorf("%s: link to %q, restored to %q", rel, at, bt)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(b, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(b, p)
		if !seen[rel] {
			t.Errorf("%s: restored but not in the original", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// listDir describes every entry under root (hidden ones included), to
// tell whether anything was written.
func listDir(t testing.TB, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		m[rel] = fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// object is a stored object of a filesystem repository.
type object struct {
	key  string // storage key: the slash-separated path under the repository
	path string
	size int64
}

// objects lists a filesystem repository's data objects of one kind, of
// any tenant: "p" for packs (t/HANDLE/p/XX/ID), "i" for indexes, "s" for
// snapshots. Temporary files of writes in progress are left out. It may
// run while other processes write.
func objects(t testing.TB, repo, kind string) []object {
	t.Helper()
	var out []object
	err := filepath.WalkDir(filepath.Join(repo, "t"), func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // not created yet, or a temporary file gone
		}
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		rel, _ := filepath.Rel(repo, p)
		key := filepath.ToSlash(rel)
		if parts := strings.Split(key, "/"); len(parts) < 4 || parts[2] != kind {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		out = append(out, object{key: key, path: p, size: fi.Size()})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
