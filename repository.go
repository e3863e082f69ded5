package reprise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"gocloud.dev/secrets"

	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/internal/repo"
	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/appendonly"
)

// Errors callers can test with errors.Is.
var (
	// ErrWrongKey reports credentials that open no key slot.
	ErrWrongKey = repo.ErrWrongKey
	// ErrNotInitialized reports a backend that holds no repository.
	ErrNotInitialized = repo.ErrNotInitialized
	// ErrExists reports Init on a backend that already holds a repository.
	ErrExists = repo.ErrExists
	// ErrTenantNotFound reports an unknown tenant.
	ErrTenantNotFound = repo.ErrTenantNotFound
	// ErrSnapshotNotFound reports an unknown snapshot ID or prefix.
	ErrSnapshotNotFound = repo.ErrSnapshotNotFound
	// ErrCorrupt reports stored bytes that do not parse.
	ErrCorrupt = format.ErrCorrupt
	// ErrAuth reports stored bytes that fail authentication: corrupted,
	// truncated, or moved from where they were written.
	ErrAuth = crypto.ErrAuth
	// ErrChunkMissing reports a chunk no index names.
	ErrChunkMissing = repo.ErrChunkMissing
	// ErrUnsupportedVersion reports a repository in a format version this
	// build does not read (it reads versions 1 and 2).
	ErrUnsupportedVersion = format.ErrVersion
	// ErrUnknownCodec reports a codec that is neither CodecZstd nor
	// CodecS2 (InitOptions.Codec, ParseCodec).
	ErrUnknownCodec = errors.New("unknown codec")
	// ErrAppendOnly reports an operation refused because the repository
	// was opened with Options.AppendOnly: Forget, Prune, EraseTenant,
	// RollKey, key slot changes and Repair delete or rewrite objects.
	ErrAppendOnly = repo.ErrAppendOnly
)

// Credentials open a repository's key slots: a passphrase opens the
// passphrase slots (argon2id), a keeper — any gocloud.dev/secrets keeper:
// base64key://, awskms://, gcpkms://, azurekeyvault://, hashivault://,
// opened by the caller with secrets.OpenKeeper — opens the keeper slots.
// Init and AddKeySlot create a keeper slot when Keeper is set, a passphrase
// slot otherwise.
type Credentials struct {
	Passphrase []byte
	Keeper     *secrets.Keeper
}

func (c Credentials) internal() repo.Credentials {
	return repo.Credentials{Passphrase: c.Passphrase, Keeper: c.Keeper}
}

// Default sizes.
const (
	// DefaultPackSize is the target size of pack objects: large enough
	// that a terabyte is tens of thousands of objects, not millions, and
	// small enough to upload in one request or a few multipart parts.
	DefaultPackSize = 16 << 20
)

// Codec is the compression a repository applies to its chunks, chosen once
// at Init and recorded in the repository's config: every backup into the
// repository uses it (unless told not to compress at all), and every
// reader follows it. Chunks that do not compress by at least 1/32 are
// stored raw whatever the codec; indexes, snapshots and run records
// always use zstd.
type Codec int

const (
	// CodecZstd compresses chunks with zstd at its fastest level: the
	// default, with the better ratio. The repository is format version 1,
	// which every release of Reprise reads.
	CodecZstd Codec = iota
	// CodecS2 compresses chunks with S2 (block format): faster than zstd
	// to compress (about 2.5x on SQL-like text) and to decompress (about
	// 1.25x), at a lower ratio (payloads about 1.5x zstd's on the same
	// text; README.md, "Measured"). The repository is format version 2:
	// releases that read only version 1 refuse to open it
	// (ErrUnsupportedVersion).
	CodecS2
)

// String returns the codec's name, as the config records it: "zstd" or
// "s2".
func (c Codec) String() string {
	switch c {
	case CodecZstd:
		return format.CodecZstd
	case CodecS2:
		return format.CodecS2
	}
	return fmt.Sprintf("Codec(%d)", int(c))
}

// ParseCodec returns the codec called name ("zstd" or "s2"); any other
// name fails with an error wrapping ErrUnknownCodec.
func ParseCodec(name string) (Codec, error) {
	switch name {
	case format.CodecZstd:
		return CodecZstd, nil
	case format.CodecS2:
		return CodecS2, nil
	}
	return 0, fmt.Errorf("%w %q: want %q or %q", ErrUnknownCodec, name, format.CodecZstd, format.CodecS2)
}

// InitOptions tune a new repository. The zero value gives sane defaults.
type InitOptions struct {
	// Chunking sets the chunk size bounds; zero means chunk.DefaultParams.
	Chunking chunk.Params
	// PackSize is the target pack size; 0 means DefaultPackSize.
	PackSize int
	// Argon2 sets the passphrase derivation cost; nil calibrates it to
	// about half a second on this machine. Tests use cheap parameters.
	Argon2 *crypto.Argon2Params
	// Label describes the first key slot (not secret), e.g. "ops".
	Label string
	// Codec compresses the repository's chunks, for good: CodecZstd (the
	// zero value) or CodecS2.
	Codec Codec
	// Logger receives the library's logs; nil discards them.
	Logger *slog.Logger
}

// Options tune opening a repository. The zero value is usable.
type Options struct {
	// Logger receives the library's logs; nil discards them.
	Logger *slog.Logger
	// AppendOnly opens the repository for adding only, for machines that
	// run backups with credentials that cannot delete (docs/SECURITY.md,
	// "Append-only credentials"): backups, listing snapshots, restores,
	// checks, health and drills work and never delete or overwrite
	// anything (a backup's lease is refreshed by creating new objects,
	// which a prune elsewhere removes); Forget, Prune, EraseTenant,
	// RollKey, AddKeySlot, RemoveKeySlot, RotateKey and Repair fail at
	// once with ErrAppendOnly, before touching anything (dry runs of
	// Forget and Prune, which change nothing, still work). The storage is
	// wrapped with storage/appendonly, so that any delete or overwrite
	// that would still be attempted fails with storage.ErrPermission
	// (unless it is already wrapped, at any depth).
	AppendOnly bool
}

// Repository is an open repository. It is safe for concurrent use. Close
// it to wipe its keys from memory.
type Repository struct {
	r *repo.Repo
}

// Init creates a repository on st, protected by the credentials.
func Init(ctx context.Context, st storage.Storage, cred Credentials, opts *InitOptions) (*Repository, error) {
	if opts == nil {
		opts = &InitOptions{}
	}
	p := opts.Chunking
	if p == (chunk.Params{}) {
		p = chunk.DefaultParams()
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	ps := opts.PackSize
	if ps == 0 {
		ps = DefaultPackSize
	}
	if ps < 1<<20 || ps > format.MaxPackSize/2 {
		return nil, errors.New("reprise: pack size must be between 1 MiB and 512 MiB")
	}
	if opts.Codec != CodecZstd && opts.Codec != CodecS2 {
		return nil, fmt.Errorf("reprise: %w %v", ErrUnknownCodec, opts.Codec)
	}
	r, err := repo.Init(ctx, st, cred.internal(), repo.InitOptions{
		Chunker:  format.Chunker{Min: p.Min, Avg: p.Avg, Max: p.Max},
		PackSize: ps, Argon2: opts.Argon2, Label: opts.Label, Codec: opts.Codec.String(),
	}, opts.Logger)
	if err != nil {
		return nil, err
	}
	return &Repository{r: r}, nil
}

// Open opens the repository on st.
func Open(ctx context.Context, st storage.Storage, cred Credentials, opts *Options) (*Repository, error) {
	if opts == nil {
		opts = &Options{}
	}
	if opts.AppendOnly && !appendonly.Is(st) {
		st = appendonly.New(st)
	}
	r, err := repo.Open(ctx, st, cred.internal(), opts.Logger)
	if err != nil {
		return nil, err
	}
	r.AppendOnly = opts.AppendOnly
	return &Repository{r: r}, nil
}

// AppendOnly reports whether the repository was opened with
// Options.AppendOnly.
func (r *Repository) AppendOnly() bool { return r.r.AppendOnly }

// Codec returns the codec the repository compresses chunks with.
func (r *Repository) Codec() Codec {
	if r.r.Config.Codec == format.CodecS2 {
		return CodecS2
	}
	return CodecZstd
}

// FormatVersion returns the repository's format version (docs/FORMAT.md):
// 1, or 2 for a repository created with CodecS2.
func (r *Repository) FormatVersion() int { return r.r.Config.Version }

// ID returns the repository's random identifier (hex).
func (r *Repository) ID() string { return r.r.Config.ID.String() }

// Storage returns the backend the repository lives on.
func (r *Repository) Storage() storage.Storage { return r.r.St }

// Close wipes the repository's keys. It does not close the backend, which
// belongs to the caller.
func (r *Repository) Close() error { return r.r.Close() }

// Tenant opens the tenant called name, creating it (a fresh random root
// key, wrapped to every key slot) if it does not exist yet. Concurrent
// creators of one tenant, on any machine, end up with the same keys.
func (r *Repository) Tenant(ctx context.Context, name string) (*Tenant, error) {
	t, err := r.r.Tenant(ctx, name, true)
	if err != nil {
		return nil, err
	}
	return &Tenant{t: t}, nil
}

// OpenTenant opens an existing tenant; an unknown one fails with
// ErrTenantNotFound.
func (r *Repository) OpenTenant(ctx context.Context, name string) (*Tenant, error) {
	t, err := r.r.Tenant(ctx, name, false)
	if err != nil {
		return nil, err
	}
	return &Tenant{t: t}, nil
}

// Tenants lists the names of the repository's tenants, sorted. A name is
// sealed in its tenant's key envelope, so this reads every envelope (many
// at once); a tenant whose envelope does not open is logged and left out
// (Check reports it).
func (r *Repository) Tenants(ctx context.Context) ([]string, error) { return r.r.TenantNames(ctx) }

// OpenTenants opens every tenant of the repository, sorted by name: the
// same as Tenants then OpenTenant for each name, but each envelope is read
// once, many at once. A tenant whose envelope does not open is logged and
// left out (Check reports it). The caller closes the tenants.
func (r *Repository) OpenTenants(ctx context.Context) ([]*Tenant, error) {
	ts, err := r.r.OpenTenants(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Tenant, len(ts))
	for i, t := range ts {
		out[i] = &Tenant{t: t}
	}
	return out, nil
}

// Tenant is one tenant of a repository, with its keys unwrapped.
type Tenant struct {
	t *repo.Tenant
}

func init() {
	repo.Unwrap = func(v any) *repo.Tenant { return v.(*Tenant).t }
}

// Name returns the tenant's name.
func (t *Tenant) Name() string { return t.t.Name }

// Close wipes the tenant's keys.
func (t *Tenant) Close() { t.t.Close() }

// Snapshot describes one snapshot.
type Snapshot struct {
	ID     string    // 64 hex digits; any unique prefix selects it
	Time   time.Time // when the backup started
	Host   string
	Kind   string // "dir" or "stream"
	Source string // the directory backed up, or the stream's name
	Tags   []string
	Stats  SnapshotStats
}

// SnapshotStats summarise what the backup that made a snapshot saw and
// stored.
type SnapshotStats = format.SnapshotStats

// ShortID returns the first 8 hex digits of the ID.
func (s *Snapshot) ShortID() string { return s.ID[:8] }

func publicSnapshot(s *format.Snapshot) Snapshot {
	return Snapshot{ID: s.ID.String(), Time: s.Time, Host: s.Host, Kind: s.Kind, Source: s.Source, Tags: s.Tags, Stats: s.Stats}
}

// Snapshots lists the tenant's snapshots, oldest first. A snapshot object
// that cannot be read is reported as an error (wrapping ErrAuth or
// ErrCorrupt) after the readable ones are returned.
func (t *Tenant) Snapshots(ctx context.Context) ([]Snapshot, error) {
	snaps, bad, err := t.t.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Snapshot, len(snaps))
	for i, s := range snaps {
		out[i] = publicSnapshot(s)
	}
	return out, badError(bad)
}

// Snapshot finds a snapshot by "latest", full ID or unique ID prefix.
func (t *Tenant) Snapshot(ctx context.Context, ref string) (Snapshot, error) {
	s, err := t.t.FindSnapshot(ctx, ref)
	if err != nil {
		return Snapshot{}, err
	}
	return publicSnapshot(s), nil
}

func badError(bad []repo.BadObject) error {
	if len(bad) == 0 {
		return nil
	}
	errs := make([]error, len(bad))
	for i, b := range bad {
		errs[i] = b
	}
	return errors.Join(errs...)
}
