//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestBackupSkipped backs up a tree holding a file the backup cannot
// read: the backup is saved without it, warns on stderr, still prints its
// JSON, and exits 3. Root reads every file, so as root the test runs the
// binary as the unprivileged user nobody.
func TestBackupSkipped(t *testing.T) {
	t.Parallel()
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	base, err := os.MkdirTemp("", "reprise-skipped-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o777); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(base, "src")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(src, 0o755))
	must(os.WriteFile(filepath.Join(src, "ok.txt"), []byte("fine"), 0o644))
	must(os.WriteFile(filepath.Join(src, "secret.txt"), []byte("keep out"), 0o644))
	must(os.Chmod(filepath.Join(src, "secret.txt"), 0))
	run := func(args ...string) cliResult {
		t.Helper()
		cmd := cliCommand(t, testPassword, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		return runCmd(t, cmd, args)
	}
	repo := filepath.Join(base, "repo")
	if r := run("init", "--repo", repo, "--kdf-cost=low"); r.code != 0 {
		t.Fatalf("%v", r)
	}
	r := run("backup", "--repo", repo, "--tenant", "acme", "--json", src)
	if r.code != exitPartial || !strings.Contains(r.stderr, "reprise: warning: skipped secret.txt: ") {
		t.Fatalf("want exit 3 and a warning naming secret.txt: %v", r)
	}
	b := backupJSONOf(t, r)
	if len(b.Skipped) != 1 || b.Skipped[0].Path != "secret.txt" || !strings.Contains(b.Skipped[0].Error, "permission denied") || b.Files != 1 {
		t.Errorf("skipped: %+v", b)
	}
	out := filepath.Join(base, "out")
	if r := run("restore", "--repo", repo, "--tenant", "acme", b.Snapshot, "--target", out); r.code != 0 {
		t.Fatalf("%v", r)
	}
	if got, err := os.ReadFile(filepath.Join(out, "ok.txt")); err != nil || string(got) != "fine" {
		t.Errorf("ok.txt: %q, %v", got, err)
	}
	if _, err := os.Lstat(filepath.Join(out, "secret.txt")); err == nil {
		t.Error("the unreadable file is in the restore")
	}
}
