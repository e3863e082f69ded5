package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/examples/internal/cliutil"
)

// Commands with subcommands: "reprise key add ...", "reprise tenant erase
// ...". Each subcommand is a command of its own, named "key add".
var (
	keyCommands    []*command
	tenantCommands []*command
)

func init() {
	const newCred = "(--new-key-url-env VAR | --new-key-url URL | --new-password-env VAR)"
	keyCommands = []*command{
		{"key add", "--repo URL " + newCred + " [--label L] [--kdf-cost=low]", "add a key slot: another passphrase or key keeper that opens the repository", cmdKeyAdd},
		{"key list", "--repo URL [--json]", "list the key slots", cmdKeyList},
		{"key remove", "--repo URL SLOT", "remove a key slot, by ID or unique ID prefix (not the one in use, not the last)", cmdKeyRemove},
		{"key rotate", "--repo URL [" + newCred + "] [--label L] [--kdf-cost=low]", "replace the key slot in use by one with fresh key material (same credentials unless new ones are given)", cmdKeyRotate},
	}
	tenantCommands = []*command{
		{"tenant erase", "--repo URL TENANT [--rotate] [--kdf-cost=low]", "crypto-shred a tenant: destroy its keys, then delete its objects", cmdTenantErase},
		{"tenant roll", "--repo URL --tenant T", "start a new key generation for a tenant's new data (creates the tenant if new)", cmdTenantRoll},
	}
}

func cmdKey(ctx context.Context, e *env, args []string) error {
	return runGroup(ctx, e, commandByName("key"), keyCommands, args)
}

func cmdTenant(ctx context.Context, e *env, args []string) error {
	return runGroup(ctx, e, commandByName("tenant"), tenantCommands, args)
}

// runGroup runs the subcommand of group named by args[0].
func runGroup(ctx context.Context, e *env, group *command, subs []*command, args []string) error {
	if len(args) == 0 {
		printGroupUsage(e.stderr, group, subs)
		return &exitErr{code: exitUsage, err: fmt.Errorf("%s needs a subcommand", group.name)}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		printGroupUsage(e.stderr, group, subs)
		return &exitErr{code: exitOK}
	}
	for _, c := range subs {
		if c.name == group.name+" "+args[0] {
			return c.run(ctx, e, args[1:])
		}
	}
	printGroupUsage(e.stderr, group, subs)
	return &exitErr{code: exitUsage, err: fmt.Errorf("unknown subcommand %q of %s", args[0], group.name)}
}

func printGroupUsage(w io.Writer, group *command, subs []*command) {
	fmt.Fprintf(w, "usage: reprise %s SUBCOMMAND [flags] [arguments]\n\n%s.\n\nsubcommands:\n", group.name, group.summary)
	for _, c := range subs {
		fmt.Fprintf(w, "  reprise %s %s\n      %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'reprise %s SUBCOMMAND -h' for a subcommand's flags.\n", group.name)
}

// subcommandByName returns the registered subcommand called name ("key add").
func subcommandByName(name string) *command {
	for _, l := range [][]*command{keyCommands, tenantCommands} {
		for _, c := range l {
			if c.name == name {
				return c
			}
		}
	}
	panic("unknown subcommand " + name)
}

// newCredFlags are the flags giving new credentials to key add and key
// rotate: exactly one of them, or none (rotate only).
type newCredFlags struct {
	keyURL, keyURLEnv, passwordEnv string
}

func (n *newCredFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.keyURLEnv, "new-key-url-env", "", "name of the environment `VAR`iable holding the new key keeper URL (base64key://, awskms://,\n"+
		"gcpkms://, azurekeyvault://): preferred over --new-key-url, which shows in ps and shell history")
	fs.StringVar(&n.keyURL, "new-key-url", "", "new key keeper `URL`; a base64key:// URL holds the key itself: use --new-key-url-env instead")
	fs.StringVar(&n.passwordEnv, "new-password-env", "", "name of the environment `VAR`iable holding the new passphrase")
}

func (n *newCredFlags) count() int {
	c := 0
	for _, v := range []string{n.keyURL, n.keyURLEnv, n.passwordEnv} {
		if v != "" {
			c++
		}
	}
	return c
}

// envName matches the names of environment variables worth repeating in
// a message (a value that is not one might be a secret given by mistake).
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func readEnv(e *env, flagName, name string) (string, error) {
	v := e.getenv(name)
	if v != "" {
		return v, nil
	}
	if envName.MatchString(name) {
		return "", fmt.Errorf("--%s: the environment variable %s is not set or empty (the flag takes the name of a variable, not its value)", flagName, name)
	}
	return "", fmt.Errorf("--%s takes the name of an environment variable holding the secret, not the secret itself", flagName)
}

// open returns the new credentials, a description of them, and a
// function releasing them.
func (n *newCredFlags) open(ctx context.Context, e *env) (reprise.Credentials, string, func(), error) {
	switch {
	case n.passwordEnv != "":
		p, err := readEnv(e, "new-password-env", n.passwordEnv)
		if err != nil {
			return reprise.Credentials{}, "", nil, err
		}
		b := []byte(p)
		return reprise.Credentials{Passphrase: b}, "the passphrase in " + n.passwordEnv, func() { clear(b) }, nil
	case n.keyURLEnv != "" || n.keyURL != "":
		raw, source := n.keyURL, "--new-key-url"
		if n.keyURLEnv != "" {
			v, err := readEnv(e, "new-key-url-env", n.keyURLEnv)
			if err != nil {
				return reprise.Credentials{}, "", nil, err
			}
			raw, source = v, n.keyURLEnv
		} else if cliutil.SecretInURL(raw) {
			fmt.Fprintf(e.stderr, "reprise: warning: --new-key-url puts the key on the command line (visible in ps and shell history): prefer --new-key-url-env VAR\n")
		}
		k, err := cliutil.OpenKeeper(ctx, raw, source)
		if err != nil {
			return reprise.Credentials{}, "", nil, err
		}
		return reprise.Credentials{Keeper: k}, "the key keeper of " + source, func() { k.Close() }, nil
	}
	return reprise.Credentials{}, "", func() {}, nil
}

// slotLine describes a key slot on one line.
func slotLine(s reprise.KeySlot) string {
	l := fmt.Sprintf("%s (%s", s.ID[:12], s.Type)
	if s.Label != "" {
		l += fmt.Sprintf(", label %q", s.Label)
	}
	return l + ")"
}

// inUse returns the slot the session opened the repository with.
func inUse(r *reprise.Repository) (reprise.KeySlot, bool) {
	for _, s := range r.KeySlots() {
		if s.InUse {
			return s, true
		}
	}
	return reprise.KeySlot{}, false
}

// sameCredentials returns the credentials of the environment that open
// the slot in use: a rotation without new credentials keeps them.
func sameCredentials(sess *cliutil.Session) (reprise.Credentials, reprise.KeySlot, error) {
	s, ok := inUse(sess.Repo)
	if !ok {
		return reprise.Credentials{}, s, errors.New("the key slot in use is not listed (removed meanwhile?)")
	}
	return sess.Creds.Only(s.Type != "passphrase"), s, nil
}

func cmdKeyAdd(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var nc newCredFlags
	var label, kdfCost string
	fs := newFlagSet(e, subcommandByName("key add"), &cf)
	nc.register(fs)
	fs.StringVar(&label, "label", "", "`description` of the new slot (not secret), e.g. break-glass")
	fs.StringVar(&kdfCost, "kdf-cost", "", "derivation `cost` of a new passphrase slot: \"low\" is cheap, for tests only (default: calibrated)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("key add takes no arguments (got %q)", pos)
	}
	if nc.count() != 1 {
		return usageErrorf("key add needs exactly one of --new-key-url-env VAR, --new-key-url URL and --new-password-env VAR")
	}
	argon, err := kdfParams(kdfCost)
	if err != nil {
		return err
	}
	// The new credentials first: a mistake there costs no key derivation.
	cred, desc, release, err := nc.open(ctx, e)
	if err != nil {
		return err
	}
	defer release()
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	s, err := sess.Repo.AddKeySlot(ctx, cred, &reprise.KeySlotOptions{Label: label, Argon2: argon})
	if err != nil {
		return fmt.Errorf("adding a key slot: %w", err)
	}
	fmt.Fprintf(e.stdout, "added key slot %s, opened by %s; every tenant's keys are wrapped to it\n", slotLine(s), desc)
	return nil
}

// keySlotJSON is one element of "key list --json".
type keySlotJSON struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Label   string    `json:"label"`
	Created time.Time `json:"created"`
	InUse   bool      `json:"in_use"`
}

func cmdKeyList(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var asJSON bool
	fs := newFlagSet(e, subcommandByName("key list"), &cf)
	fs.BoolVar(&asJSON, "json", false, "print a JSON array")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("key list takes no arguments (got %q)", pos)
	}
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	slots := sess.Repo.KeySlots()
	if asJSON {
		out := make([]keySlotJSON, len(slots))
		for i, s := range slots {
			out[i] = keySlotJSON{ID: s.ID, Type: s.Type, Label: s.Label, Created: s.Created, InUse: s.InUse}
		}
		return writeJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tLABEL\tCREATED\tIN USE")
	for _, s := range slots {
		use := ""
		if s.InUse {
			use = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID[:16], s.Type, s.Label, s.Created.Local().Format("2006-01-02 15:04:05"), use)
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "%d key slot(s)\n", len(slots))
	return nil
}

func cmdKeyRemove(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	fs := newFlagSet(e, subcommandByName("key remove"), &cf)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageErrorf("key remove takes one SLOT: an ID or a unique ID prefix (see 'reprise key list')")
	}
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	var desc string
	for _, s := range sess.Repo.KeySlots() {
		if strings.HasPrefix(s.ID, pos[0]) {
			desc = slotLine(s)
		}
	}
	if err := sess.Repo.RemoveKeySlot(ctx, pos[0]); err != nil {
		if errors.Is(err, reprise.ErrLastSlot) {
			return err
		}
		return fmt.Errorf("removing key slot %s: %w", pos[0], err)
	}
	fmt.Fprintf(e.stdout, "removed key slot %s and its wrapped keys from every tenant\n", desc)
	return nil
}

func cmdKeyRotate(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var nc newCredFlags
	var label, kdfCost string
	fs := newFlagSet(e, subcommandByName("key rotate"), &cf)
	nc.register(fs)
	fs.StringVar(&label, "label", "", "`description` of the new slot (default: the old slot's)")
	fs.StringVar(&kdfCost, "kdf-cost", "", "derivation `cost` of a new passphrase slot: \"low\" is cheap, for tests only (default: calibrated)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("key rotate takes no arguments (got %q)", pos)
	}
	if nc.count() > 1 {
		return usageErrorf("key rotate takes at most one of --new-key-url-env, --new-key-url and --new-password-env")
	}
	argon, err := kdfParams(kdfCost)
	if err != nil {
		return err
	}
	newCred, desc, release, err := nc.open(ctx, e)
	if err != nil {
		return err
	}
	defer release()
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	cred, old, err := sameCredentials(sess)
	if err != nil {
		return err
	}
	if nc.count() == 1 {
		cred = newCred
	} else {
		desc = "the same credentials"
	}
	s, err := sess.Repo.RotateKey(ctx, cred, &reprise.KeySlotOptions{Label: label, Argon2: argon})
	if err != nil {
		return fmt.Errorf("rotating key slot %s: %w", old.ID[:12], err)
	}
	fmt.Fprintf(e.stdout, "rotated key slot %s: replaced by %s with fresh key material, opened by %s; every tenant key rewrapped, the old slot deleted\n",
		slotLine(old), slotLine(s), desc)
	if nc.count() == 0 {
		fmt.Fprintf(e.stdout, "note: old copies of the old slot still open with these credentials: rotate to a new passphrase or KMS key (and disable the old key version) to end that\n")
	}
	return nil
}

func cmdTenantErase(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var rotate bool
	var kdfCost string
	fs := newFlagSet(e, subcommandByName("tenant erase"), &cf)
	fs.BoolVar(&rotate, "rotate", false, "after erasing, rotate the key slot in use (same credentials, fresh key material)")
	fs.StringVar(&kdfCost, "kdf-cost", "", "with --rotate, derivation `cost` of the new passphrase slot: \"low\" is for tests only (default: calibrated)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageErrorf("tenant erase takes one TENANT name")
	}
	name := pos[0]
	argon, err := kdfParams(kdfCost)
	if err != nil {
		return err
	}
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	r := sess.Repo
	er, err := r.EraseTenant(ctx, name)
	if errors.Is(err, reprise.ErrTenantNotFound) {
		return fmt.Errorf("tenant %q not found in this repository (see 'reprise tenants')", name)
	}
	if err != nil {
		return fmt.Errorf("erasing tenant %q: %w", name, err)
	}
	done := fmt.Sprintf("erased tenant %q: its key envelope destroyed, then its %d object(s) deleted", name, er.Deleted)
	if len(er.Retained) > 0 {
		until := ""
		if !er.RetainedUntil.IsZero() {
			until = " until " + er.RetainedUntil.Local().Format("2006-01-02 15:04:05")
		}
		done += fmt.Sprintf("; %d object(s) are under retention (object lock)%s and stay, undecryptable: run 'reprise tenant erase' again once it ends, and do not reuse the name before", len(er.Retained), until)
	}
	if !rotate {
		fmt.Fprintln(e.stdout, done)
		fmt.Fprintln(e.stdout, "guarantee: nothing the repository holds decrypts the tenant's data, nor copies of it made earlier (other sites, bucket versions, stolen disks); "+
			"limit: an old copy of its key envelope still opens with a current key slot (erase with --rotate, and destroy old KMS key versions, to close that)")
		return nil
	}
	cred, old, err := sameCredentials(sess)
	if err == nil {
		var s reprise.KeySlot
		if s, err = r.RotateKey(ctx, cred, &reprise.KeySlotOptions{Argon2: argon}); err == nil {
			fmt.Fprintf(e.stdout, "%s; key slot %s rotated to %s (fresh key material, every remaining tenant key rewrapped, the old slot deleted)\n", done, old.ID[:12], s.ID[:12])
		}
	}
	if err != nil {
		fmt.Fprintln(e.stdout, done)
		return fmt.Errorf("tenant erased, but rotating the key slot in use failed (run 'reprise key rotate'): %w", err)
	}
	fmt.Fprintln(e.stdout, "guarantee: nothing the repository holds decrypts the tenant's data or earlier copies of it; an old copy of its envelope opens only with an old copy "+
		"of the replaced slot plus its credentials (change the passphrase or disable the old KMS key version to end that)")
	if others := len(r.KeySlots()) - 1; others > 0 {
		fmt.Fprintf(e.stdout, "warning: %d other key slot(s) were not rotated: an old copy of the envelope still opens with any of them; open with each and run 'reprise key rotate'\n", others)
	}
	return nil
}

func cmdTenantRoll(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var tenant string
	fs := newFlagSet(e, subcommandByName("tenant roll"), &cf)
	fs.StringVar(&tenant, "tenant", "", "`name` of the tenant (required; created if new)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("tenant roll takes no arguments (got %q)", pos)
	}
	if tenant == "" {
		return usageErrorf("--tenant is required")
	}
	sess, err := openRepo(ctx, e, &cf)
	if err != nil {
		return err
	}
	defer sess.Close()
	t, err := sess.Repo.OpenTenant(ctx, tenant)
	created := false
	if errors.Is(err, reprise.ErrTenantNotFound) {
		t, err = sess.Repo.Tenant(ctx, tenant)
		created = true
	}
	if err != nil {
		return fmt.Errorf("tenant %q: %w", tenant, err)
	}
	defer t.Close()
	if created {
		fmt.Fprintf(e.stdout, "created tenant %q (no backup yet)\n", tenant)
	}
	gen, err := t.RollKey(ctx)
	if err != nil {
		return fmt.Errorf("tenant %q: rolling the key: %w", tenant, err)
	}
	fmt.Fprintf(e.stdout, "tenant %q: key generation %d now encrypts new data; older snapshots stay readable under their generation "+
		"(the next backup stores its data again: no deduplication across generations)\n", tenant, gen)
	return nil
}
