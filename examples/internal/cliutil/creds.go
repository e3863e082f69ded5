package cliutil

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"gocloud.dev/secrets"
	_ "gocloud.dev/secrets/localsecrets" // base64key://, always available

	"github.com/reprise-backup/reprise"
)

// The environment variables holding the credentials. Credentials are
// never read from flags: flags show in ps and in shell histories.
const (
	// PasswordEnv holds a passphrase.
	PasswordEnv = "REPRISE_PASSWORD"
	// KeyURLEnv holds a gocloud.dev/secrets keeper URL: base64key://KEY
	// (a local 32-byte key, URL-safe base64), awskms://, gcpkms://,
	// azurekeyvault://.
	KeyURLEnv = "REPRISE_KEY_URL"
)

// Creds are the credentials found in the environment. Close them when
// done: it wipes the passphrase and closes the keeper.
type Creds struct {
	reprise.Credentials
	// From names where they came from, for messages: "REPRISE_PASSWORD",
	// "REPRISE_KEY_URL" or "REPRISE_PASSWORD or REPRISE_KEY_URL".
	From string
}

// Close wipes the passphrase and closes the keeper.
func (c *Creds) Close() {
	if c == nil {
		return
	}
	clear(c.Passphrase)
	if c.Keeper != nil {
		c.Keeper.Close()
	}
}

// Only returns the credentials of one kind: the passphrase when
// keeper is false, the keeper otherwise.
func (c *Creds) Only(keeper bool) reprise.Credentials {
	if keeper {
		return reprise.Credentials{Keeper: c.Keeper}
	}
	return reprise.Credentials{Passphrase: c.Passphrase}
}

// ErrNoCredentials reports that neither variable is set.
var ErrNoCredentials = fmt.Errorf("%s is not set: the passphrase is read from the environment (or set %s to a key keeper URL)", PasswordEnv, KeyURLEnv)

// LoadCredentials reads REPRISE_PASSWORD and REPRISE_KEY_URL through
// getenv, opening the keeper of the latter. Both may be set: then both
// are tried, and any slot either opens will do.
func LoadCredentials(ctx context.Context, getenv func(string) string) (*Creds, error) {
	pass, keyURL := getenv(PasswordEnv), getenv(KeyURLEnv)
	if pass == "" && keyURL == "" {
		return nil, ErrNoCredentials
	}
	c := &Creds{}
	var from []string
	if pass != "" {
		c.Passphrase = []byte(pass)
		from = append(from, PasswordEnv)
	}
	if keyURL != "" {
		k, err := OpenKeeper(ctx, keyURL, KeyURLEnv)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Keeper = k
		from = append(from, KeyURLEnv)
	}
	c.From = strings.Join(from, " or ")
	return c, nil
}

// OpenKeeper opens a gocloud.dev/secrets keeper URL; source names where
// the URL came from (an environment variable or a flag), for messages.
// Errors never repeat the URL, which may hold a key (base64key://).
//
// It refuses "base64key://" without a key, which gocloud.dev would turn
// into a random key forgotten when the process ends (a repository
// protected by it could never be opened again), and tells a key in
// standard base64 from one in the URL-safe base64 the driver expects.
func OpenKeeper(ctx context.Context, rawURL, source string) (*secrets.Keeper, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("%s: not a key keeper URL (want base64key://KEY, awskms://..., gcpkms://... or azurekeyvault://...)", source)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme == "base64key" {
		key := strings.TrimPrefix(rawURL[len(u.Scheme):], "://")
		switch {
		case u.Host == "" && u.Path == "":
			return nil, fmt.Errorf("%s: base64key:// without a key would make a random key that is lost when this process ends; "+
				"give the 32-byte key in URL-safe base64: base64key://KEY", source)
		case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(key, "+/"):
			if b, err := base64.StdEncoding.DecodeString(key); err == nil && len(b) == 32 {
				return nil, fmt.Errorf("%s: the key is in standard base64; base64key:// wants URL-safe base64 (replace + with - and / with _)", source)
			}
			return nil, fmt.Errorf("%s: base64key://KEY takes a 32-byte key in URL-safe base64, and nothing else", source)
		}
	}
	if !secrets.DefaultURLMux().ValidKeeperScheme(scheme) {
		hint := "this build links base64key:// (and, unless built with -tags nocloud, awskms://, gcpkms:// and azurekeyvault://)"
		if scheme == "hashivault" {
			hint = "hashivault:// is not linked in: gocloud.dev/secrets/hashivault is a separate module this build does not include"
		}
		return nil, fmt.Errorf("%s: unknown key keeper scheme %q: %s", source, u.Scheme, hint)
	}
	k, err := secrets.OpenKeeper(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("%s: opening the %s:// key keeper: %s", source, scheme, redact(err.Error(), rawURL, u))
	}
	return k, nil
}

// redact removes the URL, and a base64key host, from msg.
func redact(msg, rawURL string, u *url.URL) string {
	msg = strings.ReplaceAll(msg, rawURL, "<url>")
	if u.Host != "" && strings.EqualFold(u.Scheme, "base64key") {
		msg = strings.ReplaceAll(msg, u.Host, "<key>")
	}
	return msg
}

// SecretInURL reports whether rawURL is a base64key:// URL: the key itself
// is in the URL, which should then not be given on a command line.
func SecretInURL(rawURL string) bool {
	return strings.HasPrefix(strings.ToLower(rawURL), "base64key:")
}

// ExplainOpenError turns an error of reprise.Open into a message saying
// what to do.
func ExplainOpenError(err error, c *Creds, sites []Site) error {
	where := Describe(sites)
	switch {
	case errors.Is(err, reprise.ErrWrongKey):
		switch {
		case c.Keeper == nil:
			return fmt.Errorf("wrong passphrase: no key slot opens with %s", PasswordEnv)
		case c.Passphrase == nil:
			return fmt.Errorf("wrong key: no key slot opens with the key keeper of %s", KeyURLEnv)
		}
		return fmt.Errorf("wrong credentials: no key slot opens with %s or %s", PasswordEnv, KeyURLEnv)
	case errors.Is(err, reprise.ErrNotInitialized):
		if len(sites) == 1 {
			return fmt.Errorf("no repository at %s (create one with 'reprise init --repo %s')", where, sites[0].URL)
		}
		return fmt.Errorf("no repository on %s (create one with 'reprise init' and the same --repo flags)", where)
	}
	return fmt.Errorf("opening repository %s: %w", where, err)
}
