package format

import (
	"encoding/binary"

	"github.com/reprise-backup/reprise/crypto"
)

// PackEntry lists the blobs of one pack, in pack order (so each blob's
// sequence number is its position in Blobs).
type PackEntry struct {
	ID    crypto.ID
	Gen   uint32
	Blobs []BlobInfo
}

// MarshalIndex encodes an index body (docs/FORMAT.md, "Indexes"):
//
//	index = count:uvarint pack*
//	pack  = id[32] gen:uvarint count:uvarint blob*
//	blob  = kind:u8 id[32] sealedLen:uvarint rawLen:uvarint
//
// Offsets and sequence numbers are implied by the order of the blobs.
func MarshalIndex(packs []PackEntry) []byte {
	n := 10
	for _, p := range packs {
		n += crypto.IDSize + 20 + len(p.Blobs)*packHeaderItem
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(packs)))
	for _, p := range packs {
		b = append(b, p.ID[:]...)
		b = binary.AppendUvarint(b, uint64(p.Gen))
		b = binary.AppendUvarint(b, uint64(len(p.Blobs)))
		for _, bl := range p.Blobs {
			b = append(b, bl.Kind)
			b = append(b, bl.ID[:]...)
			b = binary.AppendUvarint(b, uint64(bl.SealedLen))
			b = binary.AppendUvarint(b, uint64(bl.RawLen))
		}
	}
	return b
}

// UnmarshalIndex decodes an index body.
func UnmarshalIndex(b []byte) ([]PackEntry, error) {
	r := reader{b: b, what: "index"}
	n := r.count(crypto.IDSize + 2)
	packs := make([]PackEntry, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		var p PackEntry
		r.read(p.ID[:])
		p.Gen = r.u32(^uint32(0))
		m := r.count(1 + crypto.IDSize + 2)
		p.Blobs = make([]BlobInfo, 0, m)
		var off int64
		for j := 0; j < m && r.err == nil; j++ {
			var bl BlobInfo
			bl.Kind = r.kind()
			r.read(bl.ID[:])
			bl.SealedLen = r.u32(MaxChunkSize + 1 + crypto.Overhead)
			bl.RawLen = r.u32(MaxChunkSize)
			if r.err == nil && bl.SealedLen < crypto.Overhead+1 {
				r.fail("pack %d blob %d: sealed length %d too small", i, j, bl.SealedLen)
			}
			bl.Seq = uint32(j)
			bl.Offset = uint32(off)
			off += int64(bl.SealedLen)
			if off > MaxPackSize {
				r.fail("pack %d larger than %d bytes", i, MaxPackSize)
			}
			p.Blobs = append(p.Blobs, bl)
		}
		packs = append(packs, p)
	}
	r.end()
	if r.err != nil {
		return nil, r.err
	}
	return packs, nil
}
