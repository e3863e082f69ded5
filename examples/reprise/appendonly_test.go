package main

import (
	"crypto/sha256"
	"encoding/json"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// repoFiles returns every file of a local repository with a hash of its
// bytes.
func repoFiles(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = sha256.Sum256(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func leaseFiles(files map[string][32]byte) int {
	n := 0
	for p := range files {
		if strings.Contains(filepath.ToSlash(p), "/l/") {
			n++
		}
	}
	return n
}

// TestAppendOnly: with --append-only, backups, listings, restores and
// checks work and the commands that delete are refused before they touch
// anything; a prune without it cleans up after the append-only backups.
func TestAppendOnly(t *testing.T) {
	repo := initRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, rand.New(rand.NewPCG(11, 12)), 30, 64<<10)
	for range 2 {
		mustCLI(t, nil, "backup", "--append-only", "--repo", repo, "--tenant", "acme", src, "--json")
	}
	mustCLI(t, nil, "snapshots", "--append-only", "--repo", repo, "--tenant", "acme")
	dst := filepath.Join(t.TempDir(), "dst")
	mustCLI(t, nil, "restore", "--append-only", "--repo", repo, "--tenant", "acme", "latest", "--target", dst)
	compareTrees(t, src, dst)
	mustCLI(t, nil, "check", "--append-only", "--repo", repo, "--read-data")

	before := repoFiles(t, repo)
	for _, args := range [][]string{
		{"forget", "--repo", repo, "--tenant", "acme", "--keep-last", "1"},
		{"forget", "--repo", repo, "--tenant", "acme", "--keep-last", "1", "--prune"},
		{"prune", "--repo", repo, "--grace", "1ns"},
		{"tenant", "erase", "--repo", repo, "acme"},
		{"tenant", "roll", "--repo", repo, "--tenant", "acme"},
		{"key", "rotate", "--repo", repo, "--kdf-cost=low"},
	} {
		args = append(args, "--append-only")
		r := runCLI(t, testPassword, nil, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "append-only") {
			t.Errorf("want exit 1 and a message naming append-only: %v", r)
		}
	}
	mustCLI(t, nil, "forget", "--append-only", "--repo", repo, "--tenant", "acme", "--keep-last", "1", "--dry-run")
	if after := repoFiles(t, repo); !maps.Equal(before, after) {
		t.Fatalf("refused commands changed the repository: %d files before, %d after", len(before), len(after))
	}
	if n := leaseFiles(before); n < 4 {
		t.Fatalf("%d lease objects after two append-only backups, want at least 4 (a refresh and a release each)", n)
	}

	// Elsewhere, with deleting allowed.
	mustCLI(t, nil, "forget", "--repo", repo, "--tenant", "acme", "--keep-last", "1")
	r := mustCLI(t, nil, "prune", "--repo", repo, "--grace", "1ns", "--json")
	var rep struct{ LeasesRemoved int }
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.LeasesRemoved != leaseFiles(before) {
		t.Fatalf("prune: %v, %v; want %d lease objects removed", r, err, leaseFiles(before))
	}
	if n := leaseFiles(repoFiles(t, repo)); n != 0 {
		t.Fatalf("%d lease objects left after prune", n)
	}
	dst2 := filepath.Join(t.TempDir(), "dst2")
	mustCLI(t, nil, "restore", "--repo", repo, "--tenant", "acme", "latest", "--target", dst2)
	compareTrees(t, src, dst2)

	if h := mustCLI(t, nil, "help", "backup"); !strings.Contains(h.stdout, "--append-only") {
		t.Errorf("backup's help does not mention --append-only:\n%s", h.stdout)
	}
}
