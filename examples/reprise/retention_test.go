package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// forget by policy, prune, and restore-all of every tenant in priority order.
func TestForgetPruneRestoreAll(t *testing.T) {
	t.Parallel()
	repo := initRepo(t)
	rng := rand.New(rand.NewPCG(4, 4))
	dumps := map[string][]byte{}
	for _, tenant := range []string{"alpha", "beta"} {
		for i := 0; i < 4; i++ {
			dumps[tenant] = randBytes(rng, 300<<10)
			mustCLI(t, bytes.NewReader(dumps[tenant]), "backup", "--repo", repo, "--tenant", tenant, "--stdin", "--name", "db.sql")
		}
	}
	dry := mustCLI(t, nil, "forget", "--repo", repo, "--tenant", "alpha", "--keep-last", "1", "--dry-run", "--json")
	var ds []struct {
		Keep    bool     `json:"keep"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(dry.stdout), &ds); err != nil || len(ds) != 4 || !ds[0].Keep || ds[1].Keep {
		t.Fatalf("forget --dry-run: %v %v", err, dry)
	}
	var snaps []json.RawMessage
	json.Unmarshal([]byte(mustCLI(t, nil, "snapshots", "--repo", repo, "--tenant", "alpha", "--json").stdout), &snaps)
	if len(snaps) != 4 {
		t.Fatalf("dry run forgot snapshots: %d left", len(snaps))
	}
	r := mustCLI(t, nil, "forget", "--repo", repo, "--tenant", "alpha", "--keep-last", "1", "--prune", "--grace", "1ns")
	if !strings.Contains(r.stdout, "1 snapshot(s) kept, 3 forgotten") || !strings.Contains(r.stdout, "newly marked") {
		t.Fatalf("forget --prune: %v", r)
	}
	r = mustCLI(t, nil, "prune", "--repo", repo, "--grace", "1ns", "--json")
	var rep struct{ PacksDeleted int }
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.PacksDeleted == 0 {
		t.Fatalf("prune: %v %v", err, r)
	}
	if r := runCLI(t, testPassword, nil, "forget", "--repo", repo, "--tenant", "alpha"); r.code != 2 {
		t.Errorf("forget without a rule: %v", r)
	}
	mustCLI(t, nil, "check", "--repo", repo, "--read-data")

	prio := filepath.Join(t.TempDir(), "prio")
	os.WriteFile(prio, []byte("# vip first\nbeta 10\n"), 0o600)
	target := filepath.Join(t.TempDir(), "all")
	r = mustCLI(t, nil, "restore-all", "--repo", repo, "--target", target, "--priority", prio, "--parallel", "1")
	if i, j := strings.Index(r.stderr, "beta ok"), strings.Index(r.stderr, "alpha ok"); i < 0 || j < 0 || i > j {
		t.Errorf("restore-all order: %v", r)
	}
	for tenant, want := range dumps {
		got, err := os.ReadFile(filepath.Join(target, tenant, "db.sql"))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: restored latest dump differs (%v)", tenant, err)
		}
	}
}
