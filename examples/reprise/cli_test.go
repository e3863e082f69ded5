package main

// These tests build the reprise binary once and drive it as a subprocess,
// the way users and scripts do.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// cliBin is the path of the reprise binary built by TestMain.
var cliBin string

const testPassword = "correct horse battery staple"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "reprise-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Readable by all: TestBackupSkipped may run it as another user.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cliBin = filepath.Join(dir, "reprise")
	if runtime.GOOS == "windows" {
		cliBin += ".exe"
	}
	start := time.Now()
	// Without the cloud drivers, which the tests do not use, the binary
	// links several times faster (TestCloudDrivers checks that they
	// register in the default build).
	out, err := exec.Command("go", "build", "-tags", "nocloud", "-o", cliBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the reprise command: %v\n%s", err, out)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "built %s in %v\n", cliBin, time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}

// cliResult is the outcome of one run of the binary.
type cliResult struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("reprise %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// cliCommand prepares a run of the binary with REPRISE_PASSWORD set to
// password (unset when empty), and REPRISE_KEY_URL unset.
func cliCommand(t *testing.T, password string, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, cliBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, passwordEnv+"=") && !strings.HasPrefix(kv, keyURLEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if password != "" {
		cmd.Env = append(cmd.Env, passwordEnv+"="+password)
	}
	return cmd
}

// runCLI runs the binary to completion.
func runCLI(t *testing.T, password string, stdin io.Reader, args ...string) cliResult {
	t.Helper()
	cmd := cliCommand(t, password, args...)
	cmd.Stdin = stdin
	return runCmd(t, cmd, args)
}

// runCmd runs cmd, made by cliCommand with args, to completion.
func runCmd(t *testing.T, cmd *exec.Cmd, args []string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running reprise %q: %v", args, err)
	}
	return res
}

// mustCLI runs the binary with the test passphrase and fails the test
// unless it exits 0.
func mustCLI(t *testing.T, stdin io.Reader, args ...string) cliResult {
	t.Helper()
	r := runCLI(t, testPassword, stdin, args...)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	return r
}

// initRepo creates a repository with cheap key derivation and 1 MiB packs.
func initRepo(t *testing.T) string {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "repo")
	mustCLI(t, nil, "init", "--repo", repo, "--kdf-cost=low", "--pack-size", "1MiB")
	return repo
}

func backupJSONOf(t *testing.T, r cliResult) backupJSON {
	t.Helper()
	var b backupJSON
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil {
		t.Fatalf("backup --json output does not parse: %v\n%v", err, r)
	}
	return b
}

func TestHelpAndUsageErrors(t *testing.T) {
	r := runCLI(t, "", nil, "help")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	for _, c := range commands {
		if !strings.Contains(r.stdout, "\n  "+c.name+" ") {
			t.Errorf("help does not list %q:\n%s", c.name, r.stdout)
		}
	}
	if r := runCLI(t, "", nil, "backup", "-h"); r.code != 0 || !strings.Contains(r.stderr, "--tenant") {
		t.Errorf("backup -h: %v", r)
	}
	if r := runCLI(t, "", nil, "help", "restore"); r.code != 0 || !strings.Contains(r.stdout, "--target") {
		t.Errorf("help restore: %v", r)
	}
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"backup", "--repo", "x", "somedir"}, // no tenant
		{"backup", "--repo", "x", "--tenant", "a"},                      // no path
		{"backup", "--repo", "x", "--tenant", "a", "--stdin"},           // no name
		{"backup", "--repo", "x", "--tenant", "a", "--nope", "somedir"}, // unknown flag
		{"restore", "--repo", "x", "--tenant", "a", "latest"},           // no target
		{"restore", "--repo", "x", "--tenant", "a", "latest", "--target", "d", "--stdout"},
		{"restore", "--repo", "x", "--tenant", "a", "latest", "--stdout", "--resume"},
		{"init", "--repo", "x", "--kdf-cost", "silly"},
		{"init", "--repo", "x", "--pack-size", "12XB"},
		{"init", "--repo", "x", "--codec", "lz4"},
		{"init", "--repo", "x", "--codec="},
		{"check", "--repo", "x", "--read-data", "50"}, // the percentage needs --read-data=50
		{"check", "--repo", "x", "--read-data=150"},
		{"key", "--repo", "x"},
		{"tenant", "roll", "--repo", "x"}, // no tenant
		{"drill", "--repo", "x", "--tenant", "a", "one", "two"},
		{"health", "--repo", "x", "--stale-after", "soon"},
		{"tenants", "--repo", "x", "--repo", "y", "--write-quorum", "3"},
	} {
		r := runCLI(t, testPassword, nil, args...)
		if r.code != exitUsage || r.stdout != "" {
			t.Errorf("want a usage error (exit 2, nothing on stdout): %v", r)
		}
	}
	if _, err := os.Stat("x"); err == nil {
		t.Error("a usage error created the repository directory x")
	}
}

// TestInitCodec creates a repository with --codec=s2, backs a tree up into
// it, restores it and checks it; an unknown codec is a usage error that
// names the codecs.
func TestInitCodec(t *testing.T) {
	t.Parallel()
	if r := runCLI(t, "", nil, "help", "init"); r.code != 0 || !strings.Contains(r.stdout, "--codec") || !strings.Contains(r.stdout, "s2") {
		t.Errorf("help init does not show --codec: %v", r)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	if r := runCLI(t, testPassword, nil, "init", "--repo", bad, "--kdf-cost=low", "--codec=lz4"); r.code != exitUsage ||
		!strings.Contains(r.stderr, `unknown codec "lz4": want "zstd" or "s2"`) {
		t.Errorf("init --codec=lz4: %v", r)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("init --codec=lz4 created the repository directory")
	}
	for _, tc := range []struct {
		args    []string
		version string
		codec   string
	}{
		{nil, `"version": 1,`, ""},
		{[]string{"--codec", "zstd"}, `"version": 1,`, ""},
		{[]string{"--codec=s2"}, `"version": 2,`, `"codec": "s2"`},
	} {
		repo := filepath.Join(t.TempDir(), "repo")
		r := mustCLI(t, nil, append([]string{"init", "--repo", repo, "--kdf-cost=low", "--pack-size", "1MiB"}, tc.args...)...)
		name := "zstd"
		if tc.codec != "" {
			name = "s2"
		}
		if !strings.Contains(r.stdout, "compressed with "+name) {
			t.Errorf("init %v does not name the codec: %v", tc.args, r)
		}
		cfg, err := os.ReadFile(filepath.Join(repo, "config"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(cfg), tc.version) || (tc.codec == "") == strings.Contains(string(cfg), `"codec"`) ||
			tc.codec != "" && !strings.Contains(string(cfg), tc.codec) {
			t.Errorf("init %v wrote the config\n%s", tc.args, cfg)
		}
		if tc.codec == "" {
			continue
		}
		src := filepath.Join(t.TempDir(), "src")
		writeTree(t, src, rand.New(rand.NewPCG(8, 8)), 30, 1<<20)
		b := backupJSONOf(t, mustCLI(t, nil, "backup", "--repo", repo, "--tenant", "acme", "--json", src))
		if b.BytesAdded == 0 || b.BytesAdded >= b.BytesRead {
			t.Errorf("backup into an s2 repository: %+v", b)
		}
		target := filepath.Join(t.TempDir(), "out")
		mustCLI(t, nil, "restore", "--repo", repo, "--tenant", "acme", "latest", "--target", target)
		compareTrees(t, src, target)
		mustCLI(t, nil, "check", "--repo", repo, "--read-data")
	}
}

// TestRoundTrip backs up a tree and a stream through the CLI and restores
// both.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	repo := initRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	rng := rand.New(rand.NewPCG(1, 2))
	st := writeTree(t, src, rng, 80, 2<<20)

	// Flags after the positional argument work too.
	r := mustCLI(t, nil, "backup", src, "--repo", repo, "--tenant", "acme", "--json", "--tag", "first")
	b1 := backupJSONOf(t, r)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(b1.Snapshot) {
		t.Errorf("snapshot %q is not a full ID", b1.Snapshot)
	}
	if b1.Files != st.files || b1.Dirs != st.dirs || b1.Symlinks != st.links || b1.BytesRead != st.bytes {
		t.Errorf("backup counted %d files, %d dirs, %d symlinks, %d bytes; the tree has %d, %d, %d, %d",
			b1.Files, b1.Dirs, b1.Symlinks, b1.BytesRead, st.files, st.dirs, st.links, st.bytes)
	}
	if b1.Chunks == 0 || b1.NewChunks == 0 || b1.NewChunks > b1.Chunks+10 || b1.BytesAdded == 0 || b1.Seconds <= 0 || b1.Skipped == nil || len(b1.Skipped) != 0 {
		t.Errorf("implausible backup result: %+v", b1)
	}
	if r.stderr != "" {
		t.Errorf("backup --json wrote to stderr: %q", r.stderr)
	}

	// The same tree again: everything is deduplicated.
	b2 := backupJSONOf(t, mustCLI(t, nil, "backup", "--repo", repo, "--tenant=acme", "--json", src))
	if b2.NewChunks != 0 || b2.BytesAdded != 0 || b2.BytesRead != st.bytes {
		t.Errorf("second backup of an unchanged tree stored %d chunks, %d bytes (read %d)", b2.NewChunks, b2.BytesAdded, b2.BytesRead)
	}

	var snaps []snapshotJSON
	r = mustCLI(t, nil, "snapshots", "--repo", repo, "--tenant", "acme", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &snaps); err != nil {
		t.Fatalf("snapshots --json: %v\n%v", err, r)
	}
	if len(snaps) != 2 || snaps[0].ID != b1.Snapshot || snaps[1].ID != b2.Snapshot {
		t.Fatalf("snapshots: %+v; want %s then %s", snaps, b1.Snapshot, b2.Snapshot)
	}
	var raw []map[string]any
	json.Unmarshal([]byte(r.stdout), &raw)
	for i, s := range raw {
		ts, _ := s["time"].(string)
		if _, err := time.Parse(time.RFC3339, ts); err != nil {
			t.Errorf("snapshot %d: time %q is not RFC 3339: %v", i, ts, err)
		}
	}
	if s := snaps[0]; s.Kind != "dir" || s.Source != src || !slices.Equal(s.Tags, []string{"first"}) || s.Stats.Files != st.files || snaps[1].Time.Before(s.Time) {
		t.Errorf("snapshot fields: %+v", snaps)
	}
	if r := mustCLI(t, nil, "snapshots", "--repo", repo, "--tenant", "acme"); !strings.Contains(r.stdout, b1.ShortID) {
		t.Errorf("snapshots does not show %s:\n%s", b1.ShortID, r.stdout)
	}

	out := filepath.Join(t.TempDir(), "out")
	mustCLI(t, nil, "restore", "--repo", repo, "--tenant", "acme", "latest", "--target", out)
	compareTrees(t, src, out)
	// Interrupted: a file gone, another damaged. --resume puts them back.
	var restored []string
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			restored = append(restored, p)
		}
		return err
	})
	if len(restored) < 2 {
		t.Fatalf("%d files restored", len(restored))
	}
	os.Remove(restored[0])
	if err := os.WriteFile(restored[1], []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, nil, "restore", "--repo", repo, "--tenant", "acme", "latest", "--target", out, "--resume")
	compareTrees(t, src, out)
	// By unique prefix, into a directory that exists.
	out1 := t.TempDir()
	mustCLI(t, nil, "restore", "--repo", repo, "--tenant", "acme", b1.Snapshot[:10], "--target="+out1)
	compareTrees(t, src, out1)

	data := textBytes(rng, 3<<20+12345)
	bs := backupJSONOf(t, mustCLI(t, bytes.NewReader(data), "backup", "--repo", repo, "--tenant", "acme", "--stdin", "--name", "dump.sql", "--json"))
	if bs.Kind != "stream" || bs.Source != "dump.sql" || bs.BytesRead != int64(len(data)) || bs.Files != 1 {
		t.Errorf("stream backup: %+v", bs)
	}
	r = mustCLI(t, nil, "restore", "--repo", repo, "--tenant", "acme", "latest", "--stdout")
	if r.stdout != string(data) {
		t.Errorf("restore --stdout gave %d bytes, want the %d backed up", len(r.stdout), len(data))
	}
	// A stream restored into a directory becomes a file of its name.
	out2 := t.TempDir()
	mustCLI(t, nil, "restore", "--repo", repo, "--tenant", "acme", bs.Snapshot, "--target", out2)
	if got, err := os.ReadFile(filepath.Join(out2, "dump.sql")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("stream restored to a directory: %v", err)
	}
	// A directory snapshot cannot go to stdout.
	if r := runCLI(t, testPassword, nil, "restore", "--repo", repo, "--tenant", "acme", b1.ShortID, "--stdout"); r.code != 1 || r.stdout != "" {
		t.Errorf("restore --stdout of a dir snapshot: %v", r)
	}

	if r := mustCLI(t, nil, "check", "--repo", repo); !strings.Contains(r.stdout, "no problems") {
		t.Errorf("check: %v", r)
	}
	if r := mustCLI(t, nil, "check", "--repo", repo, "--read-data"); !strings.Contains(r.stdout, "no problems") {
		t.Errorf("check --read-data: %v", r)
	}
	if r := mustCLI(t, nil, "tenants", "--repo", repo, "--json"); strings.Join(strings.Fields(r.stdout), "") != `["acme"]` {
		t.Errorf("tenants --json: %v", r)
	}
	// Unknown tenants and snapshots are errors, and create nothing.
	if r := runCLI(t, testPassword, nil, "snapshots", "--repo", repo, "--tenant", "nobody"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("snapshots of an unknown tenant: %v", r)
	}
	if r := runCLI(t, testPassword, nil, "restore", "--repo", repo, "--tenant", "acme", "ffffffffff", "--target", out2); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("restore of an unknown snapshot: %v", r)
	}
	if r := runCLI(t, testPassword, nil, "backup", "--repo", repo, "--tenant", "typo", filepath.Join(src, "no such dir")); r.code != 1 {
		t.Errorf("backup of a missing directory: %v", r)
	}
	if r := mustCLI(t, nil, "tenants", "--repo", repo); strings.TrimSpace(r.stdout) != "acme" {
		t.Errorf("tenants after failed lookups: %v", r)
	}
}

// TestWrongPassphrase checks that a wrong or missing passphrase fails
// clearly and writes nothing.
func TestWrongPassphrase(t *testing.T) {
	t.Parallel()
	repo := initRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, rand.New(rand.NewPCG(3, 4)), 20, 256<<10)
	mustCLI(t, nil, "backup", "--repo", repo, "--tenant", "acme", src)
	before := listDir(t, repo)

	target := filepath.Join(t.TempDir(), "out")
	for _, args := range [][]string{
		{"backup", "--repo", repo, "--tenant", "acme", src},
		{"backup", "--repo", repo, "--tenant", "newcomer", "--json", src},
		{"backup", "--repo", repo, "--tenant", "acme", "--stdin", "--name", "x"},
		{"snapshots", "--repo", repo, "--tenant", "acme"},
		{"restore", "--repo", repo, "--tenant", "acme", "latest", "--target", target},
		{"check", "--repo", repo},
		{"tenants", "--repo", repo},
	} {
		r := runCLI(t, "not the passphrase", strings.NewReader("data"), args...)
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "wrong passphrase: no key slot opens with REPRISE_PASSWORD") {
			t.Errorf("want exit 1 and a clear message: %v", r)
		}
	}
	for _, args := range [][]string{
		{"backup", "--repo", repo, "--tenant", "acme", src},
		{"restore", "--repo", repo, "--tenant", "acme", "latest", "--target", target},
	} {
		r := runCLI(t, "", nil, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "REPRISE_PASSWORD is not set") {
			t.Errorf("without a passphrase: %v", r)
		}
	}
	if r := runCLI(t, testPassword, nil, "init", "--repo", repo, "--kdf-cost=low"); r.code != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("init over a repository: %v", r)
	}
	if after := listDir(t, repo); !maps.Equal(before, after) {
		t.Errorf("failed commands changed the repository:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := os.Stat(target); err == nil {
		t.Error("restore with a wrong passphrase created its target")
	}
}

// TestKilledBackup kills a backup with SIGKILL half way and checks that the
// repository stays sound, that the next backup completes and reuses what
// the killed one made durable, and that it restores exactly.
//
// The backup reads a stream the test feeds through a pipe and never
// closes, so the kill lands mid-backup whatever the machine's speed.
func TestKilledBackup(t *testing.T) {
	t.Parallel()
	size := 64 << 20
	if testing.Short() {
		size = 24 << 20
	}
	repo := initRepo(t)
	data := randBytes(rand.New(rand.NewPCG(5, 6)), size)

	cmd := cliCommand(t, testPassword, "backup", "--repo", repo, "--tenant", "acme", "--stdin", "--name", "big.bin", "--json")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fed := size * 3 / 4
	written := make(chan error, 1)
	go func() {
		_, err := stdin.Write(data[:fed])
		written <- err
	}()
	// Once the write returns the child has read the prefix; wait for an
	// index object too, so that some packs are durable and indexed.
	kill := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	deadline := time.After(90 * time.Second)
	for wrote := false; !wrote || len(objects(t, repo, "i")) == 0; {
		select {
		case err := <-written:
			if err != nil {
				kill()
				t.Fatalf("feeding the backup: %v\n%s", err, stderr.String())
			}
			wrote = true
		case <-deadline:
			kill()
			t.Fatalf("no index object after feeding %d MiB\n%s", fed>>20, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup at all
		t.Fatal(err)
	}
	err = cmd.Wait()
	if cmd.ProcessState.Exited() {
		t.Fatalf("the backup exited by itself (%v) instead of being killed\n%s", err, stderr.String())
	}
	stdin.Close()
	packs, indexes := objects(t, repo, "p"), objects(t, repo, "i")
	var packBytes int64
	for _, p := range packs {
		packBytes += p.size
	}
	t.Logf("killed the backup after feeding %d MiB of %d: it left %d packs (%s) and %d index objects",
		fed>>20, size>>20, len(packs), formatBytes(packBytes), len(indexes))

	r := mustCLI(t, nil, "check", "--repo", repo)
	t.Logf("check after the kill: %s", strings.ReplaceAll(strings.TrimSpace(r.stdout), "\n", "; "))
	if r := mustCLI(t, nil, "snapshots", "--repo", repo, "--tenant", "acme", "--json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("the killed backup left a snapshot: %s", r.stdout)
	}

	b := backupJSONOf(t, mustCLI(t, bytes.NewReader(data), "backup", "--repo", repo, "--tenant", "acme", "--stdin", "--name", "big.bin", "--json"))
	t.Logf("second backup: read %s, added %s (%d of %d chunks new) in %.2f s",
		formatBytes(b.BytesRead), formatBytes(b.BytesAdded), b.NewChunks, b.Chunks, b.Seconds)
	// Every index object names 8 packs, each shipped once it held at
	// least the 1 MiB pack size: the second backup must not store those
	// chunks again (the data is random: no compression, no duplicates).
	reused := int64(len(indexes)) * 8 << 20
	slack := int64(size)/100 + 1<<20
	if b.BytesRead != int64(size) {
		t.Errorf("second backup read %d bytes, want %d", b.BytesRead, size)
	}
	if b.BytesAdded > int64(size)-reused+slack {
		t.Errorf("second backup added %s; with %d index objects left by the killed one it should add at most %s",
			formatBytes(b.BytesAdded), len(indexes), formatBytes(int64(size)-reused+slack))
	}
	r = mustCLI(t, nil, "restore", "--repo", repo, "--tenant", "acme", "latest", "--stdout")
	if r.stdout != string(data) {
		t.Fatalf("restored %d bytes that differ from the %d backed up", len(r.stdout), len(data))
	}
	mustCLI(t, nil, "check", "--repo", repo, "--read-data")
}

// TestConcurrentBackups runs four backup processes into one repository
// at once: two tenants alone, and two processes for a third tenant (new,
// so both race to create it) whose trees share files.
func TestConcurrentBackups(t *testing.T) {
	t.Parallel()
	repo := initRepo(t)
	base := t.TempDir()
	type job struct {
		tenant, dir string
		res         backupJSON
	}
	jobs := []*job{
		{tenant: "alpha", dir: filepath.Join(base, "a")},
		{tenant: "beta", dir: filepath.Join(base, "b")},
		{tenant: "gamma", dir: filepath.Join(base, "g1")},
		{tenant: "gamma", dir: filepath.Join(base, "g2")},
	}
	for i, j := range jobs {
		writeTree(t, filepath.Join(j.dir, "own"), rand.New(rand.NewPCG(7, uint64(i))), 40, 3<<20)
		if j.tenant == "gamma" {
			// The same files (contents, modes and times) in both trees.
			writeTree(t, filepath.Join(j.dir, "common"), rand.New(rand.NewPCG(8, 8)), 40, 3<<20)
		}
	}
	cmds := make([]*exec.Cmd, len(jobs))
	outs := make([]bytes.Buffer, len(jobs))
	errs := make([]bytes.Buffer, len(jobs))
	for i, j := range jobs {
		cmds[i] = cliCommand(t, testPassword, "backup", "--repo", repo, "--tenant", j.tenant, "--json", j.dir)
		cmds[i].Stdout, cmds[i].Stderr = &outs[i], &errs[i]
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("backup of %s for %s: %v\n%s", jobs[i].dir, jobs[i].tenant, err, errs[i].String())
			continue
		}
		jobs[i].res = backupJSONOf(t, cliResult{stdout: outs[i].String()})
		t.Logf("%s %s: read %s, added %s", jobs[i].tenant, filepath.Base(jobs[i].dir),
			formatBytes(jobs[i].res.BytesRead), formatBytes(jobs[i].res.BytesAdded))
	}
	if t.Failed() {
		t.FailNow()
	}
	if r := mustCLI(t, nil, "tenants", "--repo", repo); strings.Fields(r.stdout) == nil ||
		!slices.Equal(strings.Fields(r.stdout), []string{"alpha", "beta", "gamma"}) {
		t.Errorf("tenants: %v", r)
	}
	var gamma []snapshotJSON
	json.Unmarshal([]byte(mustCLI(t, nil, "snapshots", "--repo", repo, "--tenant", "gamma", "--json").stdout), &gamma)
	if len(gamma) != 2 {
		t.Errorf("gamma has %d snapshots, want 2", len(gamma))
	}
	for i, j := range jobs {
		out := filepath.Join(base, fmt.Sprintf("restored%d", i))
		mustCLI(t, nil, "restore", "--repo", repo, "--tenant", j.tenant, j.res.Snapshot, "--target", out)
		compareTrees(t, j.dir, out)
	}
	mustCLI(t, nil, "check", "--repo", repo, "--read-data")
}

// TestCorruptPack flips one byte of a pack: check --read-data must name
// the pack, and a restore must fail only the files that use it.
func TestCorruptPack(t *testing.T) {
	t.Parallel()
	repo := initRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	files := map[string][]byte{}
	for i := range 10 {
		name := fmt.Sprintf("f%02d.bin", i)
		files[name] = randBytes(rng, 1<<20+rng.IntN(1<<20))
		if err := os.WriteFile(filepath.Join(src, name), files[name], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustCLI(t, nil, "backup", "--repo", repo, "--tenant", "acme", src)
	if r := mustCLI(t, nil, "check", "--repo", repo, "--read-data"); !strings.Contains(r.stdout, "no problems") {
		t.Fatalf("check before the damage: %v", r)
	}

	// Tree chunks get packs of their own, small ones here: the largest
	// pack holds file data. Flip a byte in its middle, inside a chunk.
	packs := objects(t, repo, "p")
	slices.SortFunc(packs, func(a, b object) int { return cmp.Compare(b.size, a.size) })
	victim := packs[0]
	b, err := os.ReadFile(victim.path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(victim.path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("flipped a byte of pack %s (%s)", victim.key, formatBytes(victim.size))

	r := runCLI(t, testPassword, nil, "check", "--repo", repo, "--read-data")
	if r.code != 1 {
		t.Errorf("check --read-data of a damaged pack exits %d, want 1\n%v", r.code, r)
	}
	if !regexp.MustCompile(`(?m)^problem: tenant "acme": object ` + regexp.QuoteMeta(victim.key) + `: `).MatchString(r.stdout) {
		t.Errorf("check --read-data does not name the damaged pack %s:\n%v", victim.key, r)
	}
	t.Logf("check --read-data:\n%s%s", r.stdout, r.stderr)

	out := filepath.Join(t.TempDir(), "out")
	r = runCLI(t, testPassword, nil, "restore", "--repo", repo, "--tenant", "acme", "latest", "--target", out)
	if r.code != 1 {
		t.Fatalf("restore from a damaged pack exits %d, want 1\n%v", r.code, r)
	}
	failed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^reprise: failed: (f\d\d\.bin): `).FindAllStringSubmatch(r.stderr, -1) {
		failed[m[1]] = true
	}
	if len(failed) == 0 || len(failed) == len(files) {
		t.Fatalf("restore failed %d of %d files, want some but not all:\n%v", len(failed), len(files), r)
	}
	t.Logf("restore failed %d file(s) and restored the %d others", len(failed), len(files)-len(failed))
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(out, name))
		switch {
		case failed[name] && err == nil:
			t.Errorf("%s failed, yet is in the target", name)
		case !failed[name] && (err != nil || !bytes.Equal(got, data)):
			t.Errorf("%s should be restored intact: %v", name, err)
		}
	}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("restore left %s behind", e.Name())
		}
	}
}

// TestInterrupt sends SIGINT to a backup waiting on a stalled pipe: it
// must stop promptly, say so, exit 130, and leave a sound repository.
func TestInterrupt(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT to send")
	}
	t.Parallel()
	repo := initRepo(t)
	cmd := cliCommand(t, testPassword, "backup", "--repo", repo, "--tenant", "acme", "--stdin", "--name", "stalled")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Once the write returns the child is running and reading; then the
	// pipe stalls.
	if _, err := stdin.Write(randBytes(rand.New(rand.NewPCG(11, 12)), 4<<20)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	t.Logf("stopped %v after SIGINT", time.Since(start).Round(time.Millisecond))
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted || !strings.Contains(stderr.String(), "reprise: interrupted") || stdout.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 130 and \"reprise: interrupted\"", code, stdout.String(), stderr.String())
	}
	mustCLI(t, nil, "check", "--repo", repo)
	if r := mustCLI(t, nil, "snapshots", "--repo", repo, "--tenant", "acme", "--json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("an interrupted backup left a snapshot: %s", r.stdout)
	}
}
