package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/storage"
)

// passwordEnv names the environment variable holding the passphrase.
const passwordEnv = "REPRISE_PASSWORD"

// passphrase returns the passphrase from the environment.
func passphrase(e *env) ([]byte, error) {
	p := e.getenv(passwordEnv)
	if p == "" {
		return nil, fmt.Errorf("%s is not set: the passphrase is read from the environment", passwordEnv)
	}
	return []byte(p), nil
}

// openStorage opens the backend named by --repo.
func openStorage(ctx context.Context, cf *commonFlags) (storage.Storage, error) {
	if cf.repo == "" {
		return nil, usageErrorf("--repo is required")
	}
	return storage.Open(ctx, cf.repo)
}

// openRepo opens the repository named by --repo with the passphrase from
// the environment. It writes nothing. The returned function closes the
// repository and its backend.
func openRepo(ctx context.Context, e *env, cf *commonFlags) (*reprise.Repository, func(), error) {
	st, err := openStorage(ctx, cf)
	if err != nil {
		return nil, nil, err
	}
	pass, err := passphrase(e)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	r, err := reprise.Open(ctx, st, reprise.Credentials{Passphrase: pass}, &reprise.Options{Logger: newLogger(e, cf.verbose)})
	clear(pass)
	if err != nil {
		st.Close()
		switch {
		case errors.Is(err, reprise.ErrWrongKey):
			return nil, nil, fmt.Errorf("wrong passphrase: no key slot opens with %s", passwordEnv)
		case errors.Is(err, reprise.ErrNotInitialized):
			return nil, nil, fmt.Errorf("no repository at %s (create one with 'reprise init --repo %s')", cf.repo, cf.repo)
		}
		return nil, nil, fmt.Errorf("opening repository %s: %w", cf.repo, err)
	}
	return r, func() { r.Close(); st.Close() }, nil
}

// openTenant opens an existing tenant, with a clear message for an
// unknown one.
func openTenant(ctx context.Context, r *reprise.Repository, name string) (*reprise.Tenant, error) {
	if name == "" {
		return nil, usageErrorf("--tenant is required")
	}
	t, err := r.OpenTenant(ctx, name)
	if errors.Is(err, reprise.ErrTenantNotFound) {
		return nil, fmt.Errorf("tenant %q not found in this repository (see 'reprise tenants')", name)
	}
	return t, err
}

func cmdInit(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var packSize sizeFlag
	var kdfCost, label string
	fs := newFlagSet(e, commandByName("init"), &cf)
	fs.Var(&packSize, "pack-size", "target `size` of pack objects, e.g. 16MiB or 16777216 (1 MiB to 512 MiB; default 16MiB)")
	fs.StringVar(&kdfCost, "kdf-cost", "", "passphrase derivation `cost`: by default argon2id is calibrated to about 0.5 s on this machine; \"low\" is cheap, for tests only")
	fs.StringVar(&label, "label", "", "`description` of the first key slot (not secret)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("init takes no arguments (got %q)", pos)
	}
	opts := &reprise.InitOptions{PackSize: int(packSize), Label: label, Logger: newLogger(e, cf.verbose)}
	switch kdfCost {
	case "", "default":
	case "low":
		opts.Argon2 = &crypto.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}
	default:
		return usageErrorf(`--kdf-cost=%q: want "low" (tests only) or nothing`, kdfCost)
	}
	st, err := openStorage(ctx, &cf)
	if err != nil {
		return err
	}
	defer st.Close()
	pass, err := passphrase(e)
	if err != nil {
		return err
	}
	defer clear(pass)
	r, err := reprise.Init(ctx, st, reprise.Credentials{Passphrase: pass}, opts)
	if errors.Is(err, reprise.ErrExists) {
		return fmt.Errorf("a repository already exists at %s", cf.repo)
	}
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	defer r.Close()
	ps := opts.PackSize
	if ps == 0 {
		ps = reprise.DefaultPackSize
	}
	cp := chunk.DefaultParams()
	fmt.Fprintf(e.stdout, "created repository %s at %s\n", r.ID()[:8], cf.repo)
	fmt.Fprintf(e.stdout, "packs of %s, chunks of %s to %s (average %s)\n",
		formatBytes(int64(ps)), formatBytes(int64(cp.Min)), formatBytes(int64(cp.Max)), formatBytes(int64(cp.Avg)))
	if kdfCost == "low" {
		fmt.Fprintln(e.stdout, "warning: --kdf-cost=low makes the passphrase cheap to guess: use it for tests only")
	}
	fmt.Fprintf(e.stdout, "keep the passphrase safe: without it nothing in the repository can be read\n")
	return nil
}

func cmdTenants(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var asJSON bool
	fs := newFlagSet(e, commandByName("tenants"), &cf)
	fs.BoolVar(&asJSON, "json", false, "print a JSON array of names")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("tenants takes no arguments (got %q)", pos)
	}
	r, done, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer done()
	names, err := r.Tenants(ctx)
	if err != nil {
		return fmt.Errorf("listing tenants: %w", err)
	}
	sort.Strings(names)
	if asJSON {
		return writeJSON(e.stdout, nonNil(names))
	}
	for _, n := range names {
		fmt.Fprintln(e.stdout, n)
	}
	return nil
}

// snapshotJSON is one element of "snapshots --json".
type snapshotJSON struct {
	ID      string                `json:"id"`
	ShortID string                `json:"short_id"`
	Time    time.Time             `json:"time"`
	Host    string                `json:"host"`
	Kind    string                `json:"kind"`
	Source  string                `json:"source"`
	Tags    []string              `json:"tags"`
	Stats   reprise.SnapshotStats `json:"stats"`
}

func cmdSnapshots(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var tenant string
	var asJSON bool
	fs := newFlagSet(e, commandByName("snapshots"), &cf)
	fs.StringVar(&tenant, "tenant", "", "`name` of the tenant whose snapshots to list (required)")
	fs.BoolVar(&asJSON, "json", false, "print a JSON array, oldest first")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("snapshots takes no arguments (got %q)", pos)
	}
	if tenant == "" {
		return usageErrorf("--tenant is required")
	}
	r, done, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer done()
	t, err := openTenant(ctx, r, tenant)
	if err != nil {
		return err
	}
	defer t.Close()
	snaps, serr := t.Snapshots(ctx)
	if snaps == nil && serr != nil {
		return fmt.Errorf("listing snapshots: %w", serr)
	}
	if asJSON {
		out := make([]snapshotJSON, len(snaps))
		for i, s := range snaps {
			out[i] = snapshotJSON{ID: s.ID, ShortID: s.ShortID(), Time: s.Time, Host: s.Host, Kind: s.Kind,
				Source: s.Source, Tags: nonNil(s.Tags), Stats: s.Stats}
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return err
		}
	} else {
		printSnapshots(e.stdout, snaps)
	}
	if serr != nil {
		// Listed what could be read; the rest is damaged.
		return fmt.Errorf("some snapshot objects cannot be read (run 'reprise check'): %w", serr)
	}
	return nil
}

func printSnapshots(w io.Writer, snaps []reprise.Snapshot) {
	if len(snaps) == 0 {
		fmt.Fprintln(w, "no snapshots")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tHOST\tKIND\tSOURCE\tFILES\tSIZE\tADDED\tTAGS")
	for _, s := range snaps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.ShortID(), s.Time.Local().Format("2006-01-02 15:04:05"),
			s.Host, s.Kind, s.Source, s.Stats.Files, formatBytes(s.Stats.Bytes), formatBytes(s.Stats.BytesAdded),
			strings.Join(s.Tags, ","))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d snapshot(s)\n", len(snaps))
}

func cmdCheck(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var readData bool
	fs := newFlagSet(e, commandByName("check"), &cf)
	fs.BoolVar(&readData, "read-data", false, "also read, authenticate and decrypt every chunk of every pack")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("check takes no arguments (got %q)", pos)
	}
	r, done, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer done()
	start := time.Now()
	rep, err := r.Check(ctx, &reprise.CheckOptions{ReadData: readData})
	if err != nil {
		return fmt.Errorf("check could not run: %w", err)
	}
	fmt.Fprintf(e.stdout, "checked %d tenant(s), %d snapshot(s), %d pack(s), %d chunk(s)", rep.Tenants, rep.Snapshots, rep.Packs, rep.Chunks)
	if readData {
		fmt.Fprintf(e.stdout, "; read %s of packs", formatBytes(rep.BytesRead))
	}
	fmt.Fprintf(e.stdout, " in %s\n", formatDuration(time.Since(start)))
	if rep.Unreferenced > 0 {
		fmt.Fprintf(e.stdout, "%d unreferenced pack(s): left by interrupted backups, harmless\n", rep.Unreferenced)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(e.stdout, "problem: %s\n", problemLine(p))
	}
	if n := len(rep.Problems); n > 0 {
		return fmt.Errorf("check found %d problem(s)", n)
	}
	fmt.Fprintln(e.stdout, "no problems found")
	return nil
}

// problemLine formats a check problem on one line, naming its tenant and
// object.
func problemLine(p reprise.Problem) string {
	scope := "repository"
	if p.Tenant != "" {
		scope = fmt.Sprintf("tenant %q", p.Tenant)
	}
	obj := p.Object
	if obj == "" {
		obj = "-"
	}
	msg := strings.ReplaceAll(fmt.Sprint(p.Err), "\n", "; ")
	return fmt.Sprintf("%s: object %s: %s", scope, obj, msg)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// nonNil makes nil slices encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
