// Package repo ties the at-rest format (internal/format) to a storage
// backend: it opens repositories and tenants, holds their keys, loads
// indexes, writes packs, indexes and snapshots in a crash-safe order, and
// reads chunks back. The public packages (reprise, backup, restore) are
// built on it.
package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"gocloud.dev/secrets"

	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/storage"
)

// Object names (docs/FORMAT.md, "Object names").
const (
	ConfigKey    = "config"
	slotsPrefix  = "keys/"
	tenantPrefix = "tenants/"
	dataPrefix   = "t/"
)

// Errors.
var (
	// ErrNotInitialized reports a backend holding no repository.
	ErrNotInitialized = errors.New("repository not initialized (no config object): run init first")
	// ErrExists reports an init on a backend already holding a repository.
	ErrExists = errors.New("a repository already exists there")
	// ErrWrongKey reports that no key slot opens with the given credentials.
	ErrWrongKey = errors.New("wrong passphrase or key: no key slot of the repository opens with it")
	// ErrTenantNotFound reports a tenant with no data in the repository.
	ErrTenantNotFound = errors.New("tenant not found")
	// ErrAppendOnly reports an operation that deletes or rewrites stored
	// objects, refused because the repository was opened append-only.
	ErrAppendOnly = errors.New("refused: the repository is opened append-only (it may add backups, never delete or rewrite); run this with credentials and options that allow deletion")
)

// RefuseAppendOnly returns an error wrapping ErrAppendOnly naming op when
// the repository is append-only, nil otherwise. Operations that delete or
// rewrite call it first, before touching anything.
func (r *Repo) RefuseAppendOnly(op string) error {
	if r.AppendOnly {
		return fmt.Errorf("%s: %w", op, ErrAppendOnly)
	}
	return nil
}

// Credentials open a repository's key slots: a passphrase opens
// passphrase slots, a keeper (a KMS through gocloud.dev/secrets) opens
// keeper slots.
type Credentials struct {
	Passphrase []byte
	Keeper     *secrets.Keeper
}

// InitOptions tune a new repository.
type InitOptions struct {
	Chunker  format.Chunker
	PackSize int
	// Argon2 sets the passphrase slot's parameters; nil calibrates them
	// to about half a second on this machine.
	Argon2 *crypto.Argon2Params
	Label  string
	// Codec compresses the repository's chunks: format.CodecZstd (or
	// empty: a version 1 repository) or format.CodecS2 (version 2).
	Codec string
}

// Repo is an open repository.
type Repo struct {
	St     storage.Storage
	Config *format.Config
	Log    *slog.Logger
	// AppendOnly makes the repository add objects only: nothing is
	// deleted or overwritten (leases are refreshed by new objects), and
	// the operations that must delete (forget, prune, erasure, key
	// changes, repair) fail with ErrAppendOnly. Set it right after Open.
	AppendOnly bool

	repoKey  crypto.Key
	keys     *crypto.RepoKeys
	slotID   crypto.ID
	slotPriv *crypto.SlotPrivateKey
	slotMu   sync.Mutex
	slots    []*format.Slot // authenticated slots, for wrapping new tenant keys; under slotMu
}

// slotList returns a copy of the authenticated slots.
func (r *Repo) slotList() []*format.Slot {
	r.slotMu.Lock()
	defer r.slotMu.Unlock()
	return slices.Clone(r.slots)
}

func slotKeyName(id crypto.ID) string { return slotsPrefix + id.String() }

// Init creates a repository on st with one passphrase slot.
func Init(ctx context.Context, st storage.Storage, cred Credentials, opts InitOptions, log *slog.Logger) (*Repo, error) {
	if len(cred.Passphrase) == 0 && cred.Keeper == nil {
		return nil, errors.New("init: a passphrase or a key keeper is required")
	}
	if _, err := st.Stat(ctx, ConfigKey); err == nil {
		return nil, ErrExists
	} else if !errors.Is(err, storage.ErrNotExist) {
		return nil, fmt.Errorf("init: %w", err)
	}
	if err := (chunk.Params{Min: opts.Chunker.Min, Avg: opts.Chunker.Avg, Max: opts.Chunker.Max}).Validate(); err != nil || opts.Chunker == (format.Chunker{}) {
		return nil, fmt.Errorf("init: explicit, valid chunker parameters are required: %v", err)
	}
	codec := opts.Codec
	if codec == "" {
		codec = format.CodecZstd
	}
	id, err := crypto.RandomID()
	if err != nil {
		return nil, err
	}
	cfg, err := format.NewConfig(id, time.Now().UTC().Truncate(time.Second), opts.Chunker, opts.PackSize, codec)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	rk, err := crypto.RandomKey()
	if err != nil {
		return nil, err
	}
	r := &Repo{St: st, Config: cfg, Log: logger(log), repoKey: rk}
	retainCopies(st)
	r.deriveRepoKeys()
	slot, priv, err := r.newSlot(ctx, cred, opts.Argon2, opts.Label)
	if err != nil {
		return nil, err
	}
	// The slot goes first: a config without a slot would be a repository
	// nobody can open. A crash between the two leaves an orphan slot and
	// no config: init can simply run again.
	if err := putJSON(ctx, st, slotKeyName(slot.ID), slot, true); err != nil {
		return nil, fmt.Errorf("init: writing key slot: %w", err)
	}
	if err := putJSON(ctx, st, ConfigKey, cfg, true); err != nil {
		if errors.Is(err, storage.ErrExist) {
			return nil, ErrExists
		}
		return nil, fmt.Errorf("init: writing config: %w", err)
	}
	r.slotID, r.slotPriv, r.slots = slot.ID, priv, []*format.Slot{slot}
	r.Log.Info("repository initialized", "repo", cfg.ID.Short())
	return r, nil
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

func (r *Repo) deriveRepoKeys() { r.keys = crypto.NewRepoKeys(&r.repoKey) }

// newSlot makes a key slot for the credentials (a keeper slot when a
// keeper is given, a passphrase slot otherwise), holding a fresh X25519
// key pair and the repository key wrapped to it.
func (r *Repo) newSlot(ctx context.Context, cred Credentials, params *crypto.Argon2Params, label string) (*format.Slot, *crypto.SlotPrivateKey, error) {
	id, err := crypto.RandomID()
	if err != nil {
		return nil, nil, err
	}
	s := &format.Slot{Version: format.Version, ID: id, Label: label, Created: time.Now().UTC().Truncate(time.Second)}
	var sk crypto.Key
	if cred.Keeper != nil {
		s.Type = format.SlotKeeper
		if sk, err = crypto.RandomKey(); err != nil {
			return nil, nil, err
		}
		if s.KeeperKey, err = cred.Keeper.Encrypt(ctx, sk[:]); err != nil {
			sk.Wipe()
			return nil, nil, fmt.Errorf("encrypting the slot key with the keeper: %w", err)
		}
	} else {
		if len(cred.Passphrase) == 0 {
			return nil, nil, errors.New("an empty passphrase is not allowed")
		}
		if params == nil {
			p, err := crypto.CalibrateArgon2(500 * time.Millisecond)
			if err != nil {
				return nil, nil, err
			}
			params = &p
		} else if len(params.Salt) == 0 {
			p, err := crypto.NewArgon2Params(params.Time, params.MemoryKiB, params.Threads)
			if err != nil {
				return nil, nil, err
			}
			params = &p
		}
		s.Type, s.Argon2 = format.SlotPassphrase, params
		if sk, err = crypto.PassphraseKey(cred.Passphrase, params); err != nil {
			return nil, nil, err
		}
	}
	defer sk.Wipe()
	priv, err := crypto.GenerateSlotKey()
	if err != nil {
		return nil, nil, err
	}
	s.PublicKey = priv.Public()
	secret := append(priv.Bytes(), r.repoKey[:]...)
	defer crypto.Wipe(secret)
	if s.Secret, err = crypto.SealBox(&sk, secret, format.SlotAD(&r.Config.ID, &id, "secret")); err != nil {
		return nil, nil, err
	}
	s.MAC = format.SlotMAC(&r.keys.SlotAuth, &r.Config.ID, s)
	return s, priv, nil
}

func putJSON(ctx context.Context, st storage.Storage, key string, v any, createOnly bool) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return putBytes(ctx, st, key, b, createOnly)
}

// Open opens the repository on st, trying every key slot the credentials
// can unlock.
func Open(ctx context.Context, st storage.Storage, cred Credentials, log *slog.Logger) (*Repo, error) {
	b, err := storage.ReadAll(ctx, st, ConfigKey)
	if errors.Is(err, storage.ErrNotExist) {
		return nil, ErrNotInitialized
	} else if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, err := format.ParseConfig(b)
	if err != nil {
		return nil, err
	}
	r := &Repo{St: st, Config: cfg, Log: logger(log)}
	retainCopies(st)
	slots, err := r.readSlots(ctx)
	if err != nil {
		return nil, err
	}
	if len(slots) == 0 {
		return nil, fmt.Errorf("repository has no key slots: %w", ErrWrongKey)
	}
	for _, s := range slots {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		priv, rk, err := r.unlockSlot(ctx, s, cred)
		if err != nil {
			continue
		}
		r.repoKey, r.slotID, r.slotPriv = rk, s.ID, priv
		r.deriveRepoKeys()
		r.authenticateSlots(slots)
		if !slices.ContainsFunc(r.slotList(), func(a *format.Slot) bool { return a.ID == s.ID }) ||
			!crypto.ConstantTimeEqual(priv.Public(), s.PublicKey) {
			r.Close()
			return nil, fmt.Errorf("%w: key slot %s opens but its public part was altered", crypto.ErrAuth, s.ID.Short())
		}
		r.Log.Debug("repository opened", "repo", cfg.ID.Short(), "slot", s.ID.Short())
		return r, nil
	}
	return nil, ErrWrongKey
}

func (r *Repo) readSlots(ctx context.Context) ([]*format.Slot, error) {
	var slots []*format.Slot
	err := r.St.List(ctx, slotsPrefix, func(info storage.Info) error {
		b, err := storage.ReadAll(ctx, r.St, info.Key)
		if err != nil {
			if errors.Is(err, storage.ErrNotExist) {
				return nil // removed since listed
			}
			return fmt.Errorf("reading key slot %s: %w", info.Key, err)
		}
		s, err := format.ParseSlot(b)
		if err != nil {
			r.Log.Warn("ignoring unreadable key slot", "object", info.Key, "err", err)
			return nil
		}
		if slotKeyName(s.ID) != info.Key {
			r.Log.Warn("ignoring key slot stored under another name", "object", info.Key)
			return nil
		}
		slots = append(slots, s)
		return nil
	})
	return slots, err
}

// unlockSlot opens a slot's sealed secret with the credentials, returning
// the slot's private key and the repository key.
func (r *Repo) unlockSlot(ctx context.Context, s *format.Slot, cred Credentials) (*crypto.SlotPrivateKey, crypto.Key, error) {
	var sk crypto.Key
	switch {
	case s.Type == format.SlotPassphrase && len(cred.Passphrase) > 0:
		var err error
		if sk, err = crypto.PassphraseKey(cred.Passphrase, s.Argon2); err != nil {
			return nil, crypto.Key{}, err
		}
	case s.Type == format.SlotKeeper && cred.Keeper != nil:
		pt, err := cred.Keeper.Decrypt(ctx, s.KeeperKey)
		if err != nil || len(pt) != crypto.KeySize {
			crypto.Wipe(pt)
			return nil, crypto.Key{}, ErrWrongKey // another KMS key, or no access
		}
		sk = crypto.Key(pt)
		crypto.Wipe(pt)
	default:
		return nil, crypto.Key{}, ErrWrongKey
	}
	defer sk.Wipe()
	secret, err := crypto.OpenBox(&sk, s.Secret, format.SlotAD(&r.Config.ID, &s.ID, "secret"))
	if err != nil || len(secret) != format.SlotSecretSize {
		return nil, crypto.Key{}, ErrWrongKey
	}
	defer crypto.Wipe(secret)
	priv, err := crypto.ParseSlotPrivateKey(secret[:crypto.KeySize])
	if err != nil {
		return nil, crypto.Key{}, err
	}
	return priv, crypto.Key(secret[crypto.KeySize:]), nil
}

// authenticateSlots keeps the slots whose MAC verifies under the
// repository key: only they receive new tenant keys.
func (r *Repo) authenticateSlots(slots []*format.Slot) {
	var ok []*format.Slot
	defer func() {
		r.slotMu.Lock()
		r.slots = ok
		r.slotMu.Unlock()
	}()
	for _, s := range slots {
		want := format.SlotMAC(&r.keys.SlotAuth, &r.Config.ID, s)
		if !crypto.ConstantTimeEqual(want, s.MAC) {
			r.Log.Warn("key slot fails authentication: ignored (was it planted by someone without the keys?)", "slot", s.ID.Short())
			continue
		}
		ok = append(ok, s)
	}
}

// Close wipes the repository's keys. The backend stays open: it belongs
// to the caller.
func (r *Repo) Close() error {
	r.repoKey.Wipe()
	if r.keys != nil {
		r.keys.Wipe()
	}
	return nil
}
