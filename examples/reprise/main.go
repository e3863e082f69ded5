// Command reprise is a command-line front end to the Reprise backup
// library: it creates repositories, backs up directories and streams into
// them, lists and restores snapshots, and checks repositories.
//
// The credentials are read from the environment variables REPRISE_PASSWORD
// (a passphrase) and REPRISE_KEY_URL (a gocloud.dev/secrets key keeper
// URL), never from flags. --repo may be repeated, NAME:DOMAIN=URL, for a
// repository kept on several sites. Run "reprise help" for the list of
// commands.
//
// REPRISE_CPUPROFILE=FILE writes a CPU profile of the command to FILE (for
// performance reports: go tool pprof FILE).
//
// Exit status: 0 on success, 1 on error, 2 on a usage error, 3 when a
// backup was saved but some paths could not be read, 130 when interrupted.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"golang.org/x/term"
)

// Exit statuses.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitPartial     = 3 // backup saved, but some paths were skipped
	exitInterrupted = 130
)

// env is what a command sees of the outside world, so that commands can
// be run in-process with other streams.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// progress is true when live progress may be drawn on stderr (it is a
	// terminal).
	progress bool
}

// command is one subcommand.
type command struct {
	name    string
	args    string // synopsis of the arguments, after the name
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

// commands lists the subcommands in the order help shows them.
var commands []*command

func init() {
	commands = []*command{
		{"init", "--repo URL [--repo ...] [--pack-size SIZE] [--codec zstd|s2] [--kdf-cost=low] [--label L]", "create a repository", cmdInit},
		{"backup", "--repo URL --tenant T [--json] PATH\n       reprise backup --repo URL --tenant T --stdin --name NAME [--json]", "back up a directory, or standard input", cmdBackup},
		{"snapshots", "--repo URL --tenant T [--json]", "list a tenant's snapshots, oldest first", cmdSnapshots},
		{"restore", "--repo URL --tenant T ID|latest --target DIR [--overwrite|--resume]\n       reprise restore --repo URL --tenant T ID|latest --stdout", "restore a snapshot into a directory, or to standard output", cmdRestore},
		{"check", "--repo URL [--read-data[=PCT]]", "verify the repository; --read-data reads every byte (and every site's copy)", cmdCheck},
		{"repair", "--repo URL --repo URL ... [--json]", "bring every site of a multi-site repository back to a full, verified copy", cmdRepair},
		{"restore-all", "--repo URL --target DIR [--priority FILE] [--parallel N] [--resume] [--json]", "restore every tenant's latest snapshot into DIR/<tenant>, in priority order", cmdRestoreAll},
		{"forget", "--repo URL --tenant T [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N]\n       [--keep-monthly N] [--keep-yearly N] [--keep-within DURATION] [--dry-run] [--prune] [--json]", "apply a retention policy to a tenant's snapshots", cmdForget},
		{"prune", "--repo URL [--grace DURATION] [--dry-run] [--json]", "reclaim the space no snapshot uses (safe with concurrent backups)", cmdPrune},
		{"tenants", "--repo URL [--json]", "list the repository's tenants", cmdTenants},
		{"health", "--repo URL [--stale-after DURATION] [--json]", "report, per tenant and source, whether backups are fresh; exit 1 if not", cmdHealth},
		{"drill", "--repo URL --tenant T [ID|latest] [--sample PCT] [--json]", "restore a snapshot to nowhere, verifying everything, and time it", cmdDrill},
		{"key", "add|list|remove|rotate --repo URL ...", "manage the key slots (passphrases and key keepers) that open the repository", cmdKey},
		{"tenant", "erase|roll --repo URL ...", "erase a tenant (crypto-shredding), or roll its key", cmdTenant},
		{"help", "[COMMAND]", "show this help, or a command's flags", cmdHelp},
	}
}

func main() { os.Exit(mainStatus()) }

// mainStatus runs the command line and returns the exit status; main
// exits with it once the deferred calls (the CPU profile) have run.
func mainStatus() int {
	if os.Getenv("GOGC") == "" {
		// Backups and restores hold a bounded working set (packs being
		// filled and uploaded, chunks in flight) and allocate little
		// besides: a GC target of 50% instead of 100% keeps the process
		// close to that working set for a few percent of CPU. GOGC (and
		// GOMEMLIMIT) in the environment still decide when set.
		debug.SetGCPercent(50)
	}
	if p := os.Getenv("REPRISE_CPUPROFILE"); p != "" {
		// A CPU profile of the whole command, for performance reports:
		// go tool pprof reprise FILE.
		if f, err := os.Create(p); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default handling, so a
		// second Ctrl-C kills the process at once.
		<-ctx.Done()
		stop()
	}()
	e := &env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv,
		progress: term.IsTerminal(int(os.Stderr.Fd())),
	}
	code := run(ctx, e, os.Args[1:])
	stop()
	return code
}

// run runs the command line args (without the program name) and returns
// the exit status.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		printUsage(e.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		printUsage(e.stdout)
		return exitOK
	}
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(e.stderr, "reprise: unknown command %q\n\n", name)
		printUsage(e.stderr)
		return exitUsage
	}
	err := cmd.run(ctx, e, args[1:])
	return report(ctx, e, err)
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// exitErr carries an exit status other than exitError. A nil err means
// the command already said everything it had to.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitErr) Unwrap() error { return e.err }

// usageErrorf reports a command line that does not make sense.
func usageErrorf(format string, args ...any) error {
	return &exitErr{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// report prints err (if any) and maps it to an exit status.
func report(ctx context.Context, e *env, err error) int {
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, ctx.Err())) {
		fmt.Fprintln(e.stderr, "reprise: interrupted")
		return exitInterrupted
	}
	code := exitError
	var xe *exitErr
	if errors.As(err, &xe) {
		code = xe.code
		if xe.err == nil {
			return code
		}
	}
	msg := strings.TrimPrefix(err.Error(), "reprise: ")
	fmt.Fprintf(e.stderr, "reprise: %s\n", msg)
	if code == exitUsage {
		fmt.Fprintln(e.stderr, "run 'reprise help' for usage")
	}
	return code
}

const usageHead = `reprise: encrypted, chunked, deduplicated backups

usage: reprise COMMAND [flags] [arguments]

commands:
`

const usageTail = `
credentials (from the environment, never from flags):
  REPRISE_PASSWORD  a passphrase
  REPRISE_KEY_URL   a gocloud.dev/secrets key keeper URL: base64key://KEY (a
                    32-byte key in URL-safe base64), awskms://, gcpkms://,
                    azurekeyvault:// (not linked into -tags nocloud builds).
                    hashivault:// is not supported: its driver is a separate
                    Go module this build does not include.
  Either opens the repository; with both set, any key slot either opens will
  do. init creates a keeper slot with REPRISE_KEY_URL, a passphrase slot with
  REPRISE_PASSWORD, and both when both are set. 'reprise key add' adds others.

repository location (--repo, on every command):
  a directory path, file:///path, or (when the drivers are linked in)
  s3://bucket/prefix, gs://bucket/prefix, azblob://container/prefix.
  Repeat --repo for a multi-site repository, one per site, each written
  NAME:DOMAIN=URL: a site name and its failure domain (the building, region or
  provider one disaster takes out). NAME and DOMAIN are made of A-Z a-z 0-9
  _ . - (site names in lower case); a value that is not of this form is a plain
  URL (one site in a domain of its own, named site1, site2... by position).
  Every object goes to every site; --write-quorum N lets a write succeed once N
  sites hold it (default: all), the others catching up with 'reprise repair'.
  Sites must span two failure domains or more; --allow-single-domain overrides
  that, for tests and laptops. A site that cannot be opened counts as down.
  Give the same --repo flags to every command.

Flags may come before or after the arguments; --flag=value and --flag value
both work. Every command also takes --verbose (debug logs on stderr) and
--append-only (for machines whose credentials may add backups but not delete:
nothing is deleted or overwritten; forget, prune, tenant erase and roll, key
changes and repair are refused — run them elsewhere, with other credentials).
Run 'reprise help COMMAND' (or 'reprise COMMAND -h') for a command's flags.

examples:
  export REPRISE_PASSWORD='a long passphrase'
  reprise init --repo /srv/backup
  reprise init --repo /srv/fast --codec=s2    # chunks in S2: faster, less compact
  reprise backup --repo /srv/backup --tenant acme /var/lib/acme
  pg_dump acme | reprise backup --repo /srv/backup --tenant acme --stdin --name acme.sql
  reprise snapshots --repo /srv/backup --tenant acme
  reprise restore --repo /srv/backup --tenant acme latest --target /tmp/acme
  reprise restore --repo /srv/backup --tenant acme latest --stdout | psql acme
  reprise check --repo /srv/backup --read-data
  reprise health --repo /srv/backup --stale-after 26h
  reprise drill --repo /srv/backup --tenant acme latest

  # keys: add a KMS key, then use it alone
  export NEW_KEY_URL='awskms://alias/reprise?region=eu-west-3'
  reprise key add --repo /srv/backup --new-key-url-env NEW_KEY_URL --label automation
  REPRISE_PASSWORD= REPRISE_KEY_URL=$NEW_KEY_URL reprise key list --repo /srv/backup
  reprise tenant erase --repo /srv/backup acme --rotate

  # two sites in two failure domains
  reprise init --repo sbg1:strasbourg=/mnt/a --repo rbx:roubaix=s3://b/x
  reprise backup --repo sbg1:strasbourg=/mnt/a --repo rbx:roubaix=s3://b/x --tenant acme /var/lib/acme
  reprise repair --repo sbg1:strasbourg=/mnt/a --repo rbx:roubaix=s3://b/x

exit status: 0 success, 1 error (check: problems found; health: a source is
STALE, FAILED or NEVER; repair: something unrepairable; drill: incomplete),
2 usage error, 3 backup saved but some paths could not be read, 130
interrupted.
`

func printUsage(w io.Writer) {
	fmt.Fprint(w, usageHead)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, usageTail)
}

func cmdHelp(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		printUsage(e.stdout)
		return nil
	}
	c := lookup(args[0])
	if c == nil || c.name == "help" {
		if c == nil {
			return usageErrorf("unknown command %q", args[0])
		}
		printUsage(e.stdout)
		return nil
	}
	// Every command prints its own usage on -h ("help key add" asks the
	// subcommand).
	return c.run(ctx, &env{stdin: e.stdin, stdout: e.stdout, stderr: e.stdout, getenv: e.getenv}, append(args[1:len(args):len(args)], "-h"))
}

// newLogger returns the library logger for --verbose: debug logs to
// stderr; nil (discard) otherwise.
func newLogger(e *env, verbose bool) *slog.Logger {
	if !verbose {
		return nil
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
