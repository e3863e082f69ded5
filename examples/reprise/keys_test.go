package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gocloud.dev/secrets/localsecrets"
)

// runEnv runs the binary with exactly the credentials in env (KEY=VALUE
// strings), on top of the test's environment without REPRISE_PASSWORD and
// REPRISE_KEY_URL.
func runEnv(t *testing.T, env []string, stdin io.Reader, args ...string) cliResult {
	t.Helper()
	cmd := cliCommand(t, "", args...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = stdin
	return runCmd(t, cmd, args)
}

func mustEnv(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	r := runEnv(t, env, nil, args...)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	return r
}

// newKeyURL returns a base64key:// URL holding a fresh random key, in the
// URL-safe base64 localsecrets' URL opener decodes (base64.URLEncoding:
// the standard alphabet's + and / would break the URL's host).
func newKeyURL(t *testing.T) string {
	t.Helper()
	k, err := localsecrets.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	return "base64key://" + base64.URLEncoding.EncodeToString(k[:])
}

func keySlots(t *testing.T, env []string, repo string) []keySlotJSON {
	t.Helper()
	r := mustEnv(t, env, "key", "list", "--repo", repo, "--json")
	var slots []keySlotJSON
	if err := json.Unmarshal([]byte(r.stdout), &slots); err != nil {
		t.Fatalf("key list --json: %v\n%v", err, r)
	}
	return slots
}

// regularFiles lists the regular files under dir (none if it is gone).
func regularFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func subdirs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestKeys adds a KMS key slot (base64key://) to a passphrase repository,
// works with the key alone, rotates it, removes the passphrase, and
// crypto-shreds a tenant.
func TestKeys(t *testing.T) {
	t.Parallel()
	repo := initRepo(t)
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, rand.New(rand.NewPCG(31, 32)), 30, 256<<10)
	pass := []string{passwordEnv + "=" + testPassword}
	mustEnv(t, pass, "backup", "--repo", repo, "--tenant", "acme", src)

	keyURL := newKeyURL(t)
	kms := []string{keyURLEnv + "=" + keyURL}
	r := mustEnv(t, append(pass, "TEST_NEW_KEY="+keyURL), "key", "add", "--repo", repo, "--new-key-url-env", "TEST_NEW_KEY", "--label", "automation")
	if !strings.Contains(r.stdout, "added key slot") || strings.Contains(r.stdout+r.stderr, keyURL[12:]) {
		t.Errorf("key add: %v", r)
	}
	slots := keySlots(t, pass, repo)
	if len(slots) != 2 {
		t.Fatalf("key list shows %d slots, want 2: %+v", len(slots), slots)
	}
	var passSlot, kmsSlot keySlotJSON
	for _, s := range slots {
		switch s.Type {
		case "passphrase":
			passSlot = s
		case "keeper":
			kmsSlot = s
		}
	}
	if !passSlot.InUse || kmsSlot.InUse || kmsSlot.Label != "automation" || len(kmsSlot.ID) != 64 || kmsSlot.Created.IsZero() {
		t.Errorf("key list: %+v", slots)
	}

	// The key alone opens the repository: back up and restore with it.
	data := textBytes(rand.New(rand.NewPCG(33, 34)), 700<<10)
	cmd := cliCommand(t, "", "backup", "--repo", repo, "--tenant", "acme", "--stdin", "--name", "db.sql")
	cmd.Env = append(cmd.Env, kms...)
	cmd.Stdin = strings.NewReader(string(data))
	if r := runCmd(t, cmd, cmd.Args[1:]); r.code != 0 {
		t.Fatalf("backup with the key only: %v", r)
	}
	if r := mustEnv(t, kms, "restore", "--repo", repo, "--tenant", "acme", "latest", "--stdout"); r.stdout != string(data) {
		t.Errorf("restore with the key only gave %d bytes, want the %d backed up", len(r.stdout), len(data))
	}
	out := filepath.Join(t.TempDir(), "out")
	var snaps []snapshotJSON
	json.Unmarshal([]byte(mustEnv(t, kms, "snapshots", "--repo", repo, "--tenant", "acme", "--json").stdout), &snaps)
	if len(snaps) != 2 {
		t.Fatalf("snapshots: %+v", snaps)
	}
	mustEnv(t, kms, "restore", "--repo", repo, "--tenant", "acme", snaps[0].ID, "--target", out)
	compareTrees(t, src, out)

	// Rotate the key slot in use (the KMS one), with the same key.
	r = mustEnv(t, kms, "key", "rotate", "--repo", repo)
	if !strings.Contains(r.stdout, "rotated key slot "+kmsSlot.ID[:12]) {
		t.Errorf("key rotate: %v", r)
	}
	slots = keySlots(t, kms, repo)
	if len(slots) != 2 || slices.ContainsFunc(slots, func(s keySlotJSON) bool { return s.ID == kmsSlot.ID }) {
		t.Fatalf("after the rotation: %+v; want 2 slots, without %s", slots, kmsSlot.ID[:12])
	}
	// Remove the passphrase slot from the KMS session: the passphrase no
	// longer opens anything.
	mustEnv(t, kms, "key", "remove", "--repo", repo, passSlot.ID[:10])
	if slots = keySlots(t, kms, repo); len(slots) != 1 || slots[0].Type != "keeper" || !slots[0].InUse || slots[0].Label != "automation" {
		t.Errorf("after removing the passphrase slot: %+v", slots)
	}
	if r := runEnv(t, pass, nil, "snapshots", "--repo", repo, "--tenant", "acme"); r.code != 1 || !strings.Contains(r.stderr, "wrong passphrase") {
		t.Errorf("the old passphrase: %v", r)
	}
	if r := runEnv(t, kms, nil, "key", "remove", "--repo", repo, slots[0].ID); r.code != 1 || !strings.Contains(r.stderr, "last key slot") {
		t.Errorf("removing the last slot: %v", r)
	}

	// Crypto-shredding: a second tenant, then its erasure.
	before := subdirs(t, filepath.Join(repo, "t"))
	mustEnv(t, kms, "backup", "--repo", repo, "--tenant", "gone", src)
	var handle string
	for _, d := range subdirs(t, filepath.Join(repo, "t")) {
		if !slices.Contains(before, d) {
			handle = d
		}
	}
	if handle == "" || len(regularFiles(t, filepath.Join(repo, "t", handle))) == 0 {
		t.Fatalf("no data directory for the new tenant (before %v)", before)
	}
	r = mustEnv(t, kms, "tenant", "erase", "--repo", repo, "gone", "--rotate")
	if !strings.Contains(r.stdout, `erased tenant "gone"`) || !strings.Contains(r.stdout, "guarantee:") || !regexp.MustCompile(`key slot [0-9a-f]{12} rotated to [0-9a-f]{12}`).MatchString(r.stdout) {
		t.Errorf("tenant erase: %v", r)
	}
	t.Logf("tenant erase --rotate:\n%s", r.stdout)
	if r := mustEnv(t, kms, "tenants", "--repo", repo, "--json"); strings.Join(strings.Fields(r.stdout), "") != `["acme"]` {
		t.Errorf("tenants after the erasure: %v", r)
	}
	// The filesystem driver leaves emptied directories in place: what
	// matters is that no object of the tenant is left.
	for _, dir := range []string{filepath.Join(repo, "t", handle), filepath.Join(repo, "tenants", handle)} {
		if left := regularFiles(t, dir); len(left) != 0 {
			t.Errorf("%s still holds %v", dir, left)
		}
	}
	if r := runEnv(t, kms, nil, "snapshots", "--repo", repo, "--tenant", "gone"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("snapshots of the erased tenant: %v", r)
	}
	if r := runEnv(t, kms, nil, "tenant", "erase", "--repo", repo, "gone"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("erasing it again: %v", r)
	}
	if slots2 := keySlots(t, kms, repo); len(slots2) != 1 || slots2[0].ID == slots[0].ID {
		t.Errorf("erase --rotate did not replace the slot in use: %+v then %+v", slots, slots2)
	}
	// acme is intact, and check finds nothing wrong.
	if r := mustEnv(t, kms, "restore", "--repo", repo, "--tenant", "acme", "latest", "--stdout"); r.stdout != string(data) {
		t.Error("acme's stream differs after the erasure of another tenant")
	}
	mustEnv(t, kms, "check", "--repo", repo, "--read-data")
}

// TestKeyInitAndErrors: init with a key only makes a keeper slot; bad
// key URLs and misused flags fail clearly, without echoing the key.
func TestKeyInitAndErrors(t *testing.T) {
	t.Parallel()
	repo := filepath.Join(t.TempDir(), "repo")
	keyURL := newKeyURL(t)
	kms := []string{keyURLEnv + "=" + keyURL}
	r := mustEnv(t, kms, "init", "--repo", repo, "--pack-size", "1MiB")
	if !strings.Contains(r.stdout, "keeper (REPRISE_KEY_URL)") || strings.Contains(r.stdout, "passphrase (") {
		t.Errorf("init with a key: %v", r)
	}
	if slots := keySlots(t, kms, repo); len(slots) != 1 || slots[0].Type != "keeper" {
		t.Errorf("init with a key made %+v", slots)
	}
	if r := runEnv(t, []string{passwordEnv + "=" + testPassword}, nil, "tenants", "--repo", repo); r.code != 1 || !strings.Contains(r.stderr, "wrong passphrase") {
		t.Errorf("a passphrase on a keeper-only repository: %v", r)
	}
	// With both set, the key opens it.
	mustEnv(t, append(kms, passwordEnv+"=whatever"), "tenants", "--repo", repo)
	// init with both makes a slot for each.
	both := append(slices.Clone(kms), passwordEnv+"="+testPassword)
	repo2 := filepath.Join(t.TempDir(), "repo2")
	mustEnv(t, both, "init", "--repo", repo2, "--kdf-cost=low")
	if slots := keySlots(t, both, repo2); len(slots) != 2 || slots[0].Type == slots[1].Type {
		t.Errorf("init with both credentials made %+v", slots)
	}
	mustEnv(t, []string{passwordEnv + "=" + testPassword}, "tenants", "--repo", repo2)
	mustEnv(t, kms, "tenants", "--repo", repo2)
	if r := runEnv(t, []string{keyURLEnv + "=" + newKeyURL(t)}, nil, "tenants", "--repo", repo); r.code != 1 || !strings.Contains(r.stderr, "wrong key: no key slot opens with the key keeper of REPRISE_KEY_URL") {
		t.Errorf("another key: %v", r)
	}
	key := strings.TrimPrefix(keyURL, "base64key://")
	for _, tc := range []struct {
		env  []string
		args []string
		code int
		want string
	}{
		{[]string{keyURLEnv + "=base64key://"}, []string{"tenants"}, 1, "random key"},
		{[]string{keyURLEnv + "=hashivault://k"}, []string{"tenants"}, 1, "separate module"},
		{[]string{keyURLEnv + "=base64key://" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("\xfb", 32)))}, []string{"tenants"}, 1, "standard base64"},
		{kms, []string{"key", "add"}, 2, "exactly one of"},
		{kms, []string{"key", "add", "--new-password-env", "X", "--new-key-url-env", "Y"}, 2, "exactly one of"},
		{kms, []string{"key", "add", "--new-password-env", "NO_SUCH_VAR_REPRISE"}, 1, "NO_SUCH_VAR_REPRISE is not set"},
		{kms, []string{"key", "add", "--new-password-env", "not a name!"}, 1, "not the secret itself"},
		{kms, []string{"key", "remove"}, 2, "one SLOT"},
		{kms, []string{"key", "frobnicate"}, 2, "unknown subcommand"},
		{kms, []string{"tenant", "erase"}, 2, "one TENANT"},
		{kms, []string{"repair"}, 1, "repair needs a repository of several sites"},
	} {
		args := append(tc.args, "--repo", repo)
		r := runEnv(t, tc.env, nil, args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, key) {
			t.Errorf("want exit %d and %q: %v", tc.code, tc.want, r)
		}
	}
	// A key on the command line works, with a warning.
	r = mustEnv(t, kms, "key", "add", "--repo", repo, "--new-key-url", newKeyURL(t))
	if !strings.Contains(r.stderr, "prefer --new-key-url-env") {
		t.Errorf("--new-key-url with a base64key: %v", r)
	}
	r = mustEnv(t, append(kms, "NEWPASS=a new passphrase"), "key", "add", "--repo", repo, "--new-password-env", "NEWPASS", "--kdf-cost=low", "--label", "break-glass")
	mustEnv(t, []string{passwordEnv + "=a new passphrase"}, "tenants", "--repo", repo)
	if r := mustEnv(t, kms, "help", "key", "rotate"); !strings.Contains(r.stdout, "--new-key-url-env") {
		t.Errorf("help key rotate: %v", r)
	}
}
