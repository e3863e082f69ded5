package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/storage"
)

// SlotInfo describes a key slot, for listing.
type SlotInfo struct {
	ID      crypto.ID
	Type    string
	Label   string
	Created time.Time
	InUse   bool // the slot this session opened the repository with
}

// Slots lists the repository's authenticated key slots.
func (r *Repo) Slots() []SlotInfo {
	slots := r.slotList()
	out := make([]SlotInfo, 0, len(slots))
	for _, s := range slots {
		out = append(out, SlotInfo{ID: s.ID, Type: s.Type, Label: s.Label, Created: s.Created, InUse: s.ID == r.slotID})
	}
	return out
}

// envelopeOp is applied to every tenant envelope by rewrapTenants. roots
// holds the tenant's root keys by generation (index gen-1), unwrapped with
// the slot in use; it reports whether it changed env.
type envelopeOp func(env *format.Envelope, h format.Handle, roots []crypto.Key) (bool, error)

// rewrapTenants applies op to every tenant envelope and writes back those
// it changed. It touches no data object: its cost is O(tenants).
func (r *Repo) rewrapTenants(ctx context.Context, op envelopeOp) (changed int, err error) {
	handles, err := r.tenantHandles(ctx)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, h := range handles {
		if err := ctx.Err(); err != nil {
			return changed, err
		}
		ok, err := r.updateEnvelope(ctx, h, op)
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", h, err))
			continue
		}
		if ok {
			changed++
		}
	}
	return changed, errors.Join(errs...)
}

// updateEnvelope applies op to the newest version of a tenant's envelope
// and stores the result as the next version, create-only. When another
// process stored that version first, it starts again from theirs, so no
// change is lost. Superseded versions are removed afterwards.
func (r *Repo) updateEnvelope(ctx context.Context, h format.Handle, op envelopeOp) (bool, error) {
	for attempt := 0; attempt < 16; attempt++ {
		env, v, err := r.readEnvelope(ctx, h)
		if errors.Is(err, storage.ErrNotExist) {
			return false, nil // erased meanwhile
		} else if err != nil {
			return false, err
		}
		_, roots, err := r.openGenerations(env, h)
		if err != nil {
			return false, err
		}
		changed, err := op(env, h, roots)
		for i := range roots {
			roots[i].Wipe()
		}
		if err != nil || !changed {
			return false, err
		}
		err = putJSON(ctx, r.St, envelopeKey(h, v+1), env, true)
		if errors.Is(err, storage.ErrExist) {
			continue // a concurrent change won: apply ours on top of it
		} else if err != nil {
			return false, err
		}
		// An erasure that ran between our read and our write deleted
		// version v: withdraw what we wrote instead of bringing the
		// tenant's keys back.
		if _, err := r.St.Stat(ctx, envelopeKey(h, v)); errors.Is(err, storage.ErrNotExist) {
			if after, lerr := r.envelopeVersions(ctx, h); lerr == nil && len(after) == 1 && after[0] == v+1 {
				r.St.Delete(ctx, envelopeKey(h, v+1))
				return false, fmt.Errorf("%w: erased while its keys were being changed", ErrTenantNotFound)
			}
		}
		vs, err := r.envelopeVersions(ctx, h)
		if err == nil {
			for _, old := range vs {
				if old <= v {
					if err := r.St.Delete(ctx, envelopeKey(h, old)); err != nil && !errors.Is(err, storage.ErrNotExist) {
						r.Log.Warn("could not remove a superseded envelope version", "object", envelopeKey(h, old), "err", err)
					}
				}
			}
		}
		return true, nil
	}
	return false, errors.New("tenant envelope keeps changing concurrently; try again")
}

// wrapTo returns an op that wraps every generation's root key to slot s.
func (r *Repo) wrapTo(s *format.Slot) envelopeOp {
	return func(env *format.Envelope, h format.Handle, roots []crypto.Key) (bool, error) {
		changed := false
		for i := range env.Generations {
			g := &env.Generations[i]
			if _, ok := g.Keys[s.ID.String()]; ok {
				continue
			}
			st, err := crypto.WrapToPublic(s.PublicKey, &roots[i], format.TenantKeyAD(&r.Config.ID, &h, g.Gen, &s.ID))
			if err != nil {
				return false, err
			}
			g.Keys[s.ID.String()] = st
			changed = true
		}
		return changed, nil
	}
}

// dropSlot returns an op that removes slot id's keys from every envelope.
func dropSlot(id crypto.ID) envelopeOp {
	return func(env *format.Envelope, _ format.Handle, _ []crypto.Key) (bool, error) {
		changed := false
		for i := range env.Generations {
			if _, ok := env.Generations[i].Keys[id.String()]; ok {
				delete(env.Generations[i].Keys, id.String())
				changed = true
			}
		}
		return changed, nil
	}
}

// AddSlot adds a key slot opened by cred (a passphrase slot, or a keeper
// slot when cred.Keeper is set) and wraps every tenant's keys to it. The
// tenants are rewrapped before the slot is published and once more after,
// so that a tenant created meanwhile by another process is covered too.
func (r *Repo) AddSlot(ctx context.Context, cred Credentials, params *crypto.Argon2Params, label string) (SlotInfo, error) {
	if err := r.RefuseAppendOnly("adding a key slot"); err != nil {
		return SlotInfo{}, err
	}
	s, _, err := r.newSlot(ctx, cred, params, label)
	if err != nil {
		return SlotInfo{}, err
	}
	if _, err := r.rewrapTenants(ctx, r.wrapTo(s)); err != nil {
		return SlotInfo{}, fmt.Errorf("wrapping tenant keys to the new slot: %w", err)
	}
	if err := putJSON(ctx, r.St, slotKeyName(s.ID), s, true); err != nil {
		return SlotInfo{}, fmt.Errorf("writing key slot: %w", err)
	}
	r.slotMu.Lock()
	r.slots = append(r.slots, s)
	r.slotMu.Unlock()
	if _, err := r.rewrapTenants(ctx, r.wrapTo(s)); err != nil {
		return SlotInfo{}, fmt.Errorf("wrapping tenant keys to the new slot: %w", err)
	}
	r.Log.Info("key slot added", "slot", s.ID.Short(), "type", s.Type)
	return SlotInfo{ID: s.ID, Type: s.Type, Label: s.Label, Created: s.Created}, nil
}

// ErrLastSlot reports an attempt to remove the only key slot.
var ErrLastSlot = errors.New("refusing to remove the last key slot: the repository could never be opened again")

// FindSlot resolves a slot ID or unique ID prefix.
func (r *Repo) FindSlot(ref string) (crypto.ID, error) {
	var found []crypto.ID
	for _, s := range r.slotList() {
		if strings.HasPrefix(s.ID.String(), ref) && ref != "" {
			found = append(found, s.ID)
		}
	}
	switch len(found) {
	case 0:
		return crypto.ID{}, fmt.Errorf("no key slot %q", ref)
	case 1:
		return found[0], nil
	}
	return crypto.ID{}, fmt.Errorf("key slot prefix %q is ambiguous", ref)
}

// RemoveSlot deletes a key slot and removes its keys from every tenant
// envelope. The slot in use cannot be removed (open with another one).
func (r *Repo) RemoveSlot(ctx context.Context, id crypto.ID) error {
	if err := r.RefuseAppendOnly("removing a key slot"); err != nil {
		return err
	}
	slots := r.slotList()
	if !slices.ContainsFunc(slots, func(s *format.Slot) bool { return s.ID == id }) {
		return fmt.Errorf("no key slot %s", id.Short())
	}
	if len(slots) == 1 {
		return ErrLastSlot
	}
	if id == r.slotID {
		return errors.New("refusing to remove the key slot in use: open the repository with another slot's credentials to remove this one")
	}
	// The slot object goes first: a crash after it leaves dead keys in
	// envelopes (ignored), never a slot that opens the repository but no
	// tenant.
	if err := r.St.Delete(ctx, slotKeyName(id)); err != nil && !errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("deleting key slot: %w", err)
	}
	r.slotMu.Lock()
	r.slots = slices.DeleteFunc(r.slots, func(s *format.Slot) bool { return s.ID == id })
	r.slotMu.Unlock()
	if _, err := r.rewrapTenants(ctx, dropSlot(id)); err != nil {
		return fmt.Errorf("removing the slot's keys from tenant envelopes: %w", err)
	}
	r.Log.Info("key slot removed", "slot", id.Short())
	return nil
}

// RotateSlot replaces the slot in use by a new one opened by cred (the
// same credentials, or new ones): a new X25519 key pair and slot key, all
// tenant keys rewrapped to it, the old slot's keys removed from every
// envelope and the old slot deleted. No data object is touched. After it,
// nothing the repository holds opens with the old slot's key material;
// copies of old envelopes and slot objects still do, with the old
// credentials (docs/SECURITY.md).
func (r *Repo) RotateSlot(ctx context.Context, cred Credentials, params *crypto.Argon2Params, label string) (SlotInfo, error) {
	if err := r.RefuseAppendOnly("rotating a key slot"); err != nil {
		return SlotInfo{}, err
	}
	old := r.slotID
	var oldLabel string
	for _, s := range r.slotList() {
		if s.ID == old {
			oldLabel = s.Label
		}
	}
	if label == "" {
		label = oldLabel
	}
	s, priv, err := r.newSlot(ctx, cred, params, label)
	if err != nil {
		return SlotInfo{}, err
	}
	if _, err := r.rewrapTenants(ctx, r.wrapTo(s)); err != nil {
		return SlotInfo{}, fmt.Errorf("wrapping tenant keys to the new slot: %w", err)
	}
	if err := putJSON(ctx, r.St, slotKeyName(s.ID), s, true); err != nil {
		return SlotInfo{}, fmt.Errorf("writing key slot: %w", err)
	}
	r.slotMu.Lock()
	r.slots = append(r.slots, s)
	r.slotMu.Unlock()
	if _, err := r.rewrapTenants(ctx, r.wrapTo(s)); err != nil {
		return SlotInfo{}, fmt.Errorf("wrapping tenant keys to the new slot: %w", err)
	}
	// From here on this session works with the new slot.
	r.slotID, r.slotPriv = s.ID, priv
	if err := r.RemoveSlot(ctx, old); err != nil {
		return SlotInfo{}, fmt.Errorf("removing the old slot: %w", err)
	}
	r.Log.Info("key slot rotated", "old", old.Short(), "new", s.ID.Short())
	return SlotInfo{ID: s.ID, Type: s.Type, Label: s.Label, Created: s.Created, InUse: true}, nil
}

// EraseReport says what EraseTenant did.
type EraseReport struct {
	// Deleted counts the tenant's data objects deleted.
	Deleted int
	// Retained lists the data objects the storage keeps under retention
	// (storage.ErrRetained): they stay, undecryptable, until it ends;
	// erasing the tenant again then deletes them.
	Retained []string
	// RetainedUntil is the latest end of those retentions the storage
	// reported (zero when none, or unknown).
	RetainedUntil time.Time
}

// EraseTenant crypto-shreds a tenant: its envelope (its wrapped root keys)
// is deleted first, then every object of the tenant. Once the envelope is
// gone nothing the repository holds can decrypt the tenant's objects, even
// copies made earlier elsewhere, and even objects the storage retains
// (S3 Object Lock): those are listed in the report and left in place, and
// erasing the tenant again after their retention ends deletes them (a
// tenant whose envelope is gone but whose objects remain counts as still
// being erased).
func (r *Repo) EraseTenant(ctx context.Context, name string) (*EraseReport, error) {
	if err := r.RefuseAppendOnly("erasing a tenant"); err != nil {
		return nil, err
	}
	if err := ValidTenantName(name); err != nil {
		return nil, err
	}
	h := r.HandleOf(name)
	vs, err := r.envelopeVersions(ctx, h)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		// No keys: unknown, or erased already with objects left over
		// (retained, or a crash); finish the latter.
		left, err := r.tenantDataLeft(ctx, h)
		if err != nil {
			return nil, err
		}
		if !left {
			return nil, fmt.Errorf("%w: %q", ErrTenantNotFound, name)
		}
	}
	// Delete every version; list again afterwards in case a concurrent
	// key change wrote a newer one meanwhile.
	for round := 0; len(vs) > 0 && round < 4; round++ {
		for _, v := range vs {
			if err := r.St.Delete(ctx, envelopeKey(h, v)); err != nil && !errors.Is(err, storage.ErrNotExist) {
				if errors.Is(err, storage.ErrRetained) {
					return nil, fmt.Errorf("the tenant's key envelope is under retention, so its keys cannot be destroyed (never put a retention on tenants/: Reprise locks data objects only; a bucket default retention locks everything): %w", err)
				}
				return nil, fmt.Errorf("deleting the tenant's key envelope: %w", err)
			}
		}
		if vs, err = r.envelopeVersions(ctx, h); err != nil {
			return nil, err
		}
	}
	if len(vs) > 0 {
		return nil, errors.New("tenant envelope keeps being rewritten during erasure: stop key management and try again")
	}
	r.Log.Info("tenant keys destroyed", "handle", h.String())
	var keys []string
	if err := r.St.List(ctx, dataPrefix+h.String()+"/", func(i storage.Info) error {
		keys = append(keys, i.Key)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing the tenant's objects (keys are already destroyed): %w", err)
	}
	rep := &EraseReport{}
	for _, k := range keys {
		err := r.St.Delete(ctx, k)
		switch {
		case err == nil || errors.Is(err, storage.ErrNotExist):
			rep.Deleted++
		case errors.Is(err, storage.ErrRetained):
			rep.Retained = append(rep.Retained, k)
			if until, _ := storage.RetainedUntil(err); until.After(rep.RetainedUntil) {
				rep.RetainedUntil = until
			}
		default:
			return rep, fmt.Errorf("deleting %s (keys are already destroyed): %w", k, err)
		}
	}
	if len(rep.Retained) > 0 {
		r.Log.Info("objects of the erased tenant stay under retention, undecryptable; erase the tenant again once it ends",
			"handle", h.String(), "objects", len(rep.Retained), "until", rep.RetainedUntil)
	}
	return rep, nil
}

// tenantDataLeft reports whether any object is stored under the tenant's
// data prefix.
func (r *Repo) tenantDataLeft(ctx context.Context, h format.Handle) (bool, error) {
	errFound := errors.New("found")
	err := r.St.List(ctx, dataPrefix+h.String()+"/", func(storage.Info) error { return errFound })
	if errors.Is(err, errFound) {
		return true, nil
	}
	return false, err
}

// Roll adds a new generation to the tenant's keys: a fresh root key,
// wrapped to every slot, under which new data is written; older
// generations stay readable. It returns the new generation.
func (t *Tenant) Roll(ctx context.Context) (uint32, error) {
	r := t.Repo
	if err := r.RefuseAppendOnly("rolling a tenant key"); err != nil {
		return 0, err
	}
	if err := r.refreshSlots(ctx); err != nil {
		return 0, err
	}
	root, err := crypto.RandomKey()
	if err != nil {
		return 0, err
	}
	defer root.Wipe()
	var gen uint32
	_, err = r.updateEnvelope(ctx, t.Handle, func(env *format.Envelope, h format.Handle, _ []crypto.Key) (bool, error) {
		gen = uint32(len(env.Generations) + 1)
		g, err := r.newGeneration(h, gen, &root)
		if err != nil {
			return false, err
		}
		env.Generations = append(env.Generations, g)
		return true, nil
	})
	if err != nil {
		return 0, err
	}
	if gen == 0 {
		return 0, fmt.Errorf("%w: %q", ErrTenantNotFound, t.Name)
	}
	// Other generations may have appeared concurrently: reload them all.
	env, _, err := r.readEnvelope(ctx, t.Handle)
	if err != nil {
		return 0, err
	}
	if err := t.openEnvelope(env); err != nil {
		return 0, err
	}
	return gen, nil
}
