// Command quickstart shows Reprise end to end, with no setup:
//
//	go run ./examples/quickstart
//
// It makes a sample dataset in a temporary directory (SQL dumps, files
// that are already encrypted, many small files, nested directories, a
// symlink), creates a repository on the local disk, backs the dataset up
// for a tenant, changes a few files, backs it up again, restores both
// snapshots and verifies each byte for byte against what was backed up,
// checks the repository reading every byte, and prints what happened. It
// exits non-zero if anything does not match.
//
// Flags: --size MiB sets the dataset's size (default 64); --keep keeps
// the temporary directories and prints where they are (they are kept on
// failure too).
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
)

func main() {
	keep := flag.Bool("keep", false, "keep the temporary directories and print their paths")
	size := flag.Int("size", 64, "approximate size of the sample dataset, in MiB")
	flag.Parse()
	if *size < 4 || *size > 64<<10 || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: quickstart [--size MiB (4 or more)] [--keep]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, int64(*size)<<20, *keep)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart: FAILED:", err)
		os.Exit(1)
	}
	fmt.Println("OK")
}

// The passphrase protecting the example repository. A real one comes from
// the user or a secret store, never from the source code.
const passphrase = "quickstart: use a long random passphrase in real life"

func run(ctx context.Context, size int64, keep bool) (err error) {
	base, err := os.MkdirTemp("", "reprise-quickstart-")
	if err != nil {
		return err
	}
	dataDir := filepath.Join(base, "data")
	repoDir := filepath.Join(base, "repo")
	restored := []string{filepath.Join(base, "restore-1"), filepath.Join(base, "restore-2")}
	defer func() {
		if keep || err != nil { // on failure, keep everything to look at
			fmt.Printf("kept       dataset %s\n           repository %s\n           restores %s and %s\n",
				dataDir, repoDir, restored[0], restored[1])
			return
		}
		if rerr := os.RemoveAll(base); err == nil && rerr != nil {
			err = rerr
		}
	}()

	fmt.Println("Reprise quickstart: back up, change, back up again, restore both, verify.")
	fmt.Println()

	// 1. A sample dataset, and a manifest of exactly what it holds.
	start := time.Now()
	ds, err := makeDataset(dataDir, size)
	if err != nil {
		return fmt.Errorf("making the dataset: %w", err)
	}
	manifests := make([]manifest, 2)
	if manifests[0], err = takeManifest(dataDir); err != nil {
		return err
	}
	fmt.Printf("dataset    %s: %s (made in %s)\n", mib(ds.bytes), ds, secs(time.Since(start)))

	// 2. A repository on the local disk. storage.Open also takes file://
	// URLs, and s3://, gs:// or azblob:// when those drivers are linked in.
	st, err := storage.Open(ctx, repoDir)
	if err != nil {
		return err
	}
	defer st.Close()
	// Key derivation: argon2id with 19 MiB and 2 passes (the OWASP
	// minimum), so the example starts fast. Leave Argon2 nil in real use:
	// Init then calibrates it to about half a second on the machine.
	kdf := &crypto.Argon2Params{Time: 2, MemoryKiB: 19 << 10, Threads: 1}
	repo, err := reprise.Init(ctx, st, reprise.Credentials{Passphrase: []byte(passphrase)},
		&reprise.InitOptions{Argon2: kdf, Label: "quickstart"})
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	fmt.Printf("repository %s (local disk, encrypted, passphrase-protected)\n", repoDir)

	// 3. Back up, change a few files, back up again. Each backup reads
	// everything; only chunks the tenant does not store yet are written.
	tenant, err := repo.Tenant(ctx, "acme")
	if err != nil {
		return err
	}
	var results [2]*backup.Result
	for i := range results {
		if i == 1 {
			edits, err := editDataset(dataDir, ds)
			if err != nil {
				return fmt.Errorf("editing the dataset: %w", err)
			}
			if manifests[1], err = takeManifest(dataDir); err != nil {
				return err
			}
			fmt.Printf("edits      %s\n", edits)
		}
		res, err := backup.Dir(ctx, tenant, dataDir, nil)
		if err != nil {
			return fmt.Errorf("backup #%d: %w", i+1, err)
		}
		if len(res.Skipped) > 0 {
			return fmt.Errorf("backup #%d skipped %d paths, first %v", i+1, len(res.Skipped), res.Skipped[0])
		}
		results[i] = res
		fmt.Printf("backup #%d  snapshot %s: read %s, stored %s (%s), %s, %s\n", i+1, res.Snapshot.ShortID(),
			mib(res.BytesRead), mib(res.BytesAdded), smaller(res.BytesRead, res.BytesAdded),
			secs(res.Duration), mibps(res.BytesRead, res.Duration))
	}
	tenant.Close()
	repo.Close()

	// 4. Restore both snapshots, as another process would: open the
	// repository again with the passphrase, then the existing tenant.
	repo, err = reprise.Open(ctx, st, reprise.Credentials{Passphrase: []byte(passphrase)}, nil)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer repo.Close()
	tenant, err = repo.OpenTenant(ctx, "acme")
	if err != nil {
		return err
	}
	defer tenant.Close()
	for i, res := range results {
		rr, err := restore.Dir(ctx, tenant, res.Snapshot.ID, restored[i], nil)
		if err != nil {
			return fmt.Errorf("restore #%d: %w", i+1, err)
		}
		got, err := takeManifest(restored[i])
		if err != nil {
			return err
		}
		if diffs := manifests[i].diff(got); len(diffs) > 0 {
			for _, d := range diffs {
				fmt.Printf("MISMATCH   restore #%d: %s\n", i+1, d)
			}
			return fmt.Errorf("restore #%d differs from what backup #%d saw (%d differences)", i+1, i+1, len(diffs))
		}
		fmt.Printf("restore #%d %s in %s (%s): %s, %s, %s identical to dataset #%d\n",
			i+1, mib(rr.Bytes), secs(rr.Duration), mibps(rr.Bytes, rr.Duration),
			plural(rr.Files, "file"), plural(rr.Dirs, "dir"), plural(rr.Symlinks, "symlink"), i+1)
	}

	// 5. Check the repository, reading, authenticating and decrypting
	// every chunk.
	start = time.Now()
	rep, err := repo.Check(ctx, &reprise.CheckOptions{ReadData: true})
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	for _, p := range rep.Problems {
		fmt.Printf("PROBLEM    %v\n", p)
	}
	if len(rep.Problems) > 0 {
		return fmt.Errorf("check found %d problem(s)", len(rep.Problems))
	}
	fmt.Printf("check      %d snapshots, %d packs, %d chunks, %s read and authenticated in %s: no problems\n",
		rep.Snapshots, rep.Packs, rep.Chunks, mib(rep.BytesRead), secs(time.Since(start)))

	onDisk, err := dirSize(repoDir)
	if err != nil {
		return err
	}
	read := results[0].BytesRead + results[1].BytesRead
	fmt.Printf("total      %s backed up in 2 snapshots, %s on disk (%s)\n", mib(read), mib(onDisk), smaller(read, onDisk))
	return nil
}

// dirSize sums the sizes of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	return n, err
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mibps(n int64, d time.Duration) string {
	if d <= 0 {
		return "- MiB/s"
	}
	return fmt.Sprintf("%.0f MiB/s", float64(n)/(1<<20)/d.Seconds())
}

// plural formats a count of things: "1 file", "2 files".
func plural(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// smaller describes the ratio of what was read to what was stored.
func smaller(read, stored int64) string {
	if stored <= 0 {
		return "nothing new"
	}
	return fmt.Sprintf("%.1fx smaller", float64(read)/float64(stored))
}
