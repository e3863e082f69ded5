// Package storage defines the small interface every Reprise backend
// implements, the errors drivers report, and URL-based opening of drivers.
//
// A driver stores immutable objects under slash-separated keys. It knows
// nothing of encryption, chunking or snapshots: everything it is handed is
// already sealed by the layers above, and every key it is handed is opaque
// (random or keyed-hash hex), so a backend learns neither content nor tenant
// names.
//
// # Contract
//
// Keys are non-empty, slash-separated, made of [a-z0-9._-] segments, and
// never start or end with a slash. Objects are written whole: a reader never
// observes a partly written object under its final key, whatever happens to
// the writer (crash, cancelled context, full disk). Objects are immutable
// once written; [Storage.Put] with [PutOptions.IfNotExist] is the only
// conditional operation and exactly one of several concurrent creators of a
// key wins.
//
// Errors wrap the sentinels below with %w, so callers test them with
// [errors.Is]: [ErrNotExist] for a missing object, [ErrExist] for a lost
// create-only race, [ErrTransient] for failures worth retrying,
// [ErrPermission] for refused credentials, [ErrInvalidRange] for a read
// starting past the end of an object (or at a negative offset),
// [ErrInvalidKey] for a key (or a List prefix) that breaks the key syntax,
// [ErrRetained] (together with [ErrPermission]) for a Delete refused
// because the backend keeps the object under retention.
//
// An operation called with a cancelled or expired context fails with an
// error for which errors.Is(err, ctx.Err()) holds, and a Put that fails for
// any reason (cancelled context, failing reader, full disk) leaves no new
// object and does not disturb an existing one.
//
// The package [github.com/reprise-backup/reprise/storage/storagetest] holds
// the conformance suite that pins these rules down; every driver and every
// wrapper runs it.
//
// # Retention and append-only stores
//
// A backend may refuse to let objects go. A put with [PutOptions.Retain]
// asks a driver configured for it (S3 Object Lock, see storage/s3store) to
// keep the object immutable for a retention period; until it ends, Delete
// fails with an error wrapping both [ErrRetained] and [ErrPermission] (a
// [*RetainedError], which may tell when the retention ends) and leaves the
// object whole and readable. Drivers that cannot retain ignore the option.
// Objects holding keys that must stay destroyable (key slots, tenant key
// envelopes) are never put with Retain: crypto-shredding destroys keys,
// not retained data.
//
// On a versioned bucket, Delete removes every version of the key, not only
// the current one, so that deleted bytes (an erased tenant's wrapped keys)
// do not linger as older versions.
//
// An append-only store (storage/appendonly, or credentials a server allows
// to create objects but not to delete them) refuses deletes, and
// overwrites, with errors wrapping [ErrPermission]. Wrappers
// (storage/retry, storage/metered...) pass [PutOptions] on unchanged.
//
// # URLs
//
// [Open] turns a repository location into a driver:
//
//   - a plain path, absolute or relative ("/srv/backup", "./repo"), opens the
//     local filesystem driver [FS] on that directory;
//   - file:///srv/backup (also file:/srv/backup) is the same with a URL;
//     the query parameter nosync=1 skips fsync (tests, scratch repositories);
//   - mem://NAME opens an in-memory store [Mem] shared by every Open of the
//     same NAME within the process (handy in tests: a backup and a restore
//     opened separately see the same objects); mem:// alone opens a fresh,
//     private one;
//   - cloud schemes (s3://, gs://, azblob://) are served by drivers in
//     subpackages that register themselves when linked in, so a program
//     that wants them adds a blank import, for example
//     import _ "github.com/reprise-backup/reprise/storage/s3store".
//
// Drivers register further schemes with [Register] from an init function.
//
// # Wrappers
//
// Decorators add behaviour to any driver and implement [Wrapper]:
// storage/retry retries transient failures, storage/faulty injects faults
// and latency for tests and drills, storage/metered counts and logs
// operations, storage/appendonly refuses deletes and overwrites.
package storage

import (
	"context"
	"errors"
	"io"
	"strconv"
	"time"
)

// Sentinel errors. Drivers wrap them (fmt.Errorf("...: %w", ErrNotExist))
// so that both the sentinel and the driver's own error can be inspected.
var (
	// ErrNotExist reports that no object exists under the key.
	ErrNotExist = errors.New("storage: object does not exist")
	// ErrExist reports that a create-only put found the key already taken.
	ErrExist = errors.New("storage: object already exists")
	// ErrTransient reports a failure that may succeed if retried
	// (timeouts, throttling, connection resets, 5xx answers).
	ErrTransient = errors.New("storage: transient failure")
	// ErrPermission reports that the backend refused the credentials or
	// the access (for the filesystem driver: EACCES, EPERM, EROFS).
	ErrPermission = errors.New("storage: permission denied")
	// ErrInvalidRange reports a read that starts past the end of an object
	// or at a negative offset.
	ErrInvalidRange = errors.New("storage: invalid range")
	// ErrInvalidKey reports a key that breaks the key syntax (see
	// [ValidKey]), or a List prefix that no valid key can start with (see
	// [ValidPrefix]).
	ErrInvalidKey = errors.New("storage: invalid key")
	// ErrRetained reports a Delete refused because the object (or a
	// version of it) is under retention: S3 Object Lock in compliance or
	// governance mode, or a legal hold. The object is left untouched and
	// stays readable. Errors wrapping it also wrap ErrPermission.
	ErrRetained = errors.New("storage: object under retention")
)

// RetainedError is the error of a Delete refused by the backend's
// retention of the object (see [ErrRetained]). errors.Is(err, ErrRetained)
// and errors.Is(err, ErrPermission) both hold for it.
type RetainedError struct {
	// Key is the object's key.
	Key string
	// Until is when the retention ends, as the backend reported it; zero
	// when unknown or indefinite (a legal hold).
	Until time.Time
	// Err is the backend's own error, if any.
	Err error
}

// Error names the key and, when known, the end of the retention.
func (e *RetainedError) Error() string {
	msg := "storage: delete " + strconv.Quote(e.Key) + ": object under retention"
	if !e.Until.IsZero() {
		msg += " until " + e.Until.UTC().Format(time.RFC3339)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is ErrRetained or ErrPermission.
func (e *RetainedError) Is(target error) bool {
	return target == ErrRetained || target == ErrPermission
}

// Unwrap returns the backend's error.
func (e *RetainedError) Unwrap() error { return e.Err }

// RetainedUntil returns, for an error wrapping a [*RetainedError], when
// the retention ends (zero when unknown) and true; otherwise false.
func RetainedUntil(err error) (time.Time, bool) {
	var re *RetainedError
	if errors.As(err, &re) {
		return re.Until, true
	}
	return time.Time{}, false
}

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time // zero when the backend does not report it
}

// PutOptions tunes one [Storage.Put]. The zero value is a plain,
// overwriting put.
type PutOptions struct {
	// IfNotExist makes the put create-only: when an object already exists
	// under the key the put fails with an error wrapping ErrExist and the
	// existing object is left untouched.
	IfNotExist bool
	// Retain marks the object as history that must outlive the writer's
	// credentials: a driver configured for retention (S3 Object Lock:
	// storage/s3store's object_lock and retention parameters) makes it
	// immutable, and undeletable, for its retention period. Drivers
	// without retention ignore it. Reprise sets it on packs, indexes,
	// snapshots and run records, never on key slots, tenant envelopes,
	// the config, leases or tombstones. Wrappers pass it on unchanged.
	Retain bool
}

// Storage is a backend holding immutable objects. Implementations must be
// safe for concurrent use by multiple goroutines.
type Storage interface {
	// Put stores size bytes read from r under key, atomically: the object
	// becomes visible whole or not at all. r is read with ReadAt so a
	// driver (or a retry wrapper) may read it more than once or in
	// parallel parts.
	Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *PutOptions) error

	// Get opens the byte range [off, off+n) of the object for reading.
	// n < 0 reads to the end. A range running past the end is cut at the
	// end; off equal to the size yields an empty reader; off beyond the
	// size, or negative, fails with ErrInvalidRange (a missing object
	// fails with ErrNotExist whatever the range). The caller must close
	// the reader.
	Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)

	// Stat returns the object's size.
	Stat(ctx context.Context, key string) (Info, error)

	// List calls fn for every object whose key starts with prefix, in
	// lexical (byte-wise) key order, paging through the backend as
	// needed. The prefix is a plain string prefix, not a directory: "a/b"
	// matches "a/b/c" and "a/bc" alike, while "a/b/" matches only the
	// former. A prefix no valid key can start with (see [ValidPrefix])
	// fails with ErrInvalidKey; the empty prefix lists everything. An error
	// returned by fn stops the listing and is returned by List unwrapped.
	List(ctx context.Context, prefix string, fn func(Info) error) error

	// Delete removes the object (on a versioned bucket, every version of
	// it). Deleting a missing object fails with an error wrapping
	// ErrNotExist. An object under retention is left as it is and the
	// error wraps ErrRetained and ErrPermission (see RetainedError); an
	// append-only store fails with ErrPermission.
	Delete(ctx context.Context, key string) error

	// Close releases the driver's resources.
	Close() error
}

// Wrapper is implemented by decorators (retry, fault injection, metrics)
// so callers can reach the driver underneath.
type Wrapper interface {
	Unwrap() Storage
}

// ValidKey reports whether key follows the key syntax of this package.
func ValidKey(key string) bool {
	if key == "" || len(key) > 1024 || key[0] == '/' || key[len(key)-1] == '/' {
		return false
	}
	prevSlash := false
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '/':
			if prevSlash {
				return false
			}
			prevSlash = true
			continue
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
		if c == '.' && (i == 0 || key[i-1] == '/') {
			// No segment may start with a dot: keeps "." and ".." and
			// hidden temp files of drivers out of the key space.
			return false
		}
		prevSlash = false
	}
	return true
}

// ValidPrefix reports whether some valid key starts with prefix, that is
// whether prefix is acceptable to [Storage.List]. The empty prefix is valid.
func ValidPrefix(prefix string) bool {
	// Any valid key can be extended by a letter ("a/b" -> "a/ba") or, when
	// it ends with a slash, completed by one ("a/" -> "a/a"), so checking
	// the prefix itself and the prefix plus one letter covers every case.
	return prefix == "" || ValidKey(prefix) || ValidKey(prefix+"a")
}

// ReadAll reads a whole object. It is a convenience for small objects
// (configuration, envelopes, indexes, snapshots).
func ReadAll(ctx context.Context, s Storage, key string) ([]byte, error) {
	rc, err := s.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
