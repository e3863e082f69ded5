package crypto

// TenantKeys are the purpose keys of one tenant generation, derived from
// its root key. Keys of different purposes are independent: knowing the
// chunk-ID key (say, through a side channel on dedup) tells nothing of the
// data key.
type TenantKeys struct {
	ChunkID  Key // keyed BLAKE3 of chunk plaintexts
	Data     Key // seals pack contents
	Metadata Key // seals indexes and snapshots
	Gear     Key // derives the chunker's gear table
}

// NewTenantKeys derives the purpose keys from a tenant root key.
func NewTenantKeys(root *Key) *TenantKeys {
	return &TenantKeys{
		ChunkID:  root.Sub(ContextChunkID),
		Data:     root.Sub(ContextData),
		Metadata: root.Sub(ContextMetadata),
		Gear:     root.Sub(ContextGear),
	}
}

// Wipe zeroes every key.
func (t *TenantKeys) Wipe() {
	t.ChunkID.Wipe()
	t.Data.Wipe()
	t.Metadata.Wipe()
	t.Gear.Wipe()
}

// RepoKeys are the purpose keys derived from a repository key. Only
// holders of a key slot's secret can learn the repository key, so the MACs
// made with SlotAuth and EnvelopeAuth prove that whoever wrote a slot or a
// tenant key generation could open the repository: someone with mere
// write access to the backend cannot plant either.
type RepoKeys struct {
	Names        Key // keyed hash of tenant names into handles
	Metadata     Key // seals tenant names and other repository metadata
	SlotAuth     Key // MACs of key slots' public parts
	EnvelopeAuth Key // MACs binding each tenant root key to its place
}

// NewRepoKeys derives the purpose keys from a repository key.
func NewRepoKeys(root *Key) *RepoKeys {
	return &RepoKeys{
		Names:        root.Sub(ContextNames),
		Metadata:     root.Sub(ContextRepoMeta),
		SlotAuth:     root.Sub(ContextSlotAuth),
		EnvelopeAuth: root.Sub(ContextEnvAuth),
	}
}

// Wipe zeroes every key.
func (r *RepoKeys) Wipe() {
	r.Names.Wipe()
	r.Metadata.Wipe()
	r.SlotAuth.Wipe()
	r.EnvelopeAuth.Wipe()
}
