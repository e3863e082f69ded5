package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/examples/internal/cliutil"
	"github.com/reprise-backup/reprise/storage/appendonly"
)

// passwordEnv and keyURLEnv name the environment variables holding the
// credentials (never flags).
const (
	passwordEnv = cliutil.PasswordEnv
	keyURLEnv   = cliutil.KeyURLEnv
)

// asUsage maps the usage errors of cliutil to exit status 2.
func asUsage(err error) error {
	if err != nil && errors.Is(err, cliutil.ErrUsage) {
		return &exitErr{code: exitUsage, err: err}
	}
	return err
}

// warner prints one-line warnings on stderr.
func warner(e *env) func(string) {
	return func(msg string) { fmt.Fprintf(e.stderr, "reprise: warning: %s\n", msg) }
}

// storageOptions are the multi-site options of the command line.
func storageOptions(e *env, cf *commonFlags) cliutil.StorageOptions {
	return cliutil.StorageOptions{WriteQuorum: cf.writeQuorum, AllowSingleDomain: cf.allowSingleDomain,
		Warn: warner(e), Logger: newLogger(e, cf.verbose)}
}

// openRepo opens the repository named by --repo (one site, or several)
// with the credentials from the environment. It writes nothing. Close the
// session when done. For a multi-site repository it prints a hint when
// the sites hold journals of missed writes.
func openRepo(ctx context.Context, e *env, cf *commonFlags) (*cliutil.Session, error) {
	return openRepoHint(ctx, e, cf, true)
}

func openRepoHint(ctx context.Context, e *env, cf *commonFlags, hint bool) (*cliutil.Session, error) {
	s, err := cliutil.Open(ctx, cliutil.Config{
		Repos: cf.repos, WriteQuorum: cf.writeQuorum, AllowSingleDomain: cf.allowSingleDomain,
		Getenv: e.getenv, Logger: newLogger(e, cf.verbose), Warn: warner(e), AppendOnly: cf.appendOnly,
	})
	if err != nil {
		return nil, asUsage(err)
	}
	if hint {
		if h := cliutil.JournalHint(ctx, s.Multi); h != "" {
			fmt.Fprintf(e.stderr, "reprise: note: %s\n", h)
		}
	}
	return s, nil
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
	var codec codecFlag
	fs := newFlagSet(e, commandByName("init"), &cf)
	fs.Var(&packSize, "pack-size", "target `size` of pack objects, e.g. 16MiB or 16777216 (1 MiB to 512 MiB; default 16MiB)")
	fs.Var(&codec, "codec", "chunk compression `codec`, for the repository's life: zstd (the default: the better ratio;\n"+
		"format version 1) or s2 (faster to compress and decompress, a lower ratio; format version 2,\n"+
		"which releases older than this option cannot read)")
	fs.StringVar(&kdfCost, "kdf-cost", "", "passphrase derivation `cost`: by default argon2id is calibrated to about 0.5 s on this machine; \"low\" is cheap, for tests only")
	fs.StringVar(&label, "label", "", "`description` of the first key slot (not secret)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("init takes no arguments (got %q)", pos)
	}
	opts := &reprise.InitOptions{PackSize: int(packSize), Label: label, Codec: reprise.Codec(codec), Logger: newLogger(e, cf.verbose)}
	if opts.Argon2, err = kdfParams(kdfCost); err != nil {
		return err
	}
	sites, err := cliutil.ParseSites(cf.repos)
	if err != nil {
		return asUsage(err)
	}
	// init creates the bucket or container when it does not exist and the
	// credentials allow it (the drivers' create=true); other commands
	// report a missing bucket by name.
	for i := range sites {
		sites[i].URL = withCreate(sites[i].URL)
	}
	st, _, err := cliutil.OpenStorage(ctx, sites, storageOptions(e, &cf))
	if err != nil {
		return asUsage(err)
	}
	defer st.Close()
	if cf.appendOnly {
		st = appendonly.New(st) // init only creates objects: it works append-only
	}
	c, err := cliutil.LoadCredentials(ctx, e.getenv)
	if err != nil {
		return err
	}
	defer c.Close()
	// A keeper when there is one (REPRISE_KEY_URL), else the passphrase;
	// with both, a slot for each.
	first := c.Only(c.Keeper != nil)
	where := cliutil.Describe(sites)
	r, err := reprise.Init(ctx, st, first, opts)
	if errors.Is(err, reprise.ErrExists) {
		return fmt.Errorf("a repository already exists at %s", where)
	}
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	defer r.Close()
	if c.Keeper != nil && c.Passphrase != nil {
		if _, err := r.AddKeySlot(ctx, c.Only(false), &reprise.KeySlotOptions{Argon2: opts.Argon2, Label: label}); err != nil {
			return fmt.Errorf("repository %s created with a key slot for %s, but adding one for %s failed: %w", r.ID()[:8], keyURLEnv, passwordEnv, err)
		}
	}
	ps := opts.PackSize
	if ps == 0 {
		ps = reprise.DefaultPackSize
	}
	cp := chunk.DefaultParams()
	fmt.Fprintf(e.stdout, "created repository %s at %s\n", r.ID()[:8], where)
	if len(sites) > 1 {
		q := cf.writeQuorum
		if q == 0 {
			q = len(sites)
		}
		fmt.Fprintf(e.stdout, "%d sites, writes durable once %d of them hold them\n", len(sites), q)
	}
	fmt.Fprintf(e.stdout, "packs of %s, chunks of %s to %s (average %s), compressed with %s (format version %d)\n",
		formatBytes(int64(ps)), formatBytes(int64(cp.Min)), formatBytes(int64(cp.Max)), formatBytes(int64(cp.Avg)),
		r.Codec(), r.FormatVersion())
	for _, s := range r.KeySlots() {
		from := passwordEnv
		if s.Type != "passphrase" {
			from = keyURLEnv
		}
		fmt.Fprintf(e.stdout, "key slot %s: %s (%s)\n", s.ID[:12], s.Type, from)
	}
	if kdfCost == "low" && c.Passphrase != nil {
		fmt.Fprintln(e.stdout, "warning: --kdf-cost=low makes the passphrase cheap to guess: use it for tests only")
	}
	switch {
	case c.Keeper != nil && c.Passphrase != nil:
		fmt.Fprintf(e.stdout, "keep the passphrase and the key safe: without either nothing in the repository can be read\n")
	case c.Keeper != nil:
		fmt.Fprintf(e.stdout, "keep the key (%s) safe: without it nothing in the repository can be read\n", keyURLEnv)
	default:
		fmt.Fprintf(e.stdout, "keep the passphrase safe: without it nothing in the repository can be read\n")
	}
	return nil
}

// kdfParams maps --kdf-cost to argon2id parameters (nil: calibrated).
func kdfParams(cost string) (*crypto.Argon2Params, error) {
	switch cost {
	case "", "default":
		return nil, nil
	case "low":
		return &crypto.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}, nil
	}
	return nil, usageErrorf(`--kdf-cost=%q: want "low" (tests only) or nothing`, cost)
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
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	r := sess.Repo
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
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	r := sess.Repo
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

// readDataFlag is --read-data (every byte) or --read-data=PCT.
type readDataFlag struct{ pct float64 } // 0: off

func (f *readDataFlag) IsBoolFlag() bool { return true }

func (f *readDataFlag) String() string {
	if f == nil || f.pct == 0 {
		return "false"
	}
	return strconv.FormatFloat(f.pct, 'g', -1, 64)
}

func (f *readDataFlag) Set(v string) error {
	switch strings.ToLower(v) {
	case "true":
		f.pct = 100
		return nil
	case "false":
		f.pct = 0
		return nil
	}
	p, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if err != nil || !(p > 0 && p <= 100) {
		return fmt.Errorf("want a percentage in (0, 100], or nothing for all the data")
	}
	f.pct = p
	return nil
}

func cmdCheck(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var rd readDataFlag
	fs := newFlagSet(e, commandByName("check"), &cf)
	fs.Var(&rd, "read-data", "also read, authenticate and decrypt every chunk of every pack, and in a multi-site\n"+
		"repository verify every site's copy; --read-data=PCT reads a random PCT% of the packs\n"+
		"(a scrub spread over several runs; every site's copies are still all verified)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		if _, err := strconv.ParseFloat(strings.TrimSuffix(pos[0], "%"), 64); err == nil {
			return usageErrorf("check takes no arguments (got %q): write a percentage as --read-data=%s", pos, pos[0])
		}
		return usageErrorf("check takes no arguments (got %q)", pos)
	}
	readData := rd.pct > 0
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	r := sess.Repo
	start := time.Now()
	opts := &reprise.CheckOptions{ReadData: readData}
	if rd.pct < 100 {
		opts.ReadDataPercent = rd.pct
	}
	rep, err := r.Check(ctx, opts)
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
	// In a multi-site repository the tenant-level read of --read-data
	// reads one copy, from whichever site answers first, and does not fall
	// back on another: a bad copy on one site may then show as a tenant
	// problem as well. Say so when the per-site verification found good
	// copies of the object.
	badSites := map[string][]string{}
	for _, p := range rep.Problems {
		if p.Site != "" && p.Object != "" {
			badSites[p.Object] = append(badSites[p.Object], p.Site)
		}
	}
	for _, p := range rep.Problems {
		line := problemLine(p)
		if bad := slices.Sorted(slices.Values(badSites[p.Object])); p.Site == "" && len(bad) > 0 && len(bad) < len(sess.Sites) {
			line += fmt.Sprintf(" (the copy read was bad; only site(s) %s hold bad copies, the others verify: 'reprise repair' fixes it)", strings.Join(bad, ", "))
		}
		fmt.Fprintf(e.stdout, "problem: %s\n", line)
	}
	if sess.Multi != nil {
		if readData {
			bySite := map[string]int{}
			for _, p := range rep.Problems {
				if p.Site != "" {
					bySite[p.Site]++
				}
			}
			for _, s := range sess.Sites {
				status := "every copy verified"
				if n := bySite[s.Name]; n > 0 {
					status = fmt.Sprintf("%d bad or missing copies (run 'reprise repair')", n)
				}
				fmt.Fprintf(e.stdout, "site %s (%s): %s\n", s.Name, s.Domain, status)
			}
		} else {
			fmt.Fprintf(e.stdout, "the copies on each of the %d sites are verified only with --read-data\n", len(sess.Sites))
		}
	}
	if n := len(rep.Problems); n > 0 {
		return fmt.Errorf("check found %d problem(s)", n)
	}
	fmt.Fprintln(e.stdout, "no problems found")
	return nil
}

// problemLine formats a check problem on one line, naming its tenant and
// object, or, for a bad copy on one site of a multi-site repository, the
// site and the object: "site NAME: OBJECT: REASON".
func problemLine(p reprise.Problem) string {
	obj := p.Object
	if obj == "" {
		obj = "-"
	}
	msg := strings.ReplaceAll(fmt.Sprint(p.Err), "\n", "; ")
	if p.Site != "" {
		return fmt.Sprintf("site %s: %s: %s", p.Site, obj, msg)
	}
	scope := "repository"
	if p.Tenant != "" {
		scope = fmt.Sprintf("tenant %q", p.Tenant)
	}
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

// withCreate adds create=true to an s3://, gs:// or azblob:// URL that does
// not say otherwise.
func withCreate(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "s3" && u.Scheme != "gs" && u.Scheme != "azblob") {
		return raw
	}
	q := u.Query()
	if q.Has("create") {
		return raw
	}
	q.Set("create", "true")
	u.RawQuery = q.Encode()
	return u.String()
}
