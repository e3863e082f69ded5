package s3store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/reprise-backup/reprise/storage"
)

// Scheme is the URL scheme the package registers with [storage.Register].
const Scheme = "s3"

func init() {
	storage.Register(Scheme, func(ctx context.Context, u *url.URL) (storage.Storage, error) {
		return OpenURL(ctx, u)
	})
}

// urlParams lists the query parameters of an s3:// URL.
var urlParams = []string{"concurrency", "create", "endpoint", "object_lock", "part_size", "path_style", "region", "retention"}

// ParseURL parses an s3://BUCKET[/PREFIX][?PARAMETERS] URL (see the package
// documentation, section URLs) into the arguments of [Open].
func ParseURL(u *url.URL) (bucket, prefix string, opts *Options, err error) {
	if u.Scheme != Scheme {
		return "", "", nil, fmt.Errorf("s3store: URL scheme %q, want %q", u.Scheme, Scheme)
	}
	if u.User != nil {
		return "", "", nil, errors.New("s3store: s3 URLs must not hold credentials; use the AWS credential chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...)")
	}
	if u.Opaque != "" {
		return "", "", nil, fmt.Errorf("s3store: malformed URL: want s3://BUCKET[/PREFIX]")
	}
	bucket = u.Host
	if bucket == "" {
		return "", "", nil, errors.New("s3store: URL has no bucket: want s3://BUCKET[/PREFIX]")
	}
	if err := validBucket(bucket); err != nil {
		return "", "", nil, err
	}
	if prefix, err = cleanPrefix(u.Path); err != nil {
		return "", "", nil, err
	}
	opts = &Options{}
	for k, vs := range u.Query() {
		if len(vs) != 1 {
			return "", "", nil, fmt.Errorf("s3store: URL parameter %q given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "region":
			opts.Region = v
		case "endpoint":
			if err := validEndpoint(v); err != nil {
				return "", "", nil, err
			}
			opts.Endpoint = v
		case "path_style":
			if opts.PathStyle, err = parseBool(k, v); err != nil {
				return "", "", nil, err
			}
		case "create":
			if opts.CreateBucket, err = parseBool(k, v); err != nil {
				return "", "", nil, err
			}
		case "part_size":
			if opts.PartSize, err = parseSize(v); err != nil {
				return "", "", nil, fmt.Errorf("s3store: URL parameter part_size: %w", err)
			}
			if opts.PartSize < MinPartSize || opts.PartSize > MaxPartSize {
				return "", "", nil, fmt.Errorf("s3store: URL parameter part_size=%s out of range [5MiB, 5GiB]", v)
			}
		case "object_lock":
			if opts.ObjectLock, err = parseLockMode(v); err != nil {
				return "", "", nil, err
			}
		case "retention":
			if opts.Retention, err = parseRetention(v); err != nil {
				return "", "", nil, err
			}
		case "concurrency":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return "", "", nil, fmt.Errorf("s3store: URL parameter concurrency=%q: want an integer from 1 to 1000", v)
			}
			opts.Concurrency = n
		default:
			return "", "", nil, fmt.Errorf("s3store: unknown URL parameter %q (known: %s)", k, strings.Join(urlParams, ", "))
		}
	}
	if err := checkLockOptions(opts.ObjectLock, opts.Retention); err != nil {
		return "", "", nil, err
	}
	return bucket, prefix, opts, nil
}

// OpenURL opens the store an s3:// URL names; it is the opener registered
// for the "s3" scheme.
func OpenURL(ctx context.Context, u *url.URL) (*Store, error) {
	bucket, prefix, opts, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	return Open(ctx, bucket, prefix, opts)
}

func parseBool(k, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("s3store: URL parameter %s=%q: want true or false", k, v)
}

// sizeUnits are the suffixes parseSize accepts, longest first.
var sizeUnits = func() []struct {
	s string
	m int64
} {
	u := []struct {
		s string
		m int64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1},
	}
	sort.SliceStable(u, func(i, j int) bool { return len(u[i].s) > len(u[j].s) })
	return u
}()

// parseSize parses a byte count with an optional binary unit suffix:
// "5242880", "5MiB", "16M", "1GiB".
func parseSize(v string) (int64, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	mult := int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(s, u.s); ok {
			s, mult = strings.TrimSpace(rest), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("malformed size %q: want bytes, or a number with a KiB, MiB or GiB suffix", v)
	}
	return n * mult, nil
}
