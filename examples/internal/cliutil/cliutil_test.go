package cliutil

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocloud.dev/secrets/localsecrets"

	"github.com/reprise-backup/reprise/storage"
)

func TestParseSite(t *testing.T) {
	const s3 = "s3://b/x?region=eu-west-3&endpoint=http://127.0.0.1:9000"
	for _, tc := range []struct {
		in                string
		name, domain, url string
		named             bool
	}{
		{in: "/mnt/a", name: "site3", domain: "site3", url: "/mnt/a"},
		{in: "sbg1:strasbourg=/mnt/a", name: "sbg1", domain: "strasbourg", url: "/mnt/a", named: true},
		{in: "rbx:roubaix=" + s3, name: "rbx", domain: "roubaix", url: s3, named: true},
		{in: s3, name: "site3", domain: "site3", url: s3},
		{in: "a:dc1=file:///x?nosync=1", name: "a", domain: "dc1", url: "file:///x?nosync=1", named: true},
		{in: "file:///x?nosync=1", name: "site3", domain: "site3", url: "file:///x?nosync=1"},
		{in: "my.site:dc-1_a=rel/dir", name: "my.site", domain: "dc-1_a", url: "rel/dir", named: true},
		{in: "SBG:x=/p", name: "SBG", domain: "x", url: "/p", named: true}, // multisite.New refuses the name
		{in: "a:b:c=/x", name: "site3", domain: "site3", url: "a:b:c=/x"},  // two colons: a URL
		{in: "a:=/x", name: "site3", domain: "site3", url: "a:=/x"},
		{in: ":b=/x", name: "site3", domain: "site3", url: ":b=/x"},
		{in: "/tmp/a:b=c", name: "site3", domain: "site3", url: "/tmp/a:b=c"},
		{in: "plain=dir", name: "site3", domain: "site3", url: "plain=dir"},
	} {
		got, err := ParseSite(tc.in, 2)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		want := Site{Name: tc.name, Domain: tc.domain, URL: tc.url, Named: tc.named}
		if got != want {
			t.Errorf("%q: got %+v, want %+v", tc.in, got, want)
		}
	}
	for _, in := range []string{"", "a:b="} {
		if _, err := ParseSite(in, 0); err == nil || !errors.Is(err, ErrUsage) {
			t.Errorf("%q: got %v, want a usage error", in, err)
		}
	}
	if _, err := ParseSites(nil); !errors.Is(err, ErrUsage) {
		t.Errorf("no --repo: %v", err)
	}
}

func TestOpenStorage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, _, err := OpenStorage(ctx, []Site{{URL: dir}}, StorageOptions{WriteQuorum: 2}); !errors.Is(err, ErrUsage) {
		t.Errorf("one site, quorum 2: %v", err)
	}
	a, _ := ParseSite("a:x="+filepath.Join(dir, "a"), 0)
	b, _ := ParseSite("b:x="+filepath.Join(dir, "b"), 1)
	if _, _, err := OpenStorage(ctx, []Site{a, b}, StorageOptions{}); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "failure domain") {
		t.Errorf("one failure domain: %v", err)
	}
	bad, _ := ParseSite("b:y=nope://x", 1)
	if _, _, err := OpenStorage(ctx, []Site{a, bad}, StorageOptions{}); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "unknown URL scheme") {
		t.Errorf("unknown scheme: %v", err)
	}

	// A site under a regular file cannot be opened: it is down, and its
	// errors say so without looking like a missing object.
	blocker := filepath.Join(dir, "blocker")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	down, _ := ParseSite("c:z="+filepath.Join(blocker, "site"), 2)
	b.Domain = "y"
	var warned []string
	st, ms, err := OpenStorage(ctx, []Site{a, b, down}, StorageOptions{WriteQuorum: 2, Warn: func(m string) { warned = append(warned, m) }})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ms == nil || len(warned) != 1 || !strings.Contains(warned[0], "site c (z) cannot be opened") {
		t.Fatalf("warnings %q", warned)
	}
	if err := st.Put(ctx, "k", strings.NewReader("v"), 1, nil); err != nil {
		t.Fatalf("put under quorum 2 with one site down: %v", err)
	}
	_, err = ms.Replicas()[2].Storage.Stat(ctx, "k")
	if !errors.Is(err, storage.ErrTransient) || errors.Is(err, storage.ErrNotExist) || !strings.Contains(err.Error(), "site c is down") {
		t.Errorf("down site's error: %v", err)
	}
	if j, err := PendingJournals(ctx, ms); err != nil || j["c"] == 0 {
		t.Errorf("journals %v, %v: want some for site c", j, err)
	}
	if h := JournalHint(ctx, ms); !strings.Contains(h, "c missed writes") {
		t.Errorf("hint %q", h)
	}
}

func TestOpenKeeper(t *testing.T) {
	ctx := context.Background()
	k, err := localsecrets.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	good := "base64key://" + base64.URLEncoding.EncodeToString(k[:])
	kp, err := OpenKeeper(ctx, good, "TEST")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := kp.Encrypt(ctx, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	kp.Close()
	kp2, _ := OpenKeeper(ctx, good, "TEST")
	if pt, err := kp2.Decrypt(ctx, ct); err != nil || string(pt) != "x" {
		t.Errorf("the same URL does not open the same key: %v", err)
	}
	kp2.Close()

	// A key made of + and / in standard base64.
	std := bytesOf(0xfb)
	for _, tc := range []struct{ url, want string }{
		{"base64key://", "random key"},
		{"base64key://" + base64.StdEncoding.EncodeToString(std), "standard base64"},
		{"base64key://" + base64.URLEncoding.EncodeToString(std[:20]), "opening the base64key:// key keeper"},
		{"hashivault://mykey", "separate module"},
		{"nonsense", "not a key keeper URL"},
	} {
		_, err := OpenKeeper(ctx, tc.url, "TEST")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "TEST: ") {
			t.Errorf("%s: got %v, want an error mentioning %q", tc.url, err, tc.want)
			continue
		}
		if key := strings.TrimPrefix(tc.url, "base64key://"); key != tc.url && key != "" && strings.Contains(err.Error(), key) {
			t.Errorf("%s: the error repeats the key: %v", tc.url, err)
		}
	}

	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if _, err := LoadCredentials(ctx, getenv); !errors.Is(err, ErrNoCredentials) || !strings.Contains(err.Error(), "REPRISE_PASSWORD is not set") {
		t.Errorf("no credentials: %v", err)
	}
	env[KeyURLEnv] = good
	env[PasswordEnv] = "pw"
	c, err := LoadCredentials(ctx, getenv)
	if err != nil || c.Keeper == nil || string(c.Passphrase) != "pw" || c.From != "REPRISE_PASSWORD or REPRISE_KEY_URL" {
		t.Fatalf("both: %+v, %v", c, err)
	}
	c.Close()
	if string(c.Passphrase) == "pw" {
		t.Error("Close does not wipe the passphrase")
	}
}

func bytesOf(b byte) []byte {
	out := make([]byte, 32)
	for i := range out {
		out[i] = b
	}
	return out
}
