package repo

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/storage"
)

// Tenant is one tenant of an open repository, with its keys unwrapped.
type Tenant struct {
	Repo   *Repo
	Name   string
	Handle format.Handle

	mu   sync.Mutex
	gens []*crypto.TenantKeys // index gen-1
	cur  uint32               // generation new data is written under

	splitter *chunk.Splitter
}

// HandleOf returns the handle of a tenant name: the first 16 bytes of
// BLAKE3 keyed with the repository's names key.
func (r *Repo) HandleOf(name string) format.Handle {
	h := crypto.NewIDHasher(&r.keys.Names)
	id := h.Sum([]byte(name))
	return format.Handle(id[:format.TenantHandleSize])
}

// Envelope objects are versioned: "tenants/<handle>/<version>", version a
// 10-digit decimal from 1. A change writes version+1 with a create-only
// put, so two concurrent changes cannot both succeed on the same base: the
// loser reads the winner's version and applies its change again.
const envelopeDigits = 10

func envelopePrefix(h format.Handle) string { return tenantPrefix + h.String() + "/" }

func envelopeKey(h format.Handle, version uint64) string {
	return fmt.Sprintf("%s%0*d", envelopePrefix(h), envelopeDigits, version)
}

// envelopeVersions lists the stored versions of a tenant's envelope, in
// increasing order.
func (r *Repo) envelopeVersions(ctx context.Context, h format.Handle) ([]uint64, error) {
	var vs []uint64
	prefix := envelopePrefix(h)
	err := r.St.List(ctx, prefix, func(i storage.Info) error {
		v, err := strconv.ParseUint(strings.TrimPrefix(i.Key, prefix), 10, 64)
		if err != nil || v == 0 || envelopeKey(h, v) != i.Key || len(i.Key) != len(prefix)+envelopeDigits {
			r.Log.Warn("ignoring malformed envelope object", "object", i.Key)
			return nil
		}
		vs = append(vs, v)
		return nil
	})
	slices.Sort(vs) // fixed width makes lexical order numeric; sort anyway
	return vs, err
}

// readEnvelope reads the newest version of a tenant's envelope. A tenant
// without one fails with an error wrapping storage.ErrNotExist.
func (r *Repo) readEnvelope(ctx context.Context, h format.Handle) (*format.Envelope, uint64, error) {
	for attempt := 0; attempt < 8; attempt++ {
		vs, err := r.envelopeVersions(ctx, h)
		if err != nil {
			return nil, 0, err
		}
		if len(vs) == 0 {
			return nil, 0, fmt.Errorf("tenant envelope: %w", storage.ErrNotExist)
		}
		v := vs[len(vs)-1]
		b, err := storage.ReadAll(ctx, r.St, envelopeKey(h, v))
		if errors.Is(err, storage.ErrNotExist) {
			continue // superseded and removed since the listing
		} else if err != nil {
			return nil, 0, err
		}
		env, err := format.ParseEnvelope(b)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", envelopeKey(h, v), err)
		}
		return env, v, nil
	}
	return nil, 0, errors.New("tenant envelope keeps changing under us; try again")
}

// openGenerations checks the envelope's tenant name and unwraps every
// generation's root key with the slot in use, verifying each root key's
// MAC. The caller wipes the keys.
func (r *Repo) openGenerations(env *format.Envelope, h format.Handle) (name string, roots []crypto.Key, err error) {
	nb, err := crypto.OpenBox(&r.keys.Metadata, env.Name, format.NameAD(&r.Config.ID, &h))
	if err != nil {
		return "", nil, fmt.Errorf("tenant name does not authenticate: %w", err)
	}
	if r.HandleOf(string(nb)) != h {
		return "", nil, fmt.Errorf("%w: envelope stored under another tenant's handle", crypto.ErrAuth)
	}
	roots = make([]crypto.Key, len(env.Generations))
	for i, g := range env.Generations {
		st, ok := g.Keys[r.slotID.String()]
		if !ok {
			err = fmt.Errorf("generation %d has no key for the slot in use (slot %s): %w", g.Gen, r.slotID.Short(), ErrWrongKey)
		} else if roots[i], err = r.slotPriv.Unwrap(st, format.TenantKeyAD(&r.Config.ID, &h, g.Gen, &r.slotID)); err != nil {
			err = fmt.Errorf("generation %d: %w", g.Gen, err)
		} else if !crypto.ConstantTimeEqual(g.MAC, format.GenerationMAC(&r.keys.EnvelopeAuth, &r.Config.ID, &h, g.Gen, &roots[i])) {
			err = fmt.Errorf("generation %d: %w: root key not written by a holder of the repository key", g.Gen, crypto.ErrAuth)
		}
		if err != nil {
			for j := range roots {
				roots[j].Wipe()
			}
			return "", nil, err
		}
	}
	return string(nb), roots, nil
}

// refreshSlots rereads the key slots, so that a slot another client added
// since this one opened also receives new tenant keys.
func (r *Repo) refreshSlots(ctx context.Context) error {
	slots, err := r.readSlots(ctx)
	if err != nil {
		return err
	}
	r.authenticateSlots(slots)
	return nil
}

// newGeneration wraps root to every authenticated slot, with its MAC.
func (r *Repo) newGeneration(h format.Handle, gen uint32, root *crypto.Key) (format.Generation, error) {
	g := format.Generation{Gen: gen, Created: time.Now().UTC().Truncate(time.Second), Keys: map[string][]byte{},
		MAC: format.GenerationMAC(&r.keys.EnvelopeAuth, &r.Config.ID, &h, gen, root)}
	for _, s := range r.slotList() {
		st, err := crypto.WrapToPublic(s.PublicKey, root, format.TenantKeyAD(&r.Config.ID, &h, gen, &s.ID))
		if err != nil {
			return g, err
		}
		g.Keys[s.ID.String()] = st
	}
	return g, nil
}

// DataPrefix is the prefix of every data object of the tenant.
func (t *Tenant) DataPrefix() string { return dataPrefix + t.Handle.String() + "/" }

// PackKey names a pack object.
func (t *Tenant) PackKey(id crypto.ID) string {
	s := id.String()
	return t.DataPrefix() + "p/" + s[:2] + "/" + s
}

// IndexKey names an index object.
func (t *Tenant) IndexKey(id crypto.ID) string { return t.DataPrefix() + "i/" + id.String() }

// SnapshotKey names a snapshot object.
func (t *Tenant) SnapshotKey(id crypto.ID) string { return t.DataPrefix() + "s/" + id.String() }

// ValidTenantName reports whether name is acceptable as a tenant name.
func ValidTenantName(name string) error {
	if name == "" || len(name) > 256 || strings.ContainsAny(name, "\x00\n\r") {
		return fmt.Errorf("invalid tenant name %q: want 1 to 256 bytes without NUL or newlines", name)
	}
	return nil
}

// Tenant opens the tenant called name. With create, a tenant that does not
// exist yet is created (safely against concurrent creators: the first
// envelope written wins and the others use it).
func (r *Repo) Tenant(ctx context.Context, name string, create bool) (*Tenant, error) {
	if err := ValidTenantName(name); err != nil {
		return nil, err
	}
	h := r.HandleOf(name)
	t := &Tenant{Repo: r, Name: name, Handle: h}
	for attempt := 0; ; attempt++ {
		env, _, err := r.readEnvelope(ctx, h)
		if errors.Is(err, storage.ErrNotExist) {
			if !create {
				return nil, fmt.Errorf("%w: %q", ErrTenantNotFound, name)
			}
			if attempt > 0 {
				return nil, fmt.Errorf("tenant %q: envelope vanished while being created", name)
			}
			err = r.createEnvelope(ctx, name, h)
			if err == nil || errors.Is(err, storage.ErrExist) {
				continue // read back what won
			}
			return nil, err
		} else if err != nil {
			return nil, fmt.Errorf("tenant %q: reading key envelope: %w", name, err)
		}
		if err := t.openEnvelope(env); err != nil {
			return nil, fmt.Errorf("tenant %q: %w", name, err)
		}
		break
	}
	return t, nil
}

func (r *Repo) createEnvelope(ctx context.Context, name string, h format.Handle) error {
	root, err := crypto.RandomKey()
	if err != nil {
		return err
	}
	defer root.Wipe()
	nameBox, err := crypto.SealBox(&r.keys.Metadata, []byte(name), format.NameAD(&r.Config.ID, &h))
	if err != nil {
		return err
	}
	if err := r.refreshSlots(ctx); err != nil {
		return err
	}
	g, err := r.newGeneration(h, 1, &root)
	if err != nil {
		return err
	}
	env := &format.Envelope{Version: format.Version, Name: nameBox, Generations: []format.Generation{g}}
	r.Log.Info("creating tenant", "handle", h.String())
	return putJSON(ctx, r.St, envelopeKey(h, 1), env, true)
}

func (t *Tenant) openEnvelope(env *format.Envelope) error {
	r := t.Repo
	name, roots, err := r.openGenerations(env, t.Handle)
	if err != nil {
		return err
	}
	if name != t.Name {
		return fmt.Errorf("%w: key envelope does not belong to this tenant", crypto.ErrAuth)
	}
	gens := make([]*crypto.TenantKeys, len(roots))
	for i := range roots {
		gens[i] = crypto.NewTenantKeys(&roots[i])
		roots[i].Wipe()
	}
	p := chunk.Params{Min: r.Config.Chunker.Min, Avg: r.Config.Chunker.Avg, Max: r.Config.Chunker.Max}
	sp, err := chunk.NewSplitter(p, chunk.NewGear(gens[len(gens)-1].Gear[:]))
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(gens) < len(t.gens) {
		for i := range gens {
			gens[i].Wipe()
		}
		return fmt.Errorf("%w: the tenant envelope lost generations", format.ErrCorrupt)
	}
	// Keep the generations already open: writers and loaders may hold
	// them. Only newer ones are added.
	for i := range t.gens {
		gens[i].Wipe()
		gens[i] = t.gens[i]
	}
	t.gens, t.cur, t.splitter = gens, uint32(len(gens)), sp
	return nil
}

// Keys returns the keys of generation gen, or an error for a generation
// the tenant does not have.
func (t *Tenant) Keys(gen uint32) (*crypto.TenantKeys, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen == 0 || int(gen) > len(t.gens) {
		return nil, fmt.Errorf("%w: generation %d unknown to tenant", format.ErrCorrupt, gen)
	}
	return t.gens[gen-1], nil
}

// Current returns the generation new data is written under and its keys.
func (t *Tenant) Current() (uint32, *crypto.TenantKeys) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cur, t.gens[t.cur-1]
}

// Splitter returns the tenant's chunker (keyed by the current generation).
func (t *Tenant) Splitter() *chunk.Splitter {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.splitter
}

// Close wipes the tenant's keys.
func (t *Tenant) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, g := range t.gens {
		g.Wipe()
	}
}

// TenantNames lists the names of every tenant of the repository. Envelopes
// that do not open are logged and left out (Check reports them).
func (r *Repo) TenantNames(ctx context.Context) ([]string, error) {
	var mu sync.Mutex
	var names []string
	err := r.eachEnvelope(ctx, func(h format.Handle, env *format.Envelope) {
		if name, ok := r.envelopeName(h, env); ok {
			mu.Lock()
			names = append(names, name)
			mu.Unlock()
		}
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// OpenTenants opens every tenant of the repository, reading each envelope
// once (TenantNames then Tenant for each name read them twice). Envelopes
// that do not open are logged and left out (Check reports them). The
// tenants come sorted by name; the caller closes them.
func (r *Repo) OpenTenants(ctx context.Context) ([]*Tenant, error) {
	return r.openTenants(ctx, func(h format.Handle, _ string, err error) {
		r.Log.Warn("tenant envelope does not open", "handle", h.String(), "err", err)
	})
}

// openTenants is OpenTenants, calling failed (concurrently) for each
// tenant whose name opens but whose keys do not.
func (r *Repo) openTenants(ctx context.Context, failed func(h format.Handle, name string, err error)) ([]*Tenant, error) {
	var mu sync.Mutex
	var ts []*Tenant
	err := r.eachEnvelope(ctx, func(h format.Handle, env *format.Envelope) {
		name, ok := r.envelopeName(h, env)
		if !ok {
			return
		}
		t := &Tenant{Repo: r, Name: name, Handle: h}
		if err := t.openEnvelope(env); err != nil {
			failed(h, name, err)
			return
		}
		mu.Lock()
		ts = append(ts, t)
		mu.Unlock()
	})
	if err != nil {
		for _, t := range ts {
			t.Close()
		}
		return nil, err
	}
	slices.SortFunc(ts, func(a, b *Tenant) int { return strings.Compare(a.Name, b.Name) })
	return ts, nil
}

// envelopeName opens the tenant name sealed in env, found under handle h;
// a name that does not authenticate, or is another handle's, is logged.
func (r *Repo) envelopeName(h format.Handle, env *format.Envelope) (string, bool) {
	name, err := crypto.OpenBox(&r.keys.Metadata, env.Name, format.NameAD(&r.Config.ID, &h))
	if err != nil || r.HandleOf(string(name)) != h {
		r.Log.Warn("tenant envelope name does not authenticate", "handle", h.String())
		return "", false
	}
	return string(name), true
}

// eachEnvelope reads the newest envelope of every tenant, metaReaders at
// once, and calls fn (concurrently) with each. A name costs an envelope
// read, so one after the other a thousand tenants would take a minute
// over an object store; the listing gives each tenant's newest version,
// so a read is one round trip (two when the envelope changed since).
// Unreadable envelopes are logged and skipped; fatal storage errors and
// cancellation end the walk.
func (r *Repo) eachEnvelope(ctx context.Context, fn func(format.Handle, *format.Envelope)) error {
	handles, latest, err := r.tenantVersions(ctx)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(metaReaders)
	for i, h := range handles {
		g.Go(func() error {
			env, err := r.readEnvelopeAt(gctx, h, latest[i])
			switch {
			case errors.Is(err, storage.ErrNotExist):
				return nil
			case err != nil && (isFatalStorage(err) || gctx.Err() != nil):
				return err
			case err != nil:
				r.Log.Warn("unreadable tenant envelope", "handle", h.String(), "err", err)
				return nil
			}
			fn(h, env)
			return nil
		})
	}
	return g.Wait()
}

// readEnvelopeAt reads version v of a tenant's envelope, the newest when
// listed (0: none was); if it has been superseded and removed since, the
// newest one.
func (r *Repo) readEnvelopeAt(ctx context.Context, h format.Handle, v uint64) (*format.Envelope, error) {
	if v > 0 {
		b, err := storage.ReadAll(ctx, r.St, envelopeKey(h, v))
		switch {
		case err == nil:
			env, err := format.ParseEnvelope(b)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", envelopeKey(h, v), err)
			}
			return env, nil
		case !errors.Is(err, storage.ErrNotExist):
			return nil, err
		}
	}
	// None listed (readEnvelope says why), or gone since: the newest now.
	env, _, err := r.readEnvelope(ctx, h)
	return env, err
}

// tenantHandles lists the handles that have an envelope object.
func (r *Repo) tenantHandles(ctx context.Context) ([]format.Handle, error) {
	hs, _, err := r.tenantVersions(ctx)
	return hs, err
}

// tenantVersions lists the handles that have an envelope object, with the
// newest well-formed version of each (0 when none is).
func (r *Repo) tenantVersions(ctx context.Context) ([]format.Handle, []uint64, error) {
	var (
		hs     []format.Handle
		latest []uint64
	)
	err := r.St.List(ctx, tenantPrefix, func(info storage.Info) error {
		rest := strings.TrimPrefix(info.Key, tenantPrefix)
		hx, vx, ok := strings.Cut(rest, "/")
		var h format.Handle
		if n, err := hex.Decode(h[:], []byte(hx)); !ok || err != nil || n != len(h) || len(hx) != 2*len(h) {
			r.Log.Warn("ignoring object with a malformed tenant handle", "object", info.Key)
			return nil
		}
		if len(hs) == 0 || hs[len(hs)-1] != h { // listing is lexical: versions of one handle are adjacent
			hs = append(hs, h)
			latest = append(latest, 0)
		}
		if v, err := strconv.ParseUint(vx, 10, 64); err == nil && v > 0 && len(vx) == envelopeDigits && envelopeKey(h, v) == info.Key {
			latest[len(latest)-1] = max(latest[len(latest)-1], v)
		}
		return nil
	})
	return hs, latest, err
}
