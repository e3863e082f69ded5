package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// dataset describes the sample data made by makeDataset.
type dataset struct {
	bytes                     int64
	dumps, blobs, small, dirs int
	dumpPaths, smallPaths     []string // relative to the dataset root
}

func (d *dataset) String() string {
	return fmt.Sprintf("%s, %s (one stored twice), %s, %s, 1 symlink",
		plural(int64(d.dumps), "SQL dump"), plural(int64(d.blobs), "encrypted blob"),
		plural(int64(d.small), "small file"), plural(int64(d.dirs), "dir"))
}

// makeDataset writes about size bytes of sample data under dir, always
// the same for a given size: 45% SQL dumps of 4 MiB (compressible), 40%
// random files of 1 to 8 MiB (incompressible, like encrypted archives),
// one of them twice (deduplicated within a backup), and the rest, at
// least 15%, as small source-like files of 1 to 32 KiB in nested
// directories, plus a symlink and an empty directory.
func makeDataset(dir string, size int64) (*dataset, error) {
	rng := rand.New(rand.NewPCG(2024, 6))
	ds := &dataset{}
	write := func(rel string, data []byte) error {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		ds.bytes += int64(len(data))
		return os.WriteFile(p, data, 0o644)
	}

	for left := size * 45 / 100; left > 0; left -= 4 << 20 {
		rel := fmt.Sprintf("dumps/db-%d.sql", ds.dumps)
		if err := write(rel, sqlDump(rng, int(min(left, 4<<20)))); err != nil {
			return nil, err
		}
		ds.dumps++
		ds.dumpPaths = append(ds.dumpPaths, rel)
	}
	if err := os.Symlink(fmt.Sprintf("db-%d.sql", ds.dumps-1), filepath.Join(dir, "dumps", "latest.sql")); err != nil {
		return nil, err
	}

	// Blobs of 1 to 8 MiB (smaller for small datasets); the first is
	// also stored a second time, within the same budget.
	budget := size * 40 / 100
	maxBlob := min(8<<20, budget/4)
	var first []byte
	for left := budget; left > 0; {
		n := min(maxBlob/8+rng.Int64N(maxBlob*7/8), left)
		data := randomBytes(rng, int(n))
		name := fmt.Sprintf("blobs/archive-%02d.tar.zst.enc", ds.blobs)
		if first == nil {
			first = data
			name = "blobs/archive-00.tar.zst.enc"
			if err := write("blobs/copy-of-archive-00.tar.zst.enc", data); err != nil {
				return nil, err
			}
			ds.blobs++
			left -= n
		}
		if err := write(name, data); err != nil {
			return nil, err
		}
		ds.blobs++
		left -= n
	}

	for i := 0; ds.bytes < size; i++ {
		rel := fmt.Sprintf("src/pkg%02d/sub%d/file%03d.go", rng.IntN(24), rng.IntN(3), i)
		n := min(int64(1<<10+rng.IntN(31<<10)), size-ds.bytes)
		if err := write(rel, sourceText(rng, int(n))); err != nil {
			return nil, err
		}
		ds.small++
		ds.smallPaths = append(ds.smallPaths, rel)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp", "empty"), 0o700); err != nil {
		return nil, err
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			ds.dirs++
		}
		return err
	})
	return ds, err
}

// editDataset changes the dataset the way a day of work would: a few
// scattered small edits in place, a line appended, a file added and one
// deleted. It returns a description of the edits.
func editDataset(dir string, ds *dataset) (string, error) {
	// Three small edits, same length, spread over one dump.
	edited := ds.dumpPaths[len(ds.dumpPaths)/2]
	f, err := os.OpenFile(filepath.Join(dir, filepath.FromSlash(edited)), os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return "", err
	}
	for _, at := range []int64{fi.Size() / 5, fi.Size() / 2, fi.Size() * 4 / 5} {
		if _, err := f.WriteAt([]byte("'edited'"), at); err != nil {
			f.Close()
			return "", err
		}
	}
	if err := f.Close(); err != nil {
		return "", err
	}

	appended := ds.dumpPaths[0]
	f, err = os.OpenFile(filepath.Join(dir, filepath.FromSlash(appended)), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return "", err
	}
	_, err = f.WriteString("INSERT INTO customers (id, name, city, balance, created) VALUES (999999, 'quickstart', 'paris', 0.00, '2025-01-01');\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}

	added := "notes/added-after-backup-1.txt"
	if err := os.MkdirAll(filepath.Join(dir, "notes"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(added)), []byte("A file that only the second snapshot holds.\n"), 0o600); err != nil {
		return "", err
	}

	deleted := ds.smallPaths[len(ds.smallPaths)/3]
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(deleted))); err != nil {
		return "", err
	}
	return fmt.Sprintf("3 small in-place edits in %s, a line appended to %s, added %s, deleted %s",
		edited, appended, added, deleted), nil
}

// sqlDump returns n bytes that look like a SQL dump.
func sqlDump(rng *rand.Rand, n int) []byte {
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"}
	cities := []string{"paris", "lyon", "berlin", "madrid", "rome", "oslo", "lisbon", "vienna"}
	b := make([]byte, 0, n+256)
	b = append(b, "-- dump of database shop\nBEGIN;\n"...)
	for id := int64(1); len(b) < n; id++ {
		b = append(b, "INSERT INTO customers (id, name, city, balance, created) VALUES ("...)
		b = strconv.AppendInt(b, id, 10)
		b = append(b, ", '"...)
		b = append(b, names[rng.IntN(len(names))]...)
		b = append(b, "', '"...)
		b = append(b, cities[rng.IntN(len(cities))]...)
		b = append(b, "', "...)
		b = strconv.AppendInt(b, int64(rng.IntN(100000)), 10)
		b = append(b, '.')
		b = strconv.AppendInt(b, int64(10+rng.IntN(90)), 10)
		b = append(b, ", '202"...)
		b = strconv.AppendInt(b, int64(rng.IntN(6)), 10)
		b = append(b, "-0"...)
		b = strconv.AppendInt(b, int64(1+rng.IntN(9)), 10)
		b = append(b, "-1"...)
		b = strconv.AppendInt(b, int64(rng.IntN(10)), 10)
		b = append(b, "');\n"...)
	}
	return b[:n]
}

// sourceText returns n bytes that look like source code.
func sourceText(rng *rand.Rand, n int) []byte {
	words := []string{"func", "return", "if", "err", "!=", "nil", "{", "}", "ctx", "x", ":=", "for", "range", "i", "+", "1", "(", ")", "\n\t", "\n"}
	var b strings.Builder
	b.WriteString("package main\n\n")
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	return []byte(b.String()[:n])
}

// randomBytes returns n incompressible bytes.
func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b[:n]
}

// entry is what a manifest records of one path.
type entry struct {
	mode   fs.FileMode
	mtime  int64 // files and directories; symlink times are not portable
	size   int64
	sum    [sha256.Size]byte
	target string
}

// manifest maps slash-separated paths relative to a root ("." for the
// root) to what they hold.
type manifest map[string]entry

// takeManifest records every path under root: type and permission bits,
// modification time, size and SHA-256 of files, target of symlinks.
func takeManifest(root string) (manifest, error) {
	m := manifest{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e := entry{mode: fi.Mode()}
		switch {
		case fi.Mode().IsRegular():
			e.mtime, e.size = fi.ModTime().UnixNano(), fi.Size()
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			h.Sum(e.sum[:0])
		case fi.IsDir():
			e.mtime = fi.ModTime().UnixNano()
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		m[filepath.ToSlash(rel)] = e
		return nil
	})
	return m, err
}

// diff lists how got differs from m, at most 20 lines.
func (m manifest) diff(got manifest) []string {
	var out []string
	for _, p := range slices.Sorted(keys(m, got)) {
		want, inWant := m[p]
		have, inGot := got[p]
		switch {
		case !inGot:
			out = append(out, p+": missing")
		case !inWant:
			out = append(out, p+": not in the dataset")
		case want.mode != have.mode:
			out = append(out, fmt.Sprintf("%s: mode %v, want %v", p, have.mode, want.mode))
		case want.size != have.size || want.sum != have.sum:
			out = append(out, fmt.Sprintf("%s: contents differ (%d bytes, want %d)", p, have.size, want.size))
		case want.target != have.target:
			out = append(out, fmt.Sprintf("%s: links to %q, want %q", p, have.target, want.target))
		case want.mtime != have.mtime:
			out = append(out, fmt.Sprintf("%s: modification time differs", p))
		}
		if len(out) == 20 {
			break
		}
	}
	return out
}

// keys iterates over the union of the manifests' paths.
func keys(a, b manifest) iter.Seq[string] {
	return func(yield func(string) bool) {
		for k := range a {
			if !yield(k) {
				return
			}
		}
		for k := range b {
			if _, dup := a[k]; !dup && !yield(k) {
				return
			}
		}
	}
}
