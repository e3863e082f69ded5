package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// threeSites returns three local sites in three failure domains, as
// --repo flags (file URLs with nosync=1: their '=' also exercises the
// NAME:DOMAIN=URL parsing), and their directories.
func threeSites(t *testing.T) (flags []string, dirs map[string]string) {
	t.Helper()
	base := t.TempDir()
	dirs = map[string]string{}
	for _, s := range []struct{ name, domain string }{{"sbg", "strasbourg"}, {"rbx", "roubaix"}, {"gra", "gravelines"}} {
		dirs[s.name] = filepath.Join(base, s.name)
		flags = append(flags, "--repo", siteFlag(s.name, s.domain, dirs[s.name]))
	}
	return flags, dirs
}

func siteFlag(name, domain, dir string) string {
	return fmt.Sprintf("%s:%s=file://%s?nosync=1", name, domain, filepath.ToSlash(dir))
}

func with(base []string, more ...string) []string {
	return append(slices.Clone(base), more...)
}

// msBackup makes a repository on sites and backs a tree up into it.
func msBackup(t *testing.T, sites []string, seed uint64) (src string, b backupJSON) {
	t.Helper()
	mustCLI(t, nil, with([]string{"init", "--kdf-cost=low", "--pack-size", "1MiB"}, sites...)...)
	src = filepath.Join(t.TempDir(), "src")
	writeTree(t, src, rand.New(rand.NewPCG(seed, 41)), 60, 1<<20)
	b = backupJSONOf(t, mustCLI(t, nil, with([]string{"backup", "--tenant", "acme", "--json", src}, sites...)...))
	if b.UnderReplicated != 0 {
		t.Errorf("backup with every site up: %d objects under-replicated", b.UnderReplicated)
	}
	return src, b
}

func restoreCompare(t *testing.T, sites []string, src string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	mustCLI(t, nil, with([]string{"restore", "--tenant", "acme", "latest", "--target", out}, sites...)...)
	compareTrees(t, src, out)
}

func repairJSONOf(t *testing.T, r cliResult) repairJSON {
	t.Helper()
	var j repairJSON
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		t.Fatalf("repair --json: %v\n%v", err, r)
	}
	return j
}

// TestMultiSiteDestroyed: a site burns (its directory is deleted). Every
// snapshot restores from the other two; check names the site; repair
// copies everything back; the repaired site alone then restores.
func TestMultiSiteDestroyed(t *testing.T) {
	t.Parallel()
	sites, dirs := threeSites(t)
	src, _ := msBackup(t, sites, 1)
	if err := os.RemoveAll(dirs["sbg"]); err != nil {
		t.Fatal(err)
	}
	restoreCompare(t, sites, src)

	r := runCLI(t, testPassword, nil, with([]string{"check", "--read-data=50"}, sites...)...)
	if r.code != 1 || !regexp.MustCompile(`(?m)^problem: site sbg: t/\S+: copy missing`).MatchString(r.stdout) ||
		regexp.MustCompile(`(?m)^problem: site (rbx|gra):`).MatchString(r.stdout) ||
		!strings.Contains(r.stdout, "site rbx (roubaix): every copy verified") {
		t.Errorf("check of a burnt site: %v", r)
	}

	r = mustCLI(t, nil, with([]string{"repair"}, sites...)...)
	copies := regexp.MustCompile(`(?m)^copied \S+ on site sbg from site (rbx|gra) \(missing\)$`).FindAllString(r.stdout, -1)
	if len(copies) == 0 || regexp.MustCompile(`(?m)on site (rbx|gra) `).MatchString(r.stdout) || !strings.Contains(r.stdout, "copies fixed (sbg ") {
		t.Errorf("repair after the fire:\n%v", r)
	}
	t.Logf("repair: %d copies to sbg; %s", len(copies), lastLine(r.stdout))
	again := repairJSONOf(t, mustCLI(t, nil, with([]string{"repair", "--json"}, sites...)...))
	if len(again.Fixed) != 0 || len(again.Removed) != 0 || len(again.Unrepairable) != 0 || again.Verified == 0 {
		t.Errorf("second repair changed something: %+v", again)
	}
	if r := mustCLI(t, nil, with([]string{"check", "--read-data"}, sites...)...); !strings.Contains(r.stdout, "site sbg (strasbourg): every copy verified") {
		t.Errorf("check after repair: %v", r)
	}
	// The rebuilt site alone holds the whole repository.
	restoreCompare(t, []string{"--repo", dirs["sbg"]}, src)
}

// TestMultiSiteCorrupt: a site flips bytes in a third of its packs.
// Restores are exact, check names the site and the objects, repair
// replaces exactly those copies.
func TestMultiSiteCorrupt(t *testing.T) {
	t.Parallel()
	sites, dirs := threeSites(t)
	src, _ := msBackup(t, sites, 2)
	packs := objects(t, dirs["rbx"], "p")
	slices.SortFunc(packs, func(a, b object) int { return strings.Compare(a.key, b.key) })
	var damaged []string
	for i, p := range packs {
		if i%3 != 0 {
			continue
		}
		b, err := os.ReadFile(p.path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x10
		if err := os.WriteFile(p.path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		damaged = append(damaged, p.key)
	}
	t.Logf("flipped a byte in %d of the %d packs of site rbx", len(damaged), len(packs))
	restoreCompare(t, sites, src)

	r := runCLI(t, testPassword, nil, with([]string{"check", "--read-data"}, sites...)...)
	if r.code != 1 {
		t.Errorf("check of a corrupting site exits %d, want 1", r.code)
	}
	for _, k := range damaged {
		if !regexp.MustCompile(`(?m)^problem: site rbx: ` + regexp.QuoteMeta(k) + `: `).MatchString(r.stdout) {
			t.Errorf("check does not name the damaged copy %s on rbx", k)
		}
	}
	// Only rbx's damaged copies are at fault. (The tenant-level part of
	// check --read-data reads one copy of each pack, from whichever site
	// answers first, without falling back on the others: when that is a
	// damaged copy it is reported as a tenant problem too — a library
	// limitation the command annotates.)
	for _, m := range regexp.MustCompile(`(?m)^problem: (.*)$`).FindAllStringSubmatch(r.stdout, -1) {
		line := m[1]
		switch {
		case strings.HasPrefix(line, "site rbx: "):
		case strings.HasPrefix(line, `tenant "acme": object `) && strings.Contains(line, "only site(s) rbx hold bad copies") &&
			slices.ContainsFunc(damaged, func(k string) bool { return strings.Contains(line, "object "+k+": ") }):
			t.Logf("tenant-level report of a bad copy: %s", line)
		default:
			t.Errorf("unexpected problem: %s", line)
		}
	}
	if t.Failed() {
		t.Logf("%v", r)
	}

	j := repairJSONOf(t, mustCLI(t, nil, with([]string{"repair", "--json"}, sites...)...))
	var fixed []string
	for _, f := range j.Fixed {
		if f.Site != "rbx" || f.From == "rbx" || f.Reason == "missing" {
			t.Errorf("unexpected fix %+v", f)
		}
		fixed = append(fixed, f.Object)
	}
	slices.Sort(fixed)
	if !slices.Equal(fixed, damaged) || len(j.Unrepairable) != 0 {
		t.Errorf("repair fixed %v (unrepairable %v), want exactly %v", fixed, j.Unrepairable, damaged)
	}
	mustCLI(t, nil, with([]string{"check", "--read-data"}, sites...)...)
}

// TestMultiSiteDown: a site is down during the backup (its path lies
// under a regular file, so every operation on it fails). Under a write
// quorum of 2 the backup succeeds and says it is under-replicated; under
// the default quorum (all) it fails naming the site; once the site is
// back, repair copies everything to it.
func TestMultiSiteDown(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	blocker := filepath.Join(base, "blocker")
	if err := os.WriteFile(blocker, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{"sbg": filepath.Join(base, "sbg"), "rbx": filepath.Join(base, "rbx"), "gra": filepath.Join(blocker, "gra")}
	sites := []string{"--repo", siteFlag("sbg", "strasbourg", dirs["sbg"]), "--repo", siteFlag("rbx", "roubaix", dirs["rbx"]),
		"--repo", siteFlag("gra", "gravelines", dirs["gra"])}
	q2 := with(sites, "--write-quorum", "2")

	r := mustCLI(t, nil, with([]string{"init", "--kdf-cost=low", "--pack-size", "1MiB"}, q2...)...)
	if !strings.Contains(r.stderr, "site gra (gravelines) cannot be opened, treated as down") {
		t.Errorf("init with a site down: %v", r)
	}
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, rand.New(rand.NewPCG(3, 41)), 50, 1<<20)
	r = mustCLI(t, nil, with([]string{"backup", "--tenant", "acme", "--json", src}, q2...)...)
	b := backupJSONOf(t, r)
	if b.UnderReplicated == 0 || !strings.Contains(r.stderr, fmt.Sprintf("reprise: warning: under-replicated: %d objects missed a site; run reprise repair", b.UnderReplicated)) {
		t.Errorf("backup with a site down: under_replicated %d\n%v", b.UnderReplicated, r)
	}
	r = runCLI(t, testPassword, nil, with([]string{"backup", "--tenant", "acme", src}, sites...)...)
	if r.code != 1 || !strings.Contains(r.stderr, `site "gra"`) || !strings.Contains(r.stderr, "quorum") {
		t.Errorf("backup under quorum all with a site down: %v", r)
	}
	// Any command now hints at the missed writes; reads work without gra.
	r = mustCLI(t, nil, with([]string{"snapshots", "--tenant", "acme"}, q2...)...)
	if !strings.Contains(r.stderr, "gra missed writes") || !strings.Contains(r.stderr, "reprise repair") {
		t.Errorf("no hint to repair: %v", r)
	}
	restoreCompare(t, q2, src)

	// The site comes back, empty.
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dirs["gra"], 0o700); err != nil {
		t.Fatal(err)
	}
	j := repairJSONOf(t, mustCLI(t, nil, with([]string{"repair", "--json"}, sites...)...))
	for _, f := range j.Fixed {
		if f.Site != "gra" {
			t.Errorf("repair touched site %s: %+v", f.Site, f)
		}
	}
	if len(j.Fixed) == 0 || len(j.Unrepairable) != 0 {
		t.Errorf("repair: %d fixed, unrepairable %v", len(j.Fixed), j.Unrepairable)
	}
	// Everything is on gra now, and the journals are gone.
	if got, want := regularFiles(t, dirs["gra"]), regularFiles(t, dirs["sbg"]); !slices.Equal(got, want) {
		t.Errorf("after repair, gra holds %d files, sbg %d:\n%v\n%v", len(got), len(want), got, want)
	}
	if left := regularFiles(t, filepath.Join(dirs["sbg"], "multisite")); len(left) != 0 {
		t.Errorf("journals left after repair: %v", left)
	}
	r = mustCLI(t, nil, with([]string{"check", "--read-data"}, sites...)...)
	if strings.Contains(r.stderr, "missed writes") {
		t.Errorf("hint after repair: %v", r)
	}
	restoreCompare(t, []string{"--repo", dirs["gra"]}, src)
}

// TestMultiSiteConfig: sites sharing a failure domain are refused unless
// --allow-single-domain; plain URLs are sites of their own.
func TestMultiSiteConfig(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	same := []string{"--repo", siteFlag("a", "building1", a), "--repo", siteFlag("b", "building1", b)}
	r := runCLI(t, testPassword, nil, with([]string{"init", "--kdf-cost=low"}, same...)...)
	if r.code == 0 || !strings.Contains(r.stderr, `failure domain "building1"`) || !strings.Contains(r.stderr, "--allow-single-domain") {
		t.Errorf("sites in one failure domain: %v", r)
	}
	if _, err := os.Stat(a); err == nil {
		t.Error("a refused configuration created a site")
	}
	mustCLI(t, nil, with([]string{"init", "--kdf-cost=low", "--allow-single-domain"}, same...)...)
	mustCLI(t, nil, with([]string{"tenants", "--allow-single-domain"}, same...)...)

	c, d := filepath.Join(base, "c"), filepath.Join(base, "d")
	r = mustCLI(t, nil, "init", "--kdf-cost=low", "--repo", c, "--repo", d)
	if !strings.Contains(r.stdout, "sites site1 (site1), site2 (site2)") {
		t.Errorf("plain URLs as sites: %v", r)
	}
	for _, args := range [][]string{
		{"tenants", "--repo", c, "--repo", d, "--write-quorum", "3"},
		{"tenants", "--repo", c, "--write-quorum", "2"},
		{"tenants", "--repo", "x:y=nope://z", "--repo", d},
		{"tenants", "--repo", "UPPER:y=" + c, "--repo", d},
	} {
		if r := runCLI(t, testPassword, nil, args...); r.code != exitUsage {
			t.Errorf("want a usage error: %v", r)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
