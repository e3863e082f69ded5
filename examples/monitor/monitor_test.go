package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/storage"
)

const testPassword = "monitor test passphrase"

// newRepo makes a repository on st with one tenant backed up once.
func newRepo(t *testing.T, st storage.Storage) *reprise.Repository {
	t.Helper()
	ctx := context.Background()
	r, err := reprise.Init(ctx, st, reprise.Credentials{Passphrase: []byte(testPassword)},
		&reprise.InitOptions{PackSize: 1 << 20, Argon2: &crypto.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ten, err := r.Tenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	defer ten.Close()
	if _, err := backup.Stream(ctx, ten, "db.sql", strings.NewReader("INSERT INTO t VALUES (1);\n"), nil); err != nil {
		t.Fatal(err)
	}
	return r
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestHandler(t *testing.T) {
	r := newRepo(t, storage.NewMem())

	fresh := newHandler(r, handlerOptions{StaleAfter: time.Hour})
	if code, body := get(t, fresh, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz of a fresh backup: %d %q, want 200 \"ok\"", code, body)
	}
	code, body := get(t, fresh, "/metrics")
	if code != http.StatusOK || !strings.Contains(body, "reprise_sources") ||
		!strings.Contains(body, `reprise_sources{state="OK"} 1`) ||
		!strings.Contains(body, `reprise_backup_state{source="db.sql",state="OK",tenant="acme"} 1`) {
		t.Errorf("/metrics: %d\n%s", code, body)
	}

	stale := newHandler(r, handlerOptions{StaleAfter: time.Nanosecond})
	code, body = get(t, stale, "/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `STALE tenant="acme" source="db.sql"`) {
		t.Errorf("/healthz of a stale backup: %d %q, want 503 naming acme's db.sql as STALE", code, body)
	}
	if _, body := get(t, stale, "/metrics"); !strings.Contains(body, `reprise_sources{state="STALE"} 1`) {
		t.Errorf("/metrics of a stale backup:\n%s", body)
	}

	// A tenant that never had a backup is NEVER: 503 as well.
	ten, err := r.Tenant(context.Background(), "newcomer")
	if err != nil {
		t.Fatal(err)
	}
	ten.Close()
	code, body = get(t, newHandler(r, handlerOptions{StaleAfter: time.Hour}), "/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `NEVER tenant="newcomer"`) || strings.Contains(body, "acme") {
		t.Errorf("/healthz with a tenant never backed up: %d %q", code, body)
	}
	if code, _ := get(t, fresh, "/nope"); code != http.StatusNotFound {
		t.Errorf("/nope: %d", code)
	}
}

// TestRun opens a repository the way the command does (--repo, the
// passphrase from the environment) and serves it on a real socket.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// mem://NAME is shared within the process: one name per run.
	url := fmt.Sprintf("mem://monitor-run-test-%d", time.Now().UnixNano())
	st, err := storage.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	newRepo(t, st)
	env := map[string]string{"REPRISE_PASSWORD": testPassword}
	var stderr bytes.Buffer
	addrc := make(chan string, 1)
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--repo", url, "--listen", "127.0.0.1:0", "--stale-after", "1h"},
			func(k string) string { return env[k] }, &stderr, func(a string) { addrc <- a })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case c := <-code:
		t.Fatalf("monitor exited %d: %s", c, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("monitor did not start")
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "ok\n" {
		t.Errorf("/healthz: %d %q", resp.StatusCode, b)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("monitor exited %d after cancellation: %s", c, stderr.String())
	}

	// Wrong credentials: exit 1 with the reason.
	stderr.Reset()
	env["REPRISE_PASSWORD"] = "wrong"
	if c := run(context.Background(), []string{"--repo", url}, func(k string) string { return env[k] }, &stderr, nil); c != 1 ||
		!strings.Contains(stderr.String(), "wrong passphrase") {
		t.Errorf("wrong passphrase: exit %d, %s", c, stderr.String())
	}
}
