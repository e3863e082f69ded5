package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/reprise-backup/reprise"
)

// commonFlags are taken by every command that opens a repository.
type commonFlags struct {
	repos             stringList // --repo, repeatable: one per site
	writeQuorum       int
	allowSingleDomain bool
	appendOnly        bool
	verbose           bool
}

// newFlagSet returns the flag set of command c, with the common flags
// registered into cf when it is not nil. Errors and -h output go to
// e.stderr.
func newFlagSet(e *env, c *command, cf *commonFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("reprise "+c.name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: reprise %s %s\n\n%s.\n\nflags:\n", c.name, c.args, c.summary)
		printDefaults(fs)
	}
	if cf != nil {
		fs.Var(&cf.repos, "repo", "repository `URL`: a directory path, file://, s3://, gs:// or azblob://; repeat it for a\n"+
			"multi-site repository, each as NAME:DOMAIN=URL (a site name and its failure domain)")
		fs.IntVar(&cf.writeQuorum, "write-quorum", 0, "with several --repo: a write succeeds once `N` sites hold it (default: all sites)")
		fs.BoolVar(&cf.allowSingleDomain, "allow-single-domain", false, "with several --repo: accept sites that all share one failure domain (tests, laptops)")
		fs.BoolVar(&cf.appendOnly, "append-only", false, "open the repository append-only, for credentials that cannot delete: backups and reads work and\n"+
			"never delete or overwrite; forget, prune, tenant erase/roll, key changes and repair are refused")
		fs.BoolVar(&cf.verbose, "verbose", false, "print debug logs to stderr")
	}
	return fs
}

// printDefaults is flag.PrintDefaults with the double-dash spelling the
// documentation uses.
func printDefaults(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if name != "" {
			name = " " + name
		}
		fmt.Fprintf(fs.Output(), "  --%s%s\n    \t%s\n", f.Name, name, strings.ReplaceAll(usage, "\n", "\n    \t"))
	})
}

// commandByName returns the registered command called name.
func commandByName(name string) *command {
	c := lookup(name)
	if c == nil {
		panic("unknown command " + name)
	}
	return c
}

// parseArgs parses args with fs and returns the positional arguments.
// Unlike fs.Parse alone, it accepts flags after positional arguments
// ("restore latest --target DIR"): whenever parsing stops at a positional
// argument, that argument is set aside and parsing resumes after it. A
// "--" ends the flags: everything after it is positional, even if it
// starts with a dash. A -h or --help anywhere returns flag.ErrHelp (the
// usage has been printed).
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		terminated := stopsAtTerminator(fs, args)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if terminated {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// stopsAtTerminator reports whether fs.Parse(args) will stop at a "--"
// (rather than at a positional argument or the end). It follows the flag
// package's rules: "-" and words not starting with a dash are positional,
// a non-boolean flag without "=value" takes the next argument as its
// value, even if that argument is "--".
func stopsAtTerminator(fs *flag.FlagSet, args []string) bool {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return true
		}
		if len(a) < 2 || a[0] != '-' {
			return false
		}
		name := strings.TrimPrefix(a[1:], "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && !isBoolFlag(f) {
			i++ // its value
		}
	}
	return false
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// parseFlags is parseArgs that maps -h to a silent successful exit (the
// usage has been printed) and other flag errors to silent usage errors
// (the flag package has printed them).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, &exitErr{code: exitOK}
	}
	if err != nil {
		// The flag package has already printed the error and the usage.
		return nil, &exitErr{code: exitUsage}
	}
	return pos, nil
}

// codecFlag is a chunk codec: "zstd" or "s2" (reprise.ParseCodec).
type codecFlag reprise.Codec

func (c *codecFlag) String() string { return reprise.Codec(*c).String() }

func (c *codecFlag) Set(v string) error {
	codec, err := reprise.ParseCodec(v)
	if err != nil {
		return err
	}
	*c = codecFlag(codec)
	return nil
}

// sizeFlag is a byte size: a plain number of bytes, or a number with a
// binary unit: K, KiB, M, MiB, G, GiB (case-insensitive; KB, MB and GB
// are read as binary units too).
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// parseSize parses "16MiB", "512k", "1.5G" or "1048576" into bytes.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	var mult float64
	switch unit {
	case "", "b":
		mult = 1
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	case "g", "gb", "gib":
		mult = 1 << 30
	default:
		return 0, fmt.Errorf("size %q: unknown unit %q (want B, KiB, MiB or GiB)", s, unit)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes, or a number and a unit like 16MiB", s)
	}
	v := f * mult
	if v > 1<<50 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return int64(v), nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}
