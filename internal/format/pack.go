package format

import (
	"encoding/binary"
	"fmt"

	"github.com/reprise-backup/reprise/crypto"
)

// Pack layout (docs/FORMAT.md, "Packs"):
//
//	pack    = blob* header trailer
//	blob    = Seal(packCipher, seq i, payload, chunkAD)       (i = 0, 1, ...)
//	header  = Seal(packCipher, seq LastSeq, headerBody, headerAD)
//	trailer = gen:u32be headerLen:u32be "RPK1"
//
// packCipher = crypto.NewObjectCipher(dataKey(gen), packID).
const (
	packMagic      = "RPK1"
	chunkADMagic   = "RPC1"
	TrailerSize    = 12
	packHeaderItem = 1 + crypto.IDSize + 2*binary.MaxVarintLen32
)

// TenantHandleSize is the size of a tenant handle: the first 16 bytes of
// the keyed hash of the tenant's name.
const TenantHandleSize = 16

// Handle identifies a tenant in object names and associated data without
// revealing its name.
type Handle [TenantHandleSize]byte

// BlobInfo describes one blob of a pack.
type BlobInfo struct {
	Kind      byte
	ID        crypto.ID
	Seq       uint32 // position in the pack: the blob's sealing sequence number
	Offset    uint32 // from the start of the pack
	SealedLen uint32 // bytes in the pack
	RawLen    uint32 // plaintext chunk length
}

// ChunkAD returns the associated data of a chunk blob: it binds the blob to
// the format version, generation, tenant, kind and chunk ID. The blob's
// pack and position are bound by the pack key and sequence number.
func ChunkAD(dst []byte, gen uint32, h *Handle, kind byte, id *crypto.ID) []byte {
	dst = append(dst, chunkADMagic...)
	dst = binary.BigEndian.AppendUint32(dst, gen)
	dst = append(dst, h[:]...)
	dst = append(dst, kind)
	return append(dst, id[:]...)
}

func packHeaderAD(gen uint32, h *Handle) []byte {
	ad := make([]byte, 0, 4+4+TenantHandleSize)
	ad = append(ad, packMagic...)
	ad = binary.BigEndian.AppendUint32(ad, gen)
	return append(ad, h[:]...)
}

// PackBuilder accumulates sealed chunks into one pack held in memory.
// It is not safe for concurrent use. Reset reuses its buffers.
type PackBuilder struct {
	ID     crypto.ID
	gen    uint32
	handle Handle
	c      *crypto.ObjectCipher
	buf    []byte
	blobs  []BlobInfo
	ad     []byte
	enc    []byte // scratch for payload encoding (Add)

	// SizeHint, when set, caps the buffer's growth (more only if a chunk
	// needs it): a writer that ships packs at a target size sets it a
	// little above, so a reused builder settles at about that size
	// instead of doubling past it.
	SizeHint int
}

// grow makes room for n more bytes.
func (p *PackBuilder) grow(n int) {
	if cap(p.buf)-len(p.buf) >= n {
		return
	}
	want := len(p.buf) + n
	c := max(2*cap(p.buf), want, 4096)
	if p.SizeHint > 0 {
		// Doubling from 1 MiB, up to the hint: a tiny backup does not pay
		// for clearing a whole pack-sized buffer, a large one copies 15
		// MiB once per builder. Past the hint (a chunk larger than the
		// pack), room for the header too.
		c = min(max(c, 1<<20), p.SizeHint)
		if c < want {
			c = want + 64<<10
		}
	}
	b := make([]byte, len(p.buf), c)
	copy(b, p.buf)
	p.buf = b
}

// NewPackBuilder returns an empty builder with its own buffers. Call Reset
// before adding chunks.
func NewPackBuilder() *PackBuilder { return &PackBuilder{} }

// Reset starts a new pack with a fresh random ID, keeping the buffers.
func (p *PackBuilder) Reset(dataKey *crypto.Key, gen uint32, h Handle) error {
	id, err := crypto.RandomID()
	if err != nil {
		return err
	}
	c, err := crypto.NewObjectCipher(dataKey, &id)
	if err != nil {
		return err
	}
	p.ID, p.gen, p.handle, p.c = id, gen, h, c
	p.buf = p.buf[:0]
	p.blobs = p.blobs[:0]
	return nil
}

// Len is the number of bytes of sealed blobs so far.
func (p *PackBuilder) Len() int { return len(p.buf) }

// Count is the number of blobs so far.
func (p *PackBuilder) Count() int { return len(p.blobs) }

// Blobs returns the blobs added so far; the slice is reused by Reset.
func (p *PackBuilder) Blobs() []BlobInfo { return p.blobs }

// Add encodes (compressing with the codec enc names when it pays; see
// Encode) and seals one chunk into the pack.
func (p *PackBuilder) Add(kind byte, id *crypto.ID, chunk []byte, enc byte) {
	p.enc = Encode(p.enc[:0], chunk, enc)
	p.AddEncoded(kind, id, p.enc, len(chunk))
}

// AddEncoded seals an already encoded payload (see Encode) of a chunk of
// rawLen bytes into the pack.
func (p *PackBuilder) AddEncoded(kind byte, id *crypto.ID, payload []byte, rawLen int) {
	p.ad = ChunkAD(p.ad[:0], p.gen, &p.handle, kind, id)
	off := len(p.buf)
	// Grow ahead first: Seal alone would grow the buffer to the exact
	// length, copying the whole pack at every chunk.
	p.grow(len(payload) + crypto.Overhead)
	p.buf = p.c.Seal(p.buf, uint64(len(p.blobs)), payload, p.ad)
	p.blobs = append(p.blobs, BlobInfo{
		Kind: kind, ID: *id, Seq: uint32(len(p.blobs)), Offset: uint32(off),
		SealedLen: uint32(len(p.buf) - off), RawLen: uint32(rawLen),
	})
}

// Finish appends the sealed header and trailer and returns the whole pack.
// The returned slice aliases the builder's buffer until the next Reset.
func (p *PackBuilder) Finish() []byte {
	body := make([]byte, 0, 10+len(p.blobs)*packHeaderItem)
	body = binary.AppendUvarint(body, uint64(len(p.blobs)))
	for _, b := range p.blobs {
		body = append(body, b.Kind)
		body = append(body, b.ID[:]...)
		body = binary.AppendUvarint(body, uint64(b.SealedLen))
		body = binary.AppendUvarint(body, uint64(b.RawLen))
	}
	start := len(p.buf)
	p.grow(len(body) + crypto.Overhead + TrailerSize)
	p.buf = p.c.Seal(p.buf, crypto.LastSeq, body, packHeaderAD(p.gen, &p.handle))
	hlen := len(p.buf) - start
	p.buf = binary.BigEndian.AppendUint32(p.buf, p.gen)
	p.buf = binary.BigEndian.AppendUint32(p.buf, uint32(hlen))
	p.buf = append(p.buf, packMagic...)
	return p.buf
}

// ParseTrailer parses a pack's last TrailerSize bytes, returning the
// generation and the sealed header's length.
func ParseTrailer(t []byte) (gen uint32, headerLen int, err error) {
	if len(t) != TrailerSize || string(t[8:]) != packMagic {
		return 0, 0, fmt.Errorf("%w: pack trailer missing (not a pack, or truncated)", ErrCorrupt)
	}
	gen = binary.BigEndian.Uint32(t[0:4])
	headerLen = int(binary.BigEndian.Uint32(t[4:8]))
	if headerLen < crypto.Overhead || headerLen > MaxPackSize {
		return 0, 0, fmt.Errorf("%w: pack header length %d", ErrCorrupt, headerLen)
	}
	return gen, headerLen, nil
}

// OpenPackHeader authenticates and parses a pack's sealed header. packSize
// is the size of the whole pack object, to check that the blobs fill it.
func OpenPackHeader(dataKey *crypto.Key, packID *crypto.ID, gen uint32, h *Handle, sealed []byte, packSize int64) ([]BlobInfo, error) {
	c, err := crypto.NewObjectCipher(dataKey, packID)
	if err != nil {
		return nil, err
	}
	body, err := c.Open(nil, crypto.LastSeq, sealed, packHeaderAD(gen, h))
	if err != nil {
		return nil, fmt.Errorf("pack header: %w", err)
	}
	return parsePackHeader(body, packSize-int64(len(sealed))-TrailerSize)
}

func parsePackHeader(body []byte, blobsSize int64) ([]BlobInfo, error) {
	r := reader{b: body, what: "pack header"}
	n := r.count(1 + crypto.IDSize + 2)
	blobs := make([]BlobInfo, 0, n)
	var off int64
	for i := 0; i < n && r.err == nil; i++ {
		var b BlobInfo
		b.Kind = r.kind()
		r.read(b.ID[:])
		b.SealedLen = r.u32(MaxChunkSize + 1 + crypto.Overhead)
		b.RawLen = r.u32(MaxChunkSize)
		b.Seq = uint32(i)
		b.Offset = uint32(off)
		off += int64(b.SealedLen)
		if b.SealedLen < crypto.Overhead+1 {
			r.fail("blob %d: sealed length %d too small", i, b.SealedLen)
		}
		blobs = append(blobs, b)
	}
	r.end()
	if r.err == nil && off != blobsSize {
		r.fail("blobs cover %d bytes, pack holds %d", off, blobsSize)
	}
	return blobs, r.err
}

// BlobOpener authenticates, decrypts and decodes blobs read from packs,
// reusing its scratch buffers: no allocation per blob once warm. It is not
// safe for concurrent use; give each goroutine its own.
type BlobOpener struct {
	ad, payload []byte
}

// Open appends the plaintext of blob b (read from the pack whose cipher is
// c) to dst. A blob that fails authentication (corrupt,
// truncated, moved, or from another tenant) fails with an error wrapping
// crypto.ErrAuth; one that decodes badly, with ErrCorrupt.
func (o *BlobOpener) Open(dst []byte, c *crypto.ObjectCipher, gen uint32, h *Handle, b *BlobInfo, sealed []byte) ([]byte, error) {
	payload, err := o.Decrypt(c, gen, h, b, sealed)
	if err != nil {
		return nil, err
	}
	return Decode(dst, payload, int(b.RawLen))
}

// DecryptInPlace is Decrypt into sealed itself: the payload it returns
// aliases sealed, whose bytes are overwritten (also on failure). A chunk
// stored raw is then its payload minus the encoding byte, with no copy.
func (o *BlobOpener) DecryptInPlace(c *crypto.ObjectCipher, gen uint32, h *Handle, b *BlobInfo, sealed []byte) ([]byte, error) {
	o.ad = ChunkAD(o.ad[:0], gen, h, b.Kind, &b.ID)
	return c.Open(sealed[:0], uint64(b.Seq), sealed, o.ad)
}

// Decrypt authenticates and decrypts a blob, returning its payload (still
// encoded; see Decode). The result aliases the opener's scratch buffer
// until the next call.
func (o *BlobOpener) Decrypt(c *crypto.ObjectCipher, gen uint32, h *Handle, b *BlobInfo, sealed []byte) ([]byte, error) {
	o.ad = ChunkAD(o.ad[:0], gen, h, b.Kind, &b.ID)
	if cap(o.payload) < len(sealed) {
		// Grown with a quarter to spare: AEAD Open would allocate exactly
		// what each larger blob needs, and chunk sizes vary, so a restore
		// would clear a new buffer of megabytes every few chunks; doubling
		// would hold up to twice the largest chunk per decoder, outside
		// the restore's memory budget.
		o.payload = make([]byte, 0, len(sealed)+len(sealed)/4)
	}
	payload, err := c.Open(o.payload[:0], uint64(b.Seq), sealed, o.ad)
	if err != nil {
		return nil, err
	}
	o.payload = payload
	return payload, nil
}
