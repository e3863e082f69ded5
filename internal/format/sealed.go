package format

import (
	"encoding/binary"
	"fmt"

	"github.com/reprise-backup/reprise/crypto"
)

// Sealed metadata objects (indexes, snapshots) share one layout
// (docs/FORMAT.md, "Sealed objects"):
//
//	object = magic[4] gen:u32be Seal(ObjectCipher(metaKey(gen), objectID), seq 0, payload, ad)
//	ad     = magic gen handle
//
// The object ID is the one in the object's name, so an object copied under
// another name, into another tenant or another generation fails to open.
const (
	MagicIndex    = "RPI1"
	MagicSnapshot = "RPS1"
	sealedHdr     = 8
)

func sealedAD(magic string, gen uint32, h *Handle) []byte {
	ad := make([]byte, 0, sealedHdr+TenantHandleSize)
	ad = append(ad, magic...)
	ad = binary.BigEndian.AppendUint32(ad, gen)
	return append(ad, h[:]...)
}

// SealObject encodes (zstd when it pays, whatever the repository's chunk
// codec) and seals plaintext as a metadata object named id.
func SealObject(magic string, metaKey *crypto.Key, gen uint32, h *Handle, id *crypto.ID, plaintext []byte) ([]byte, error) {
	c, err := crypto.NewObjectCipher(metaKey, id)
	if err != nil {
		return nil, err
	}
	payload := Encode(nil, plaintext, EncodingZstd)
	ad := sealedAD(magic, gen, h)
	out := make([]byte, 0, sealedHdr+len(payload)+crypto.Overhead)
	out = append(out, ad[:sealedHdr]...)
	return c.Seal(out, 0, payload, ad), nil
}

// SealedGen returns the generation recorded in a sealed object's header,
// after checking its magic.
func SealedGen(magic string, obj []byte) (uint32, error) {
	if len(obj) < sealedHdr+crypto.Overhead+1 || string(obj[:4]) != magic {
		return 0, fmt.Errorf("%w: not a %s object (bad magic or too short)", ErrCorrupt, magic)
	}
	return binary.BigEndian.Uint32(obj[4:8]), nil
}

// OpenObject authenticates and decodes a sealed metadata object. metaKey
// must be the key of the generation SealedGen reports.
func OpenObject(magic string, metaKey *crypto.Key, h *Handle, id *crypto.ID, obj []byte) ([]byte, error) {
	payload, err := OpenObjectPayload(magic, metaKey, h, id, obj)
	if err != nil {
		return nil, err
	}
	return Decode(nil, payload, -1)
}

// OpenObjectPayload is OpenObject without the decoding: it returns the
// payload, still encoded, for a reader that checks its encoding against
// the repository's version first (Config.CheckPayload), then decodes it
// with Decode(nil, payload, -1).
func OpenObjectPayload(magic string, metaKey *crypto.Key, h *Handle, id *crypto.ID, obj []byte) ([]byte, error) {
	gen, err := SealedGen(magic, obj)
	if err != nil {
		return nil, err
	}
	c, err := crypto.NewObjectCipher(metaKey, id)
	if err != nil {
		return nil, err
	}
	return c.Open(nil, 0, obj[sealedHdr:], sealedAD(magic, gen, h))
}
