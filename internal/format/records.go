package format

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/crypto"
)

// Config is the repository's plaintext configuration object, "config"
// (docs/FORMAT.md, "Config"). It holds no secret.
type Config struct {
	Format   string    `json:"format"`  // FormatName
	Version  int       `json:"version"` // Version or Version2
	ID       crypto.ID `json:"id"`      // random repository ID
	Created  time.Time `json:"created"`
	Chunker  Chunker   `json:"chunker"`
	PackSize int       `json:"pack_size"` // target pack size in bytes
	// Codec names the codec chunks are compressed with, CodecZstd or
	// CodecS2: required in version 2, absent from version 1 (whose chunks
	// use zstd).
	Codec string `json:"codec,omitempty"`
}

// Chunk codec names, the values of a version 2 config's codec field.
const (
	CodecZstd = "zstd"
	CodecS2   = "s2"
)

// NewConfig returns the config of a new repository whose chunks are
// compressed with codec (CodecZstd or CodecS2): version 1, without a codec
// field, for zstd, so that such a repository stays readable by every
// reader of version 1; version 2 otherwise.
func NewConfig(id crypto.ID, created time.Time, ch Chunker, packSize int, codec string) (*Config, error) {
	c := &Config{Format: FormatName, Version: Version, ID: id, Created: created, Chunker: ch, PackSize: packSize}
	switch codec {
	case CodecZstd:
	case CodecS2:
		c.Version, c.Codec = Version2, codec
	default:
		return nil, fmt.Errorf("unknown chunk codec %q (want %q or %q)", codec, CodecZstd, CodecS2)
	}
	return c, nil
}

// ChunkEncoding returns the payload encoding a writer compresses chunks
// with in this repository: EncodingS2 when the config names S2,
// EncodingZstd otherwise.
func (c *Config) ChunkEncoding() byte {
	if c.Codec == CodecS2 {
		return EncodingS2
	}
	return EncodingZstd
}

// CheckPayload fails, with an error wrapping ErrCorrupt, when a payload's
// encoding byte is one this repository's version does not define:
// EncodingS2 in a version 1 repository. Decode checks the rest.
func (c *Config) CheckPayload(payload []byte) error {
	if len(payload) > 0 && payload[0] == EncodingS2 && c.Version < Version2 {
		return fmt.Errorf("%w: payload encoding %d (s2) in a version %d repository", ErrCorrupt, payload[0], c.Version)
	}
	return nil
}

// Chunker holds the chunk size parameters.
type Chunker struct {
	Min int `json:"min"`
	Avg int `json:"avg"`
	Max int `json:"max"`
}

// strictUnmarshal decodes JSON rejecting unknown fields, duplicate fields
// and trailing data, so that one object has one meaning.
func strictUnmarshal(what string, b []byte, v any) error {
	if err := noDuplicateKeys(b); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, what, err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, what, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return fmt.Errorf("%w: %s: trailing data", ErrCorrupt, what)
	}
	return nil
}

// noDuplicateKeys rejects JSON in which an object names a key twice
// (encoding/json would silently keep the last one).
func noDuplicateKeys(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		obj   bool
		key   bool // next token in an object is a key
		names []string
	}
	var stack []*frame
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.key {
			if delim, ok := tok.(json.Delim); ok && delim == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			name, _ := tok.(string)
			// encoding/json matches names case-insensitively (with
			// Unicode folding): so must the duplicate check.
			for _, n := range top.names {
				if strings.EqualFold(n, name) {
					return fmt.Errorf("duplicate field %q", name)
				}
			}
			top.names = append(top.names, name)
			top.key = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, key: true})
			if top != nil && top.obj {
				top.key = true
			}
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			if top != nil && top.obj {
				top.key = true
			}
			continue
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			continue
		}
		if top != nil && top.obj {
			top.key = true // a value was read; a key comes next
		}
	}
}

// ParseConfig decodes and validates a config object of version 1 or 2.
// A config of another format or version fails with ErrVersion, even when
// it holds fields this version does not define.
func ParseConfig(b []byte) (*Config, error) {
	// The format and version first, leniently: a later version may add
	// fields, and its config is unsupported, not corrupt.
	var head struct {
		Format  string          `json:"format"`
		Version int             `json:"version"`
		Codec   json.RawMessage `json:"codec"` // non-nil when present, even as null
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("%w: config: %v", ErrCorrupt, err)
	}
	if head.Format != FormatName || (head.Version != Version && head.Version != Version2) {
		return nil, fmt.Errorf("%w: repository is %q version %d, this build reads %q versions %d and %d",
			ErrVersion, head.Format, head.Version, FormatName, Version, Version2)
	}
	var c Config
	if err := strictUnmarshal("config", b, &c); err != nil {
		return nil, err
	}
	switch {
	case c.Version == Version && head.Codec != nil:
		return nil, fmt.Errorf("%w: config: a version %d config has no codec field", ErrCorrupt, Version)
	case c.Version == Version2 && c.Codec != CodecZstd && c.Codec != CodecS2:
		return nil, fmt.Errorf("%w: config: codec %q (want %q or %q)", ErrCorrupt, c.Codec, CodecZstd, CodecS2)
	}
	if c.PackSize < 1<<20 || c.PackSize > MaxPackSize/2 {
		return nil, fmt.Errorf("%w: config: pack size %d out of range", ErrCorrupt, c.PackSize)
	}
	// Explicit, valid chunk sizes: a repository never depends on a build's
	// defaults, which may be retuned.
	if err := (chunk.Params{Min: c.Chunker.Min, Avg: c.Chunker.Avg, Max: c.Chunker.Max}).Validate(); err != nil || c.Chunker == (Chunker{}) {
		return nil, fmt.Errorf("%w: config: chunker parameters %+v: %v", ErrCorrupt, c.Chunker, err)
	}
	return &c, nil
}

// Slot is a key slot object, "keys/<id>" (docs/FORMAT.md, "Key slots"):
// one way to open the repository. A slot is an X25519 key pair: its public
// key receives every tenant's root keys (wrapped with
// crypto.WrapToPublic); its private key and the repository key are sealed
// together under a slot key that a passphrase (argon2id) or a KMS keeper
// yields, so only a holder of that secret can read or replace them.
type Slot struct {
	Version int       `json:"version"`
	ID      crypto.ID `json:"id"`
	Type    string    `json:"type"` // SlotPassphrase or SlotKeeper
	Label   string    `json:"label,omitempty"`
	Created time.Time `json:"created"`
	// Argon2 holds the passphrase derivation parameters (passphrase slots).
	Argon2 *crypto.Argon2Params `json:"argon2id,omitempty"`
	// KeeperKey is the slot key encrypted by a KMS keeper (keeper slots).
	KeeperKey []byte `json:"keeper_key,omitempty"`
	// PublicKey is the slot's X25519 public key.
	PublicKey []byte `json:"public_key"`
	// Secret is the slot's X25519 private key followed by the repository
	// key (64 bytes), sealed (crypto.SealBox) under the slot key with
	// SlotAD(..., "secret") as associated data.
	Secret []byte `json:"secret"`
	// MAC authenticates ID, Type and PublicKey under the repository's slot
	// authentication key (SlotMAC), so that a party holding only backend
	// credentials cannot slip in a public key of its own.
	MAC []byte `json:"mac"`
}

// Slot types.
const (
	SlotPassphrase = "passphrase"
	SlotKeeper     = "keeper"
)

// SlotAD is the associated data binding a slot's sealed parts to the
// repository, the slot and their purpose.
func SlotAD(repo, slot *crypto.ID, purpose string) []byte {
	ad := []byte("reprise.dev/v1 slot ")
	ad = append(ad, purpose...)
	ad = append(ad, 0)
	ad = append(ad, repo[:]...)
	return append(ad, slot[:]...)
}

// SlotMAC computes the MAC of a slot's public parts under authKey.
func SlotMAC(authKey *crypto.Key, repo *crypto.ID, s *Slot) []byte {
	k := crypto.Derive(crypto.ContextSlotMAC, authKey[:], repo[:], s.ID[:], s.PublicKey, []byte(s.Type))
	return k[:]
}

// SlotSecretSize is the plaintext size of Slot.Secret.
const SlotSecretSize = 2 * crypto.KeySize

// ParseSlot decodes and validates a slot object.
func ParseSlot(b []byte) (*Slot, error) {
	var s Slot
	if err := strictUnmarshal("key slot", b, &s); err != nil {
		return nil, err
	}
	if s.Version != Version {
		return nil, fmt.Errorf("%w: key slot version %d", ErrVersion, s.Version)
	}
	switch s.Type {
	case SlotPassphrase:
		if s.Argon2 == nil {
			return nil, fmt.Errorf("%w: passphrase slot without argon2id parameters", ErrCorrupt)
		}
		if err := s.Argon2.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
	case SlotKeeper:
		if len(s.KeeperKey) == 0 || len(s.KeeperKey) > 64<<10 {
			return nil, fmt.Errorf("%w: keeper slot without its encrypted key", ErrCorrupt)
		}
	default:
		return nil, fmt.Errorf("%w: unknown key slot type %q", ErrCorrupt, s.Type)
	}
	switch {
	case len(s.PublicKey) != crypto.PublicKeySize:
		return nil, fmt.Errorf("%w: key slot: public key of %d bytes", ErrCorrupt, len(s.PublicKey))
	case len(s.Secret) != SlotSecretSize+crypto.BoxOverhead:
		return nil, fmt.Errorf("%w: key slot: sealed secret of %d bytes", ErrCorrupt, len(s.Secret))
	case len(s.MAC) != crypto.KeySize:
		return nil, fmt.Errorf("%w: key slot: MAC of %d bytes", ErrCorrupt, len(s.MAC))
	}
	return &s, nil
}

// Envelope is a tenant's key envelope, "tenants/<handle>/<version>"
// (docs/FORMAT.md, "Tenant envelopes"): the tenant's root keys, one per
// generation, each wrapped to every slot. Envelopes are never overwritten:
// a change writes the next version with a create-only put, so concurrent
// changes cannot silently undo each other.
type Envelope struct {
	Version int `json:"version"`
	// Name is the tenant's name sealed (SealBox) under the repository
	// metadata key, with NameAD.
	Name        []byte       `json:"name"`
	Generations []Generation `json:"generations"`
}

// Generation is one tenant root key. New data is written under the highest
// generation; older ones stay readable.
type Generation struct {
	Gen     uint32    `json:"gen"`
	Created time.Time `json:"created"`
	// Keys maps a slot ID (hex) to the root key wrapped to that slot's
	// public key (a stanza), with TenantKeyAD.
	Keys map[string][]byte `json:"keys"`
	// MAC binds the root key to its repository, tenant and generation
	// under the repository's envelope-auth key (GenerationMAC): a root key
	// planted by someone without the repository key is refused.
	MAC []byte `json:"mac"`
}

// GenerationMAC computes the MAC of a tenant root key of generation gen.
func GenerationMAC(authKey *crypto.Key, repo *crypto.ID, h *Handle, gen uint32, root *crypto.Key) []byte {
	var g [4]byte
	binary.BigEndian.PutUint32(g[:], gen)
	k := crypto.Derive(crypto.ContextGenMAC, authKey[:], repo[:], h[:], g[:], root[:])
	return k[:]
}

// NameAD binds a sealed tenant name to its repository and handle.
func NameAD(repo *crypto.ID, h *Handle) []byte {
	ad := []byte("reprise.dev/v1 tenant name")
	ad = append(ad, repo[:]...)
	return append(ad, h[:]...)
}

// TenantKeyAD binds a wrapped tenant root key to its repository, tenant,
// generation and slot.
func TenantKeyAD(repo *crypto.ID, h *Handle, gen uint32, slot *crypto.ID) []byte {
	ad := []byte("reprise.dev/v1 tenant key")
	ad = append(ad, repo[:]...)
	ad = append(ad, h[:]...)
	ad = binary.BigEndian.AppendUint32(ad, gen)
	return append(ad, slot[:]...)
}

// ParseEnvelope decodes and validates a tenant envelope.
func ParseEnvelope(b []byte) (*Envelope, error) {
	var e Envelope
	if err := strictUnmarshal("tenant envelope", b, &e); err != nil {
		return nil, err
	}
	if e.Version != Version {
		return nil, fmt.Errorf("%w: tenant envelope version %d", ErrVersion, e.Version)
	}
	if len(e.Generations) == 0 {
		return nil, fmt.Errorf("%w: tenant envelope without keys", ErrCorrupt)
	}
	for i, g := range e.Generations {
		if g.Gen != uint32(i+1) {
			return nil, fmt.Errorf("%w: tenant envelope: generation %d at position %d", ErrCorrupt, g.Gen, i)
		}
		if len(g.Keys) == 0 || len(g.MAC) != crypto.KeySize {
			return nil, fmt.Errorf("%w: tenant envelope: generation %d without keys or MAC", ErrCorrupt, g.Gen)
		}
		for slot, k := range g.Keys {
			if _, err := crypto.ParseID(slot); err != nil || len(k) != crypto.StanzaSize {
				return nil, fmt.Errorf("%w: tenant envelope: bad key for slot %q", ErrCorrupt, slot)
			}
		}
	}
	return &e, nil
}

// Snapshot is the plaintext of a snapshot object, "t/<handle>/s/<id>"
// (docs/FORMAT.md, "Snapshots").
type Snapshot struct {
	Version int       `json:"version"`
	ID      crypto.ID `json:"id"` // equals the ID in the object's name
	Time    time.Time `json:"time"`
	Host    string    `json:"host,omitempty"`
	Kind    string    `json:"kind"`   // SnapshotDir or SnapshotStream
	Source  string    `json:"source"` // directory path, or stream name
	Tags    []string  `json:"tags,omitempty"`
	// Tree lists the chunks of the tree stream, in order.
	Tree  []ChunkRef    `json:"tree"`
	Stats SnapshotStats `json:"stats"`
}

// Snapshot kinds.
const (
	SnapshotDir    = "dir"
	SnapshotStream = "stream"
)

// SnapshotStats summarises what a backup saw and stored.
type SnapshotStats struct {
	Files      int64   `json:"files"`
	Dirs       int64   `json:"dirs"`
	Symlinks   int64   `json:"symlinks"`
	Bytes      int64   `json:"bytes"`       // file contents read
	Chunks     int64   `json:"chunks"`      // chunk references
	NewChunks  int64   `json:"new_chunks"`  // chunks stored by this backup
	BytesAdded int64   `json:"bytes_added"` // sealed bytes written to packs
	Seconds    float64 `json:"seconds"`
}

// MarshalSnapshot encodes a snapshot's plaintext.
func MarshalSnapshot(s *Snapshot) ([]byte, error) { return json.Marshal(s) }

// ParseSnapshot decodes a snapshot's plaintext and checks that it carries
// the ID of the object it was read from.
func ParseSnapshot(b []byte, id *crypto.ID) (*Snapshot, error) {
	var s Snapshot
	if err := strictUnmarshal("snapshot", b, &s); err != nil {
		return nil, err
	}
	if s.Version != Version {
		return nil, fmt.Errorf("%w: snapshot version %d", ErrVersion, s.Version)
	}
	if s.ID != *id {
		return nil, fmt.Errorf("%w: snapshot %s names itself %s", ErrCorrupt, id.Short(), s.ID.Short())
	}
	if s.Kind != SnapshotDir && s.Kind != SnapshotStream {
		return nil, fmt.Errorf("%w: snapshot kind %q", ErrCorrupt, s.Kind)
	}
	for _, c := range s.Tree {
		if c.Len == 0 || c.Len > MaxChunkSize {
			return nil, fmt.Errorf("%w: snapshot tree chunk length %d", ErrCorrupt, c.Len)
		}
	}
	return &s, nil
}

// HandleString is the hex form of a handle used in object names.
func (h Handle) String() string { return hex.EncodeToString(h[:]) }

// MagicRecord starts a sealed run record object.
const MagicRecord = "RPR1"

// Run kinds recorded in run records.
const (
	RunBackup  = "backup"
	RunRestore = "restore"
	RunCheck   = "check"
	RunDrill   = "drill"
)

// Record is the plaintext of a run record, "t/<handle>/r/<id>"
// (docs/FORMAT.md, "Run records"): one backup, restore, check or drill, its
// outcome and figures, stored in the repository itself so the history
// survives the loss of the machine that ran it.
type Record struct {
	Version  int       `json:"version"`
	ID       crypto.ID `json:"id"` // equals the ID in the object's name
	Kind     string    `json:"kind"`
	Source   string    `json:"source,omitempty"` // backup source or stream name
	Host     string    `json:"host,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	OK       bool      `json:"ok"`
	Error    string    `json:"error,omitempty"`
	Snapshot string    `json:"snapshot,omitempty"`
	// Figures; which ones are set depends on the kind.
	Files      int64              `json:"files,omitempty"`
	BytesRead  int64              `json:"bytes_read,omitempty"`
	BytesAdded int64              `json:"bytes_added,omitempty"`
	Bytes      int64              `json:"bytes,omitempty"` // restored or verified
	Problems   int64              `json:"problems,omitempty"`
	Stages     map[string]float64 `json:"stages,omitempty"` // seconds per stage (drills)
}

// MarshalRecord encodes a run record's plaintext.
func MarshalRecord(r *Record) ([]byte, error) { return json.Marshal(r) }

// ParseRecord decodes a run record's plaintext and checks that it carries
// the ID of the object it was read from.
func ParseRecord(b []byte, id *crypto.ID) (*Record, error) {
	var r Record
	if err := strictUnmarshal("run record", b, &r); err != nil {
		return nil, err
	}
	if r.Version != Version {
		return nil, fmt.Errorf("%w: run record version %d", ErrVersion, r.Version)
	}
	if r.ID != *id {
		return nil, fmt.Errorf("%w: run record %s names itself %s", ErrCorrupt, id.Short(), r.ID.Short())
	}
	switch r.Kind {
	case RunBackup, RunRestore, RunCheck, RunDrill:
	default:
		return nil, fmt.Errorf("%w: run record kind %q", ErrCorrupt, r.Kind)
	}
	return &r, nil
}
