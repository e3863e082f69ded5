package storage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Opener opens a driver for a URL of the scheme it was registered for.
// The URL has already been parsed; its scheme is lower case.
type Opener func(ctx context.Context, u *url.URL) (Storage, error)

var registry struct {
	mu      sync.RWMutex
	openers map[string]Opener
}

// knownDrivers maps schemes served by Reprise's own driver subpackages to
// the import path that registers them, for the "forgot the blank import"
// hint of Open.
var knownDrivers = map[string]string{
	"s3":     "github.com/reprise-backup/reprise/storage/s3store",
	"gs":     "github.com/reprise-backup/reprise/storage/blobstore",
	"azblob": "github.com/reprise-backup/reprise/storage/blobstore",
}

func init() {
	Register("file", openFileURL)
	Register("mem", openMemURL)
}

// Register makes a driver available to [Open] under a URL scheme. Drivers
// call it from an init function, so a program links a driver in with a
// blank import. The scheme must be lower case, made of letters, digits,
// '+', '-' and '.', starting with a letter. Register panics if the scheme
// is malformed, o is nil, or the scheme is already registered.
func Register(scheme string, o Opener) {
	if !validScheme(scheme) || strings.ToLower(scheme) != scheme {
		panic(fmt.Sprintf("storage: Register: malformed scheme %q", scheme))
	}
	if o == nil {
		panic(fmt.Sprintf("storage: Register: nil opener for scheme %q", scheme))
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if _, dup := registry.openers[scheme]; dup {
		panic(fmt.Sprintf("storage: Register: scheme %q registered twice", scheme))
	}
	if registry.openers == nil {
		registry.openers = make(map[string]Opener)
	}
	registry.openers[scheme] = o
}

// Schemes returns the registered URL schemes, sorted.
func Schemes() []string {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	s := make([]string, 0, len(registry.openers))
	for k := range registry.openers {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// Open opens the storage at rawURL. A string of the form "scheme://..."
// (or "file:...") is a URL handled by the driver registered for its scheme;
// anything else is a local directory path, absolute or relative, opened
// with the filesystem driver. See the package documentation, section URLs,
// for the schemes built in.
//
// An unregistered scheme fails with an error that lists the registered
// schemes and names the blank import that would register it.
func Open(ctx context.Context, rawURL string) (Storage, error) {
	if rawURL == "" {
		return nil, errors.New("storage: empty repository location")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var u *url.URL
	if isURL(rawURL) {
		var err error
		u, err = url.Parse(rawURL)
		if err != nil {
			// url.Error repeats the URL, which may hold credentials.
			return nil, fmt.Errorf("storage: malformed repository URL with scheme %q: %w", schemeOf(rawURL), errors.Unwrap(err))
		}
	} else {
		abs, err := filepath.Abs(rawURL)
		if err != nil {
			return nil, fmt.Errorf("storage: repository path %q: %w", rawURL, err)
		}
		u = &url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}
	}
	registry.mu.RLock()
	o := registry.openers[u.Scheme]
	registry.mu.RUnlock()
	if o == nil {
		return nil, unknownScheme(u.Scheme)
	}
	return o(ctx, u)
}

func unknownScheme(scheme string) error {
	hint := "link the driver in with a blank import of its package"
	if pkg, ok := knownDrivers[scheme]; ok {
		hint = fmt.Sprintf("link the driver in with: import _ %q", pkg)
	}
	return fmt.Errorf("storage: unknown URL scheme %q (registered: %s); %s",
		scheme, strings.Join(Schemes(), ", "), hint)
}

// isURL tells a URL from a local path: "scheme://" with a well-formed
// scheme of two characters or more (so "C://x" stays a path), or the
// "file:" scheme in any form RFC 8089 allows.
func isURL(s string) bool {
	if strings.HasPrefix(strings.ToLower(s), "file:") {
		return true
	}
	i := strings.Index(s, "://")
	return i >= 2 && validScheme(s[:i])
}

func schemeOf(s string) string {
	if i := strings.Index(s, ":"); i >= 0 {
		return strings.ToLower(s[:i])
	}
	return ""
}

func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// openFileURL serves file:///abs/path, file://localhost/abs/path,
// file:/abs/path and file:relative/path, with the optional query
// parameters nosync=1 and buffered=1 (see FSOptions).
func openFileURL(ctx context.Context, u *url.URL) (Storage, error) {
	var opts FSOptions
	for k, vs := range u.Query() {
		switch k {
		case "nosync":
			v := vs[len(vs)-1]
			switch v {
			case "", "1", "true":
				opts.NoSync = true
			case "0", "false":
			default:
				return nil, fmt.Errorf("storage: file URL: nosync=%q: want 1, true, 0 or false", v)
			}
		case "buffered":
			v := vs[len(vs)-1]
			switch v {
			case "", "1", "true":
				opts.Buffered = true
			case "0", "false":
			default:
				return nil, fmt.Errorf("storage: file URL: buffered=%q: want 1, true, 0 or false", v)
			}
		default:
			return nil, fmt.Errorf("storage: file URL: unknown parameter %q (known: nosync, buffered)", k)
		}
	}
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("storage: file URL with host %q: only local paths are supported (write file:///abs/path or a plain path)", u.Host)
	}
	p := u.Path
	if u.Opaque != "" {
		p = u.Opaque // file:relative/path
	}
	if p == "" {
		return nil, errors.New("storage: file URL without a path")
	}
	return NewFS(filepath.FromSlash(p), &opts)
}

var memStores struct {
	mu sync.Mutex
	m  map[string]*Mem
}

// openMemURL serves mem://NAME (shared per process) and mem:// (fresh).
func openMemURL(ctx context.Context, u *url.URL) (Storage, error) {
	if u.RawQuery != "" {
		return nil, errors.New("storage: mem URL takes no parameters")
	}
	name := u.Host + u.Path
	if name == "" {
		return NewMem(), nil
	}
	memStores.mu.Lock()
	defer memStores.mu.Unlock()
	m := memStores.m[name]
	if m == nil {
		if memStores.m == nil {
			memStores.m = make(map[string]*Mem)
		}
		m = NewMem()
		memStores.m[name] = m
	}
	return m, nil
}
