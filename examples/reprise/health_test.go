package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func healthOf(t *testing.T, r cliResult) healthJSON {
	t.Helper()
	var h healthJSON
	if err := json.Unmarshal([]byte(r.stdout), &h); err != nil {
		t.Fatalf("health --json: %v\n%v", err, r)
	}
	return h
}

// TestHealthAndDrill: health reports fresh, stale and never-backed-up
// sources with the right exit status; drill measures a restore and fails
// on a damaged pack.
func TestHealthAndDrill(t *testing.T) {
	t.Parallel()
	repo := initRepo(t)
	rng := rand.New(rand.NewPCG(51, 52))
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, rng, 40, 1<<20)
	mustCLI(t, nil, "backup", "--repo", repo, "--tenant", "alpha", src)
	mustCLI(t, bytes.NewReader(textBytes(rng, 200<<10)), "backup", "--repo", repo, "--tenant", "beta", "--stdin", "--name", "beta.sql")

	h := healthOf(t, mustCLI(t, nil, "health", "--repo", repo, "--json"))
	if !h.OK || len(h.Sources) != 2 || h.Time.IsZero() {
		t.Fatalf("health of fresh backups: %+v", h)
	}
	for _, s := range h.Sources {
		if s.State != "OK" || s.LastSuccess == nil || s.AgeSeconds == nil || *s.AgeSeconds < 0 || s.BytesRead == 0 ||
			len(s.Snapshot) != 64 || s.StaleAfterSeconds != 25*3600 || s.LastError != "" {
			t.Errorf("source %+v", s)
		}
	}
	if s := h.Sources[0]; s.Tenant != "alpha" || s.Source != src || h.Sources[1].Source != "beta.sql" {
		t.Errorf("sources: %+v", h.Sources)
	}

	r := runCLI(t, testPassword, nil, "health", "--repo", repo, "--stale-after", "1ns", "--json")
	h = healthOf(t, r)
	if r.code != 1 || h.OK || len(h.Sources) != 2 || h.Sources[0].State != "STALE" || h.Sources[1].State != "STALE" ||
		h.Sources[0].StaleAfterSeconds != 1e-9 || !strings.Contains(r.stderr, "2 STALE") {
		t.Errorf("health --stale-after 1ns: %+v\n%v", h, r)
	}

	// A tenant created without a backup (tenant roll creates it) is NEVER.
	if r := mustCLI(t, nil, "tenant", "roll", "--repo", repo, "--tenant", "gamma"); !strings.Contains(r.stdout, `created tenant "gamma"`) ||
		!strings.Contains(r.stdout, "key generation 2") {
		t.Errorf("tenant roll: %v", r)
	}
	r = runCLI(t, testPassword, nil, "health", "--repo", repo, "--json")
	h = healthOf(t, r)
	i := slices.IndexFunc(h.Sources, func(s sourceHealthJSON) bool { return s.Tenant == "gamma" })
	if r.code != 1 || h.OK || len(h.Sources) != 3 || i < 0 || h.Sources[i].State != "NEVER" || h.Sources[i].LastSuccess != nil ||
		!strings.Contains(r.stderr, "1 NEVER") {
		t.Errorf("health with a tenant never backed up: %+v\n%v", h, r)
	}
	r = runCLI(t, testPassword, nil, "health", "--repo", repo)
	if r.code != 1 || !regexp.MustCompile(`(?m)^gamma\s+-\s+NEVER\s+never`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^alpha\s+\S+\s+OK\s`).MatchString(r.stdout) {
		t.Errorf("health table: %v", r)
	}
	// Rolling an existing tenant's key keeps its data readable.
	mustCLI(t, nil, "tenant", "roll", "--repo", repo, "--tenant", "alpha")
	mustCLI(t, nil, "backup", "--repo", repo, "--tenant", "alpha", src)
	out := filepath.Join(t.TempDir(), "out")
	mustCLI(t, nil, "restore", "--repo", repo, "--tenant", "alpha", "latest", "--target", out)
	compareTrees(t, src, out)

	r = mustCLI(t, nil, "drill", "--repo", repo, "--tenant", "alpha")
	if !regexp.MustCompile(`drill of snapshot [0-9a-f]{8} .*: \d+ files, .* in .* \([0-9.]+ MB/s\)`).MatchString(r.stdout) ||
		!regexp.MustCompile(`stages .*fetch [0-9.]+ s .*decrypt [0-9.]+ s .*decompress [0-9.]+ s .*verify [0-9.]+ s`).MatchString(r.stdout) {
		t.Errorf("drill: %v", r)
	}
	var d drillJSON
	r = mustCLI(t, nil, "drill", "--repo", repo, "--tenant", "beta", "latest", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || d.Files != 1 || d.Bytes != 200<<10 || d.Seconds <= 0 || len(d.Stages) < 4 || len(d.Failed) != 0 {
		t.Errorf("drill --json: %+v (%v)\n%v", d, err, r)
	}
	if r := runCLI(t, testPassword, nil, "drill", "--repo", repo, "--tenant", "alpha", "--sample", "150"); r.code != exitUsage {
		t.Errorf("drill --sample 150: %v", r)
	}

	// Damage the large packs (file data; tree chunks have small packs of
	// their own): the drill fails, naming files.
	damaged := 0
	for _, p := range objects(t, repo, "p") {
		if p.size < 512<<10 {
			continue
		}
		b, err := os.ReadFile(p.path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x01
		if err := os.WriteFile(p.path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		damaged++
	}
	if damaged == 0 {
		t.Fatal("no data pack to damage")
	}
	r = runCLI(t, testPassword, nil, "drill", "--repo", repo, "--tenant", "alpha")
	if r.code != 1 || !strings.Contains(r.stderr, "reprise: failed: ") || !strings.Contains(r.stderr, "drill incomplete") {
		t.Errorf("drill of a damaged pack: %v", r)
	}
}
