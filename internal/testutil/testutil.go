// Package testutil holds helpers shared by Reprise's tests: cheap key
// derivation parameters, repository set-up, random trees and tree
// comparison.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/storage"
)

// Passphrase is the passphrase test repositories use.
const Passphrase = "correct horse battery staple"

// FastArgon2 returns argon2id parameters cheap enough for tests. Never use
// them for real repositories.
func FastArgon2() *crypto.Argon2Params {
	return &crypto.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}
}

// SmallChunks are chunk parameters small enough that small test files
// still make many chunks.
var SmallChunks = chunk.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}

// InitRepo creates a repository on st with test parameters: 1 MiB packs,
// so that small test data still makes several packs.
func InitRepo(t testing.TB, st storage.Storage, p chunk.Params) *reprise.Repository {
	t.Helper()
	return InitRepoPacks(t, st, p, 1<<20)
}

// InitRepoPacks is InitRepo with another pack size; benchmarks use
// reprise.DefaultPackSize, to measure what users get.
func InitRepoPacks(t testing.TB, st storage.Storage, p chunk.Params, packSize int) *reprise.Repository {
	t.Helper()
	r, err := reprise.Init(context.Background(), st, reprise.Credentials{Passphrase: []byte(Passphrase)},
		&reprise.InitOptions{Chunking: p, PackSize: packSize, Argon2: FastArgon2()})
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// RandBytes returns n pseudo-random bytes from rng.
func RandBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// TextBytes returns n bytes of pseudo-random SQL-dump-like text.
func TextBytes(rng *rand.Rand, n int) []byte {
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

// WriteRandomTree writes a random tree under dir: empty files, 1-byte
// files, larger files, deep nesting and symlinks. It returns the number of
// regular files.
func WriteRandomTree(t testing.TB, dir string, rng *rand.Rand, files int, maxSize int) int {
	t.Helper()
	dirs := []string{dir}
	n := 0
	for i := 0; i < files; i++ {
		parent := dirs[rng.IntN(len(dirs))]
		switch k := rng.IntN(10); {
		case k < 2: // a new directory, sometimes deep
			d := filepath.Join(parent, fmt.Sprintf("d%03d", i))
			if rng.IntN(4) == 0 {
				d = filepath.Join(d, "deeper", "and", "deeper")
			}
			must(t, os.MkdirAll(d, 0o755))
			dirs = append(dirs, d)
		case k < 3 && i > 0: // a symlink, relative or dangling
			target := fmt.Sprintf("f%03d", rng.IntN(i))
			must(t, os.Symlink(target, filepath.Join(parent, fmt.Sprintf("l%03d", i))))
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
				size = rng.IntN(4096)
			}
			var data []byte
			if rng.IntN(2) == 0 {
				data = RandBytes(rng, size)
			} else {
				data = TextBytes(rng, size)
			}
			p := filepath.Join(parent, fmt.Sprintf("f%03d", i))
			must(t, os.WriteFile(p, data, 0o644))
			if rng.IntN(5) == 0 {
				must(t, os.Chmod(p, 0o600))
			}
			mt := time.Unix(1600000000+int64(rng.IntN(1e8)), int64(rng.IntN(1e9)))
			must(t, os.Chtimes(p, mt, mt))
			n++
		}
	}
	return n
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// CompareTrees fails the test unless the trees under a and b hold the same
// paths, types, contents, permission bits, symlink targets and (for files
// and symlinks) modification times.
func CompareTrees(t testing.TB, a, b string) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		seen[rel] = true
		q := filepath.Join(b, rel)
		ai, err := os.Lstat(p)
		if err != nil {
			return err
		}
		bi, err := os.Lstat(q)
		if err != nil {
			t.Errorf("%s: missing from restore: %v", rel, err)
			return nil
		}
		if ai.Mode() != bi.Mode() {
			t.Errorf("%s: mode %v, restored %v", rel, ai.Mode(), bi.Mode())
		}
		switch {
		case ai.Mode().IsRegular():
			ad, _ := os.ReadFile(p)
			bd, _ := os.ReadFile(q)
			if !bytes.Equal(ad, bd) {
				t.Errorf("%s: contents differ (%d vs %d bytes)", rel, len(ad), len(bd))
			}
			if !ai.ModTime().Equal(bi.ModTime()) {
				t.Errorf("%s: mtime %v, restored %v", rel, ai.ModTime(), bi.ModTime())
			}
		case ai.Mode()&fs.ModeSymlink != 0:
			at, _ := os.Readlink(p)
			bt, _ := os.Readlink(q)
			if at != bt {
				t.Errorf("%s: link to %q, restored to %q", rel, at, bt)
			}
		case ai.IsDir() && rel != ".":
			if !ai.ModTime().Equal(bi.ModTime()) {
				t.Errorf("%s: dir mtime %v, restored %v", rel, ai.ModTime(), bi.ModTime())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(b, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(b, p)
		if !seen[rel] {
			t.Errorf("%s: restored but not in the original", rel)
		}
		return nil
	})
}

// WriteMix writes under dir a tree shaped like the 1 GiB mix of issue #7
// and bench/compare.sh, scaled to size bytes: 40% SQL-like text in 4
// files, 40% random bytes in 4 files (databases the application already
// encrypted), and 20% small files of 1 to 64 KiB, three quarters text, in
// 10 x 10 leaf directories. It returns the number of files and of bytes
// written. The text is TextBytes', which compresses about as well as the
// mix's dumps.
func WriteMix(t testing.TB, dir string, rng *rand.Rand, size int) (files int, bytes int64) {
	t.Helper()
	write := func(p string, data []byte) {
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, data, 0o644))
		files++
		bytes += int64(len(data))
	}
	for i := range 4 {
		write(filepath.Join(dir, "sql", fmt.Sprintf("dump%d.sql", i)), TextBytes(rng, size/10))
		write(filepath.Join(dir, "blobs", fmt.Sprintf("blob%d.bin", i)), RandBytes(rng, size/10))
	}
	for small := 0; small < size/5; {
		k := min(1<<10+rng.IntN(63<<10+1), size/5-small)
		data := RandBytes(rng, k)
		if rng.IntN(4) != 0 {
			data = TextBytes(rng, k)
		}
		write(filepath.Join(dir, "small", fmt.Sprintf("d%d", rng.IntN(10)), fmt.Sprintf("s%d", rng.IntN(10)), fmt.Sprintf("f%05d", files)), data)
		small += k
	}
	return files, bytes
}
