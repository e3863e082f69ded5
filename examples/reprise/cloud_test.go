package main

import (
	"bytes"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The tests below run the CLI against the real servers .ci/servers.sh
// starts (MinIO, Azurite, fake-gcs-server). Without them they skip, except
// under CI=true, where a skip would hide that nothing was tested: they fail.

var (
	cloudOnce sync.Once
	cloudBin  string
	cloudErr  error
)

// cloudCLI builds the default binary (with the cloud drivers) once.
func cloudCLI(t *testing.T) string {
	t.Helper()
	cloudOnce.Do(func() {
		cloudBin = filepath.Join(filepath.Dir(cliBin), "reprise-cloud")
		out, err := exec.Command("go", "build", "-o", cloudBin, ".").CombinedOutput()
		if err != nil {
			cloudErr = fmt.Errorf("building the reprise command with the cloud drivers: %v\n%s", err, out)
		}
	})
	if cloudErr != nil {
		t.Fatal(cloudErr)
	}
	return cloudBin
}

func requireServer(t *testing.T, env, what string) {
	t.Helper()
	if os.Getenv(env) != "" {
		return
	}
	msg := fmt.Sprintf("no %s: set %s (bash .ci/run, or source .ci/servers.sh, starts one)", what, env)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " — CI must not skip cloud tests")
	}
	t.Skip(msg)
}

func bucket() string {
	b := make([]byte, 6)
	crand.Read(b)
	return "rp-cli-" + hex.EncodeToString(b)
}

func s3URL(name string) string {
	return "s3://" + name + "/repo?endpoint=" + os.Getenv("REPRISE_TEST_S3_ENDPOINT") + "&path_style=true&region=us-east-1"
}

// cloudRun runs the cloud-enabled binary with the test passphrase.
func cloudRun(t *testing.T, stdin []byte, args ...string) cliResult {
	t.Helper()
	cmd := cliCommand(t, testPassword, args...)
	cmd.Path = cloudCLI(t)
	cmd.Args[0] = cmd.Path
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	r := runCmd(t, cmd, args)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	return r
}

// A CLI backup and restore through each real server; init creates the
// bucket or container.
func TestCloudBackends(t *testing.T) {
	for _, b := range []struct {
		name, env, what string
		url             func(string) string
	}{
		{"s3", "REPRISE_TEST_S3_ENDPOINT", "S3-compatible server", s3URL},
		{"azblob", "REPRISE_TEST_AZURITE", "Azurite", func(n string) string { return "azblob://" + n + "/repo" }},
		{"gs", "REPRISE_TEST_GCS_EMULATOR", "GCS emulator", func(n string) string { return "gs://" + n + "/repo" }},
	} {
		t.Run(b.name, func(t *testing.T) {
			requireServer(t, b.env, b.what)
			repo := b.url(bucket())
			cloudRun(t, nil, "init", "--repo", repo, "--kdf-cost=low", "--pack-size", "1MiB")
			src := t.TempDir()
			writeTree(t, src, rand.New(rand.NewPCG(11, 11)), 30, 600<<10)
			cloudRun(t, nil, "backup", "--repo", repo, "--tenant", "acme", src)
			dst := filepath.Join(t.TempDir(), "out")
			cloudRun(t, nil, "restore", "--repo", repo, "--tenant", "acme", "latest", "--target", dst)
			compareTrees(t, src, dst)
			cloudRun(t, nil, "check", "--repo", repo, "--read-data")
		})
	}
}

// Drill 4: two sites on two different real servers (MinIO and Azurite). The
// S3 site is lost (replaced by an empty bucket); everything restores from
// Azurite, and repair refills the new bucket.
func TestCloudTwoServerSites(t *testing.T) {
	requireServer(t, "REPRISE_TEST_S3_ENDPOINT", "S3-compatible server")
	requireServer(t, "REPRISE_TEST_AZURITE", "Azurite")
	az := "azure:microsoft=azblob://" + bucket() + "/repo"
	s3 := "minio:minio-dc=" + s3URL(bucket())
	cloudRun(t, nil, "init", "--repo", s3, "--repo", az, "--kdf-cost=low", "--pack-size", "1MiB")
	data := randBytes(rand.New(rand.NewPCG(12, 12)), 3<<20)
	cloudRun(t, data, "backup", "--repo", s3, "--repo", az, "--tenant", "acme", "--stdin", "--name", "db.sql")

	// The S3 site burns: a new, empty bucket takes its place.
	newBucket := bucket()
	s3new := "minio:minio-dc=" + s3URL(newBucket) + "&create=true"
	r := cloudRun(t, nil, "restore", "--repo", s3new, "--repo", az, "--tenant", "acme", "latest", "--stdout")
	if !bytes.Equal([]byte(r.stdout), data) {
		t.Fatal("restore from the surviving site differs")
	}
	start := time.Now()
	cloudRun(t, nil, "repair", "--repo", s3new, "--repo", az)
	t.Logf("repair of the lost site took %v", time.Since(start))
	cloudRun(t, nil, "check", "--repo", s3new, "--repo", az, "--read-data")
	// The new S3 site alone now restores.
	r = cloudRun(t, nil, "restore", "--repo", s3URL(newBucket), "--tenant", "acme", "latest", "--stdout")
	if !bytes.Equal([]byte(r.stdout), data) {
		t.Fatal("restore from the repaired site alone differs")
	}
}
