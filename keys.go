package reprise

import (
	"context"
	"time"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/repo"
)

// ErrLastSlot reports an attempt to remove a repository's only key slot.
var ErrLastSlot = repo.ErrLastSlot

// KeySlot describes one way to open the repository (docs/SECURITY.md,
// "Keys"). Any slot opens it; slots can be added and removed, like age
// recipients or LUKS key slots.
type KeySlot struct {
	ID      string // 64 hex digits; any unique prefix selects it
	Type    string // "passphrase" or "keeper"
	Label   string // free text, not secret
	Created time.Time
	InUse   bool // the slot this Repository was opened with
}

// KeySlotOptions tune a new key slot. The zero value is usable.
type KeySlotOptions struct {
	// Label describes the slot (not secret), e.g. "break-glass".
	Label string
	// Argon2 sets a passphrase slot's cost; nil calibrates it.
	Argon2 *crypto.Argon2Params
}

func publicSlot(s repo.SlotInfo) KeySlot {
	return KeySlot{ID: s.ID.String(), Type: s.Type, Label: s.Label, Created: s.Created, InUse: s.InUse}
}

// KeySlots lists the repository's key slots.
func (r *Repository) KeySlots() []KeySlot {
	var out []KeySlot
	for _, s := range r.r.Slots() {
		out = append(out, publicSlot(s))
	}
	return out
}

// AddKeySlot adds a slot opened by cred and wraps every tenant's keys to
// it. Cost: O(tenants); no data is touched.
func (r *Repository) AddKeySlot(ctx context.Context, cred Credentials, opts *KeySlotOptions) (KeySlot, error) {
	if opts == nil {
		opts = &KeySlotOptions{}
	}
	s, err := r.r.AddSlot(ctx, cred.internal(), opts.Argon2, opts.Label)
	return publicSlot(s), err
}

// RemoveKeySlot deletes a slot (by ID or unique prefix) and its wrapped
// keys from every tenant. The last slot, and the slot in use, cannot be
// removed.
func (r *Repository) RemoveKeySlot(ctx context.Context, id string) error {
	sid, err := r.r.FindSlot(id)
	if err != nil {
		return err
	}
	return r.r.RemoveSlot(ctx, sid)
}

// RotateKey replaces the slot in use by a new slot opened by cred (the
// same credentials for a plain rotation, or new ones): fresh key material,
// every tenant key rewrapped, the old slot and its wrapped keys removed.
// Cost: O(tenants); no data is touched. With a KMS keeper, rotate the KMS
// key first (or pass a keeper on a new key) and disable the old key
// version afterwards to make old copies of the envelopes useless.
func (r *Repository) RotateKey(ctx context.Context, cred Credentials, opts *KeySlotOptions) (KeySlot, error) {
	if opts == nil {
		opts = &KeySlotOptions{}
	}
	s, err := r.r.RotateSlot(ctx, cred.internal(), opts.Argon2, opts.Label)
	return publicSlot(s), err
}

// EraseReport says what EraseTenant did.
type EraseReport struct {
	// Deleted counts the tenant's objects deleted (after its keys).
	Deleted int
	// Retained lists the tenant's objects the storage keeps under
	// retention (S3 Object Lock, storage.ErrRetained). Its keys are
	// destroyed all the same: these objects no longer decrypt with
	// anything the repository holds. Erase the tenant again once the
	// retention ends to delete them, and do not reuse the name before: a
	// new tenant of that name would meet them as unreadable objects
	// (check reports them, prune refuses to run for it).
	Retained []string
	// RetainedUntil is the latest end of those retentions that the
	// storage reported; zero when there are none, or it did not say.
	RetainedUntil time.Time
}

// EraseTenant crypto-shreds a tenant: its key envelope is destroyed first,
// then all its objects are deleted, except those the storage retains,
// which the report lists. Copies of the tenant's objects made earlier
// (another site, an immutable bucket, a stolen disk) no longer decrypt
// with anything the repository holds; docs/SECURITY.md states the exact
// guarantee. Erasing a tenant whose keys are gone but whose objects remain
// (retained, or an interrupted erasure) deletes what is left. It fails
// with ErrAppendOnly in an append-only repository.
func (r *Repository) EraseTenant(ctx context.Context, name string) (*EraseReport, error) {
	rep, err := r.r.EraseTenant(ctx, name)
	if rep == nil {
		return nil, err
	}
	return &EraseReport{Deleted: rep.Deleted, Retained: rep.Retained, RetainedUntil: rep.RetainedUntil}, err
}

// RollKey adds a new generation of the tenant's root key: new data is
// written under it, older snapshots stay readable. It returns the new
// generation number.
func (t *Tenant) RollKey(ctx context.Context) (int, error) {
	g, err := t.t.Roll(ctx)
	return int(g), err
}
