package s3store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/reprise-backup/reprise/storage"
)

// LockMode is an S3 Object Lock retention mode (see [Options.ObjectLock]).
type LockMode string

// The Object Lock retention modes.
const (
	// LockGovernance retains objects against deletion and overwriting by
	// anyone without the s3:BypassGovernanceRetention permission; an
	// administrator holding it can still delete them early.
	LockGovernance LockMode = "GOVERNANCE"
	// LockCompliance retains objects against everyone, the account's
	// root user included, until the retention ends; it cannot be
	// shortened.
	LockCompliance LockMode = "COMPLIANCE"
)

// MaxRetention bounds Options.Retention (S3 itself allows up to 100 years).
const MaxRetention = 100 * 365 * 24 * time.Hour

// checkLockOptions validates the Object Lock options.
func checkLockOptions(mode LockMode, retention time.Duration) error {
	switch {
	case mode == "" && retention != 0:
		return errors.New("s3store: a retention without an Object Lock mode: set object_lock=GOVERNANCE or COMPLIANCE too")
	case mode == "":
		return nil
	case mode != LockGovernance && mode != LockCompliance:
		return fmt.Errorf("s3store: Object Lock mode %q: want %s or %s", mode, LockGovernance, LockCompliance)
	case retention <= 0:
		return fmt.Errorf("s3store: Object Lock mode %s needs a retention period (retention=720h, retention=30d)", mode)
	case retention > MaxRetention:
		return fmt.Errorf("s3store: retention %v is longer than 100 years", retention)
	}
	return nil
}

// parseLockMode parses the object_lock URL parameter (case-insensitive).
func parseLockMode(v string) (LockMode, error) {
	m := LockMode(strings.ToUpper(strings.TrimSpace(v)))
	if m != LockGovernance && m != LockCompliance {
		return "", fmt.Errorf("s3store: URL parameter object_lock=%q: want GOVERNANCE or COMPLIANCE", v)
	}
	return m, nil
}

// parseRetention parses the retention URL parameter: a Go duration
// ("720h", "90m") or a number of days ("30d").
func parseRetention(v string) (time.Duration, error) {
	s := strings.TrimSpace(v)
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n <= 0 || n > int64(MaxRetention/(24*time.Hour)) {
			return 0, fmt.Errorf("s3store: URL parameter retention=%q: want a positive number of days (30d) or a duration (720h)", v)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			return 0, fmt.Errorf("s3store: URL parameter retention=%q: want a positive duration (720h) or number of days (30d)", v)
		}
	}
	return d, nil
}

// checkObjectLock makes sure the bucket can lock objects, and that it does
// not lock every object by default: a default retention would also lock the
// objects holding keys (key slots, tenant envelopes), and erasing a tenant
// by destroying its keys would become impossible.
func (s *Store) checkObjectLock(ctx context.Context) error {
	out, err := s.client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &s.bucket})
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return fmt.Errorf("s3store: checking the Object Lock configuration of bucket %q: %w", s.bucket, ctx.Err())
	case httpStatus(err) == 404 || apiCode(err) == "ObjectLockConfigurationNotFoundError":
		return fmt.Errorf("s3store: bucket %q has no Object Lock: it can only be enabled when a bucket is created (create=true does, for a new bucket) or, on AWS, on a versioned bucket through PutObjectLockConfiguration", s.bucket)
	case errors.Is(mapError("", "", err), storage.ErrPermission):
		// The credentials may not read the configuration (a narrow
		// backup policy): puts will fail if the bucket cannot lock.
		return nil
	default:
		return mapError("checking the Object Lock configuration of bucket", s.bucket, err)
	}
	cfg := out.ObjectLockConfiguration
	if cfg == nil || cfg.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		return fmt.Errorf("s3store: bucket %q does not have Object Lock enabled", s.bucket)
	}
	if cfg.Rule != nil && cfg.Rule.DefaultRetention != nil {
		return fmt.Errorf("s3store: bucket %q has a default retention: it would also lock the key slots and tenant key envelopes, and crypto-shredding a tenant would be impossible; remove the default retention rule (Reprise sets the retention of each data object itself)", s.bucket)
	}
	return nil
}

// lockFor returns the Object Lock settings of a put: set when the store
// locks and the put asks for retention.
func (s *Store) lockFor(opts *storage.PutOptions) (types.ObjectLockMode, *time.Time) {
	if s.lockMode == "" || opts == nil || !opts.Retain {
		return "", nil
	}
	until := time.Now().Add(s.retention).UTC()
	return types.ObjectLockMode(s.lockMode), &until
}

// Versioning states of the bucket, learnt at the first Delete.
const (
	verUnchecked int32 = iota
	verOff             // never enabled: a delete removes the object
	verOn              // enabled or suspended: versions must be deleted one by one
	verUnknown         // the credentials may not read the state: try versions
)

// versioned tells whether deletes must remove versions.
func (s *Store) versioned(ctx context.Context, key string) (bool, error) {
	switch s.versioning.Load() {
	case verOff:
		return false, nil
	case verOn, verUnknown:
		return true, nil
	}
	out, err := s.client.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &s.bucket})
	if err != nil {
		mapped := mapCtxError(ctx, "delete", key, err)
		if errors.Is(mapped, storage.ErrPermission) {
			s.versioning.Store(verUnknown)
			return true, nil
		}
		return false, mapped
	}
	if out.Status == "" {
		s.versioning.Store(verOff)
		return false, nil
	}
	s.versioning.Store(verOn)
	return true, nil
}

// objVersion is one version (or delete marker) of a key.
type objVersion struct {
	id       *string
	marker   bool
	latest   bool
	modified time.Time
}

// listVersions lists the versions and delete markers of exactly key.
func (s *Store) listVersions(ctx context.Context, key string) ([]objVersion, error) {
	full := s.prefix + key
	in := &s3.ListObjectVersionsInput{Bucket: &s.bucket, Prefix: aws.String(full)}
	var out []objVersion
	for {
		page, err := s.client.ListObjectVersions(ctx, in)
		if err != nil {
			return nil, err
		}
		beyond := false // versions are listed by key: once past key, done
		for _, v := range page.Versions {
			if k := aws.ToString(v.Key); k == full {
				out = append(out, objVersion{id: v.VersionId, latest: aws.ToBool(v.IsLatest), modified: aws.ToTime(v.LastModified)})
			} else if k > full {
				beyond = true
			}
		}
		for _, m := range page.DeleteMarkers {
			if k := aws.ToString(m.Key); k == full {
				out = append(out, objVersion{id: m.VersionId, marker: true, latest: aws.ToBool(m.IsLatest), modified: aws.ToTime(m.LastModified)})
			} else if k > full {
				beyond = true
			}
		}
		if beyond || !aws.ToBool(page.IsTruncated) {
			return out, nil
		}
		in.KeyMarker, in.VersionIdMarker = page.NextKeyMarker, page.NextVersionIdMarker
	}
}

// deleteVersions deletes every version and delete marker of key, oldest
// first, so that what readers see changes only with the last one (the
// current version). A version under retention stops it: the error is a
// storage.RetainedError, and the current version is still in place. It
// returns handled=false when the credentials may not list versions and the
// bucket's versioning is unknown (the caller then deletes the plain way).
func (s *Store) deleteVersions(ctx context.Context, key string) (handled bool, err error) {
	vs, err := s.listVersions(ctx, key)
	if err != nil {
		mapped := mapCtxError(ctx, "delete", key, err)
		if s.versioning.Load() == verUnknown && errors.Is(mapped, storage.ErrPermission) {
			return false, nil
		}
		return true, mapped
	}
	current := slices.ContainsFunc(vs, func(v objVersion) bool { return v.latest && !v.marker })
	slices.SortStableFunc(vs, func(a, b objVersion) int {
		if a.latest != b.latest {
			if a.latest {
				return 1
			}
			return -1
		}
		return a.modified.Compare(b.modified)
	})
	k := aws.String(s.prefix + key)
	for _, v := range vs {
		_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: k, VersionId: v.id})
		if err == nil || isNotFound(err) {
			continue
		}
		if ctx.Err() != nil || isTransient(err) {
			return true, mapCtxError(ctx, "delete", key, err)
		}
		if !v.marker {
			if rerr := s.retained(ctx, key, v.id, err); rerr != nil {
				return true, rerr
			}
		}
		return true, mapError("delete", key, err)
	}
	if !current {
		return true, fmt.Errorf("s3store: delete %q: %w", key, storage.ErrNotExist)
	}
	return true, nil
}

// retained returns a *storage.RetainedError when the version's delete
// failed (with err) because of its retention or a legal hold, else nil.
func (s *Store) retained(ctx context.Context, key string, versionID *string, err error) error {
	h, herr := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key), VersionId: versionID})
	if herr == nil {
		if until := aws.ToTime(h.ObjectLockRetainUntilDate); until.After(time.Now()) {
			return &storage.RetainedError{Key: key, Until: until, Err: err}
		}
		if h.ObjectLockLegalHoldStatus == types.ObjectLockLegalHoldStatusOn {
			return &storage.RetainedError{Key: key, Err: err}
		}
		return nil
	}
	// The retention could not be read (s3:GetObjectRetention refused):
	// go by the error. AWS answers 403 AccessDenied, which may as well be
	// a missing s3:DeleteObjectVersion; MinIO says WORM.
	if strings.Contains(err.Error(), "WORM") || apiCode(err) == "ObjectLocked" {
		return &storage.RetainedError{Key: key, Err: err}
	}
	return nil
}
