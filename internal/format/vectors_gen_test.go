package format_test

// This file is the test-vector generator: a second, deliberately separate
// implementation of docs/FORMAT.md. It builds every vector from fixed
// inputs with the primitives only (BLAKE3, AES-256-GCM, X25519, argon2id,
// encoding/binary) and hand-written JSON; it never calls package format or
// package crypto. vectors_test.go then opens the vectors with the real
// decoders, so a vector that passes shows that the specification (as
// written here) and the code agree byte for byte.
//
// Regenerate after an intentional format change (which also bumps the
// format version and updates docs/FORMAT.md):
//
//	go test ./internal/format -run '^TestVectors$' -update
//
// Without -update the tests only read the files, and TestVectorsUpToDate
// checks that this generator still produces them exactly.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/argon2"
)

// Context strings and magics, spelled out as docs/FORMAT.md gives them (not
// taken from the code under test).
const (
	specChunkID    = "reprise.dev/v1 chunk id"
	specData       = "reprise.dev/v1 data"
	specMetadata   = "reprise.dev/v1 metadata"
	specGear       = "reprise.dev/v1 gear"
	specNames      = "reprise.dev/v1 names"
	specRepoMeta   = "reprise.dev/v1 repository metadata"
	specObjectKey  = "reprise.dev/v1 object key"
	specPassphrase = "reprise.dev/v1 passphrase"
	specStanza     = "reprise.dev/v1 stanza"
	specSlotAuth   = "reprise.dev/v1 slot auth"
	specSlotMAC    = "reprise.dev/v1 slot mac"
	specEnvAuth    = "reprise.dev/v1 envelope auth"
	specGenMAC     = "reprise.dev/v1 generation mac"
	specGearTable  = "reprise.dev/v1 chunk gear"
	specSlotAD     = "reprise.dev/v1 slot "
	specNameAD     = "reprise.dev/v1 tenant name"
	specTenantAD   = "reprise.dev/v1 tenant key"
	lastSeq        = ^uint64(0)
)

// frozenZstd is one zstd frame (with a compressed block) of jackText, as
// produced once by github.com/klauspost/compress/zstd at SpeedFastest. It is
// frozen here so that the vectors do not change with the compressor's
// version: readers must decode any valid frame, whatever produced it.
const frozenZstd = "28b52ffd400058009d0100b2020a12a0890094609349dbe34a489000a08a42a80be50cb845664e01870f81487c6cb1d5539c0c4b6e19015417052c537101"

// frozenS2 is one S2 block (github.com/klauspost/compress/s2, block
// format) of jackText, as produced once by s2.Encode: the decoded length
// as a uvarint (344), a 43-byte literal, a copy (8 bytes at offset 43) and
// a repeat (S2's extension to Snappy: a 1-byte-offset copy with offset 0
// reuses the last offset; here for 293 bytes). Frozen like frozenZstd.
const frozenS2 = "d802a8616c6c20776f726b20616e64206e6f20706c6179206d616b6573206a61636b20612064756c6c20626f790a112b19002100"

var jackText = strings.Repeat("all work and no play makes jack a dull boy\n", 8)

// fixed returns n bytes determined by label: the fixed "random" inputs of
// the vectors (keys, IDs, salts, ephemeral scalars).
func fixed(label string, n int) []byte {
	h := blake3.New()
	h.WriteString("reprise test vector: " + label)
	out := make([]byte, n)
	if _, err := h.Digest().Read(out); err != nil {
		panic(err)
	}
	return out
}

func refDerive(context string, material ...[]byte) []byte {
	h := blake3.NewDeriveKey(context)
	for _, m := range material {
		h.Write(m)
	}
	return h.Sum(nil)
}

func refKeyed(key, data []byte) []byte {
	h, err := blake3.NewKeyed(key)
	if err != nil {
		panic(err)
	}
	h.Write(data)
	return h.Sum(nil)
}

func refNonce(seq uint64) []byte {
	n := make([]byte, 12)
	binary.BigEndian.PutUint64(n[4:], seq)
	return n
}

func refAEAD(purposeKey, objectID []byte) cipher.AEAD {
	block, err := aes.NewCipher(refDerive(specObjectKey, purposeKey, objectID))
	if err != nil {
		panic(err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return g
}

// refSeal seals message seq of the object objectID under purposeKey.
func refSeal(purposeKey, objectID []byte, seq uint64, pt, ad []byte) []byte {
	return refAEAD(purposeKey, objectID).Seal(nil, refNonce(seq), pt, ad)
}

func refOpen(purposeKey, objectID []byte, seq uint64, sealed, ad []byte) ([]byte, error) {
	return refAEAD(purposeKey, objectID).Open(nil, refNonce(seq), sealed, ad)
}

func refBox(key, salt, pt, ad []byte) []byte {
	return append(bytes.Clone(salt), refSeal(key, salt, 0, pt, ad)...)
}

func x25519Public(scalar []byte) []byte {
	k, err := ecdh.X25519().NewPrivateKey(scalar)
	if err != nil {
		panic(err)
	}
	return k.PublicKey().Bytes()
}

type refStanzaParts struct {
	ephPub, shared, wrapKey, stanza []byte
}

// refStanza wraps key to the X25519 public key pub with a fixed ephemeral
// scalar and a fixed box salt.
func refStanza(pub, ephScalar, boxSalt, key, ad []byte) refStanzaParts {
	e, err := ecdh.X25519().NewPrivateKey(ephScalar)
	if err != nil {
		panic(err)
	}
	rp, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	shared, err := e.ECDH(rp)
	if err != nil {
		panic(err)
	}
	epub := e.PublicKey().Bytes()
	wk := refDerive(specStanza, shared, epub, pub)
	return refStanzaParts{ephPub: epub, shared: shared, wrapKey: wk,
		stanza: append(bytes.Clone(epub), refBox(wk, boxSalt, key, ad)...)}
}

func refSlotAD(repo, slot []byte, purpose string) []byte {
	ad := []byte(specSlotAD + purpose)
	ad = append(ad, 0)
	ad = append(ad, repo...)
	return append(ad, slot...)
}

func refNameAD(repo, handle []byte) []byte {
	return append(append([]byte(specNameAD), repo...), handle...)
}

func refTenantKeyAD(repo, handle []byte, gen uint32, slot []byte) []byte {
	ad := append([]byte(specTenantAD), repo...)
	ad = append(ad, handle...)
	ad = binary.BigEndian.AppendUint32(ad, gen)
	return append(ad, slot...)
}

// refSlotMAC is a slot's MAC: Derive(slot mac, slot auth key || repoID ||
// slotID || public key || type).
func refSlotMAC(slotAuthKey, repo, slot, pub []byte, typ string) []byte {
	return refDerive(specSlotMAC, slotAuthKey, repo, slot, pub, []byte(typ))
}

// refGenMAC is a generation's MAC: Derive(generation mac, envelope auth key
// || repoID || handle || u32be(gen) || root key).
func refGenMAC(envAuthKey, repo, handle []byte, gen uint32, root []byte) []byte {
	return refDerive(specGenMAC, envAuthKey, repo, handle, binary.BigEndian.AppendUint32(nil, gen), root)
}

// refEnvelopeName is the object name of version version of a tenant's
// envelope.
func refEnvelopeName(handle []byte, version int) string {
	return fmt.Sprintf("tenants/%x/%010d", handle, version)
}

func refChunkAD(gen uint32, handle []byte, kind byte, id []byte) []byte {
	ad := []byte("RPC1")
	ad = binary.BigEndian.AppendUint32(ad, gen)
	ad = append(ad, handle...)
	ad = append(ad, kind)
	return append(ad, id...)
}

func refSealedAD(magic string, gen uint32, handle []byte) []byte {
	ad := []byte(magic)
	ad = binary.BigEndian.AppendUint32(ad, gen)
	return append(ad, handle...)
}

// refSealedObject builds an index or snapshot object from its payload
// (encoding byte included).
func refSealedObject(magic string, metaKey []byte, gen uint32, handle, id, payload []byte) []byte {
	ad := refSealedAD(magic, gen, handle)
	return append(bytes.Clone(ad[:8]), refSeal(metaKey, id, 0, payload, ad)...)
}

// zstdRawFrame returns a zstd frame (RFC 8878) holding data in one Raw
// block, with a single-segment header: a valid frame any decoder accepts.
func zstdRawFrame(data []byte) []byte {
	if len(data) >= 128<<10 {
		panic("zstdRawFrame: data too long for one block")
	}
	f := []byte{0x28, 0xb5, 0x2f, 0xfd}
	switch {
	case len(data) < 256: // FCS_Field_Size 1
		f = append(f, 0x20, byte(len(data)))
	default: // FCS_Field_Size 2, value - 256
		f = append(f, 0x60)
		f = binary.LittleEndian.AppendUint16(f, uint16(len(data)-256))
	}
	bh := uint32(1) | uint32(0)<<1 | uint32(len(data))<<3 // last, Raw_Block
	f = append(f, byte(bh), byte(bh>>8), byte(bh>>16))
	return append(f, data...)
}

// zstdRLEFrame returns a zstd frame holding n copies of b in one RLE block.
func zstdRLEFrame(b byte, n int) []byte {
	f := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, byte(n)} // n < 256
	bh := uint32(1) | uint32(1)<<1 | uint32(n)<<3
	return append(f, byte(bh), byte(bh>>8), byte(bh>>16), b)
}

// s2LiteralBlock returns an S2 block (as Snappy's) holding data as one
// literal: the decoded length as a uvarint, then a literal tag (tag type
// 0b00; lengths up to 60 in the tag's upper six bits as length-1, longer
// ones as length-1 in the 1 or 2 little-endian bytes that follow, tag
// values 60 and 61), then the bytes.
func s2LiteralBlock(data []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(data)))
	switch n := len(data) - 1; {
	case len(data) == 0:
		return b
	case n < 60:
		b = append(b, byte(n)<<2)
	case n < 1<<8:
		b = append(b, 60<<2, byte(n))
	case n < 1<<16:
		b = append(b, 61<<2, byte(n), byte(n>>8))
	default:
		panic("s2LiteralBlock: data too long")
	}
	return append(b, data...)
}

// vecNode is a tree node as the vector headers spell it.
type vecNode struct {
	Path   string     `json:"path"`
	Type   string     `json:"type"`
	Mode   string     `json:"mode"`
	MTime  int64      `json:"mtime"`
	Size   uint64     `json:"size,omitempty"`
	Target string     `json:"target,omitempty"`
	Chunks []vecChunk `json:"chunks,omitempty"`
}

type vecChunk struct {
	ID  string `json:"id"`
	Len uint32 `json:"len"`
}

func refTree(nodes []vecNode) []byte {
	b := []byte("RPT1")
	for _, n := range nodes {
		b = binary.AppendUvarint(b, uint64(len(n.Path)))
		b = append(b, n.Path...)
		b = append(b, n.Type[0])
		var mode uint64
		if _, err := fmt.Sscanf(n.Mode, "%o", &mode); err != nil {
			panic(err)
		}
		b = binary.AppendUvarint(b, mode)
		b = binary.AppendVarint(b, n.MTime)
		switch n.Type {
		case "f":
			b = binary.AppendUvarint(b, n.Size)
			b = binary.AppendUvarint(b, uint64(len(n.Chunks)))
			for _, c := range n.Chunks {
				id, _ := hex.DecodeString(c.ID)
				b = append(b, id...)
				b = binary.AppendUvarint(b, uint64(c.Len))
			}
		case "d":
		case "l":
			b = binary.AppendUvarint(b, uint64(len(n.Target)))
			b = append(b, n.Target...)
		}
	}
	return b
}

// vecFile is one vector file being generated.
type vecFile struct {
	name    string
	hdr     [][2]string
	body    []byte
	hexBody bool
}

func (v *vecFile) add(k string, val any) {
	var s string
	switch x := val.(type) {
	case []byte:
		s = hex.EncodeToString(x)
	case string:
		s = x
	default:
		s = fmt.Sprint(x)
	}
	v.hdr = append(v.hdr, [2]string{k, s})
}

func (v *vecFile) bytes() []byte {
	var b bytes.Buffer
	for _, kv := range v.hdr {
		fmt.Fprintf(&b, "%s: %s\n", kv[0], kv[1])
	}
	if v.hexBody {
		b.WriteString("body: hex\n\n")
		h := hex.EncodeToString(v.body)
		for len(h) > 0 {
			n := min(64, len(h))
			b.WriteString(h[:n] + "\n")
			h = h[n:]
		}
	} else {
		b.WriteString("body: raw\n\n")
		b.Write(v.body)
	}
	return b.Bytes()
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

type refBlob struct {
	kind             byte
	id               []byte
	plaintext        []byte
	encoding         string
	payload          []byte
	sealedLen, rawLn int
}

// generateVectors returns every vector file, in a fixed order.
func generateVectors() []*vecFile {
	var out []*vecFile
	newVec := func(name, expect, comment string) *vecFile {
		v := &vecFile{name: name}
		v.add("expect", expect)
		if comment != "" {
			v.add("comment", comment)
		}
		out = append(out, v)
		return v
	}

	// Repository and its keys.
	repoID := fixed("repository id", 32)
	repoKey := fixed("repository key", 32)
	namesKey := refDerive(specNames, repoKey)
	repoMetaKey := refDerive(specRepoMeta, repoKey)
	slotAuthKey := refDerive(specSlotAuth, repoKey)
	envAuthKey := refDerive(specEnvAuth, repoKey)

	// Passphrase slot.
	slotID := fixed("slot id", 32)
	passphrase := "correct horse battery staple"
	argonSalt := fixed("argon2id salt", 32)
	const argonT, argonM, argonP = 1, 64, 1
	argonOut := argon2.IDKey([]byte(passphrase), argonSalt, argonT, argonM, argonP, 32)
	slotKey := refDerive(specPassphrase, argonOut)
	slotScalar := fixed("slot private key", 32)
	slotPub := x25519Public(slotScalar)

	// Tenant.
	tenantName := "acme-corp"
	handle := refKeyed(namesKey, []byte(tenantName))[:16]
	roots := [][]byte{fixed("tenant root key generation 1", 32), fixed("tenant root key generation 2", 32)}
	const gen = 1
	root := roots[gen-1]
	chunkIDKey := refDerive(specChunkID, root)
	dataKey := refDerive(specData, root)
	metaKey := refDerive(specMetadata, root)
	gearKey := refDerive(specGear, root)
	gear := make([]byte, 2048)
	blake3.DeriveKey(specGearTable, gearKey, gear)

	// ---- kdf.txt
	{
		v := newVec("kdf.txt", "success", "key derivation, tenant handle, chunk ID, passphrase key, gear table, object key")
		v.add("repository key", repoKey)
		v.add("names key", namesKey)
		v.add("repository metadata key", repoMetaKey)
		v.add("slot auth key", slotAuthKey)
		v.add("envelope auth key", envAuthKey)
		v.add("tenant name", tenantName)
		v.add("tenant handle", handle)
		v.add("tenant root key", root)
		v.add("chunk id key", chunkIDKey)
		v.add("data key", dataKey)
		v.add("metadata key", metaKey)
		v.add("gear key", gearKey)
		for _, i := range []int{0, 1, 255} {
			v.add(fmt.Sprintf("gear[%d]", i), fmt.Sprintf("%016x", binary.LittleEndian.Uint64(gear[8*i:])))
		}
		chunk := []byte("hello, reprise\n")
		v.add("chunk", chunk)
		v.add("chunk id", refKeyed(chunkIDKey, chunk))
		objID := fixed("object id", 32)
		v.add("object id", objID)
		v.add("object key", refDerive(specObjectKey, dataKey, objID))
		v.add("seal seq 0 of empty message", refSeal(dataKey, objID, 0, nil, nil))
		v.add("seal seq 1 of empty message", refSeal(dataKey, objID, 1, nil, nil))
		v.add("seal seq last of empty message", refSeal(dataKey, objID, lastSeq, nil, nil))
		v.add("passphrase", passphrase)
		v.add("argon2id salt", argonSalt)
		v.add("argon2id t", argonT)
		v.add("argon2id m", argonM)
		v.add("argon2id p", argonP)
		v.add("argon2id output", argonOut)
		v.add("passphrase key", slotKey)
		v.body = nil
		v.hexBody = true
	}

	// ---- box.txt, wrapped_key.txt
	{
		v := newVec("box.txt", "success", "SealBox: salt || Seal(ObjectCipher(key, salt), seq 0, plaintext, ad)")
		key, salt := fixed("box key", 32), fixed("box salt", 32)
		pt, ad := []byte("a small secret"), []byte("box associated data")
		v.add("key", key)
		v.add("ad", ad)
		v.add("plaintext", pt)
		v.body, v.hexBody = refBox(key, salt, pt, ad), true

		w := newVec("wrapped_key.txt", "success", "WrapKey: a 32-byte key sealed in a box (80 bytes)")
		kek, wrapped := fixed("kek", 32), fixed("wrapped key", 32)
		wad := []byte("wrap associated data")
		w.add("kek", kek)
		w.add("ad", wad)
		w.add("key", wrapped)
		w.body, w.hexBody = refBox(kek, fixed("wrap salt", 32), wrapped, wad), true

		x := newVec("wrapped_key_wrong_ad.txt", "incorrect key", "the wrapped_key.txt box opened with another ad")
		x.add("kek", kek)
		x.add("ad", []byte("wrap associated dat?"))
		x.add("key", wrapped)
		x.body, x.hexBody = w.body, true
	}

	// ---- stanza.txt
	{
		v := newVec("stanza.txt", "success", "X25519 stanza: ephemeral public key || WrapKey(Derive(stanza, shared || ephemeral || recipient), key, ad)")
		ad := refTenantKeyAD(repoID, handle, 1, slotID)
		eph := fixed("stanza ephemeral", 32)
		parts := refStanza(slotPub, eph, fixed("stanza salt", 32), root, ad)
		v.add("slot private key", slotScalar)
		v.add("slot public key", slotPub)
		v.add("ephemeral private key", eph)
		v.add("ephemeral public key", parts.ephPub)
		v.add("shared secret", parts.shared)
		v.add("wrapping key", parts.wrapKey)
		v.add("ad", ad)
		v.add("key", root)
		v.body, v.hexBody = parts.stanza, true
	}

	// ---- tree.txt: the tree stream, also stored as the pack's third chunk.
	hello := []byte("hello, reprise\n")
	jack := []byte(jackText)
	helloID := refKeyed(chunkIDKey, hello)
	jackID := refKeyed(chunkIDKey, jack)
	nodes := []vecNode{
		{Path: ".", Type: "d", Mode: "0755", MTime: 1714564800000000000},
		{Path: "bin", Type: "d", Mode: "2775", MTime: 1714564800123456789},
		{Path: "bin/sh", Type: "l", Mode: "0777", MTime: 1714564800000000000, Target: "/usr/bin/dash"},
		{Path: "empty", Type: "f", Mode: "0600", MTime: 0},
		{Path: "hello.txt", Type: "f", Mode: "0644", MTime: 1714564801000000000, Size: uint64(len(hello)),
			Chunks: []vecChunk{{hex.EncodeToString(helloID), uint32(len(hello))}}},
		{Path: "jack.txt", Type: "f", Mode: "0640", MTime: -1, Size: uint64(len(jack) + len(hello)),
			Chunks: []vecChunk{{hex.EncodeToString(jackID), uint32(len(jack))}, {hex.EncodeToString(helloID), uint32(len(hello))}}},
	}
	tree := refTree(nodes)
	treeID := refKeyed(chunkIDKey, tree)
	{
		v := newVec("tree.txt", "success", "tree stream with directories, a symlink, an empty file, a file of two chunks and a negative mtime")
		for _, n := range nodes {
			j, _ := json.Marshal(n)
			v.add("node", string(j))
		}
		v.body, v.hexBody = tree, true

		bad := newVec("tree_bad_path.txt", "corrupt", `a node whose path leaves the root ("../x")`)
		b := []byte("RPT1")
		b = binary.AppendUvarint(b, 4)
		b = append(b, "../x"...)
		b = append(b, 'd', 0xed, 0x03, 0x00)
		bad.body, bad.hexBody = b, true

		tr := newVec("tree_truncated.txt", "corrupt", "tree.txt without its last byte")
		tr.body, tr.hexBody = tree[:len(tree)-1], true

		ck := newVec("tree_size_mismatch.txt", "corrupt", "a file whose chunk lengths do not add up to its size")
		c := []byte("RPT1")
		c = binary.AppendUvarint(c, 1)
		c = append(c, 'a', 'f', 0xa4, 0x03, 0x00)
		c = binary.AppendUvarint(c, 16) // size 16
		c = binary.AppendUvarint(c, 1)  // one chunk
		c = append(c, helloID...)
		c = binary.AppendUvarint(c, uint64(len(hello))) // of 15 bytes
		ck.body, ck.hexBody = c, true
	}

	// ---- pack.txt and its broken variants.
	packID := fixed("pack id", 32)
	blobs := []refBlob{
		{kind: 0, id: helloID, plaintext: hello, encoding: "raw", payload: append([]byte{0}, hello...)},
		{kind: 0, id: jackID, plaintext: jack, encoding: "zstd", payload: append([]byte{1}, mustHex(frozenZstd)...)},
		{kind: 1, id: treeID, plaintext: tree, encoding: "raw", payload: append([]byte{0}, tree...)},
	}
	var pack, headerBody []byte
	headerBody = binary.AppendUvarint(headerBody, uint64(len(blobs)))
	for i := range blobs {
		b := &blobs[i]
		sealed := refSeal(dataKey, packID, uint64(i), b.payload, refChunkAD(gen, handle, b.kind, b.id))
		pack = append(pack, sealed...)
		b.sealedLen, b.rawLn = len(sealed), len(b.plaintext)
		headerBody = append(headerBody, b.kind)
		headerBody = append(headerBody, b.id...)
		headerBody = binary.AppendUvarint(headerBody, uint64(b.sealedLen))
		headerBody = binary.AppendUvarint(headerBody, uint64(b.rawLn))
	}
	blobsLen := len(pack)
	sealedHeader := refSeal(dataKey, packID, lastSeq, headerBody, refSealedAD("RPK1", gen, handle))
	pack = append(pack, sealedHeader...)
	pack = binary.BigEndian.AppendUint32(pack, gen)
	pack = binary.BigEndian.AppendUint32(pack, uint32(len(sealedHeader)))
	pack = append(pack, "RPK1"...)
	packVec := func(name, expect, comment string, body []byte) *vecFile {
		v := newVec(name, expect, comment)
		v.add("data key", dataKey)
		v.add("chunk id key", chunkIDKey)
		v.add("tenant handle", handle)
		v.add("pack id", packID)
		v.add("gen", gen)
		v.add("header body", headerBody)
		for _, b := range blobs {
			v.add("blob", fmt.Sprintf("%d %x %d %d %s", b.kind, b.id, b.sealedLen, b.rawLn, b.encoding))
			v.add("plaintext", b.plaintext)
		}
		v.body, v.hexBody = body, true
		return v
	}
	packVec("pack.txt", "success", "a pack of three chunks: data (raw), data (zstd), tree (raw)", pack)
	{
		flip := bytes.Clone(pack)
		flip[blobs[0].sealedLen+5] ^= 0x01
		fb := packVec("pack_flip_blob.txt", "auth failure", "pack.txt with bit 0 of byte 5 of blob 1 flipped: the header and blobs 0 and 2 still open", flip)
		fb.add("failing blob", 1)
		flip = bytes.Clone(pack)
		flip[blobsLen+1] ^= 0x80
		packVec("pack_flip_header.txt", "auth failure", "pack.txt with bit 7 of byte 1 of the sealed header flipped", flip)
		packVec("pack_truncated.txt", "corrupt", "pack.txt without its last byte: no trailer", pack[:len(pack)-1])
		short := bytes.Clone(pack[:len(pack)-12])
		short = binary.BigEndian.AppendUint32(short, gen)
		short = binary.BigEndian.AppendUint32(short, 15)
		short = append(short, "RPK1"...)
		packVec("pack_bad_header_len.txt", "corrupt", "pack.txt whose trailer gives a header length (15) below the 16-byte tag", short)
	}

	// ---- index.txt
	indexID := fixed("index id", 32)
	otherPack := fixed("second pack id", 32)
	otherBlob := fixed("second pack blob id", 32)
	var indexBody []byte
	indexBody = binary.AppendUvarint(indexBody, 2)
	indexBody = append(indexBody, packID...)
	indexBody = binary.AppendUvarint(indexBody, gen)
	indexBody = binary.AppendUvarint(indexBody, uint64(len(blobs)))
	for _, b := range blobs {
		indexBody = append(indexBody, b.kind)
		indexBody = append(indexBody, b.id...)
		indexBody = binary.AppendUvarint(indexBody, uint64(b.sealedLen))
		indexBody = binary.AppendUvarint(indexBody, uint64(b.rawLn))
	}
	indexBody = append(indexBody, otherPack...)
	indexBody = binary.AppendUvarint(indexBody, gen)
	indexBody = binary.AppendUvarint(indexBody, 1)
	indexBody = append(indexBody, 0)
	indexBody = append(indexBody, otherBlob...)
	indexBody = binary.AppendUvarint(indexBody, 1040)
	indexBody = binary.AppendUvarint(indexBody, 1024)
	indexObj := refSealedObject("RPI1", metaKey, gen, handle, indexID, append([]byte{0}, indexBody...))
	indexVec := func(name, expect, comment string, body []byte) {
		v := newVec(name, expect, comment)
		v.add("metadata key", metaKey)
		v.add("tenant handle", handle)
		v.add("object id", indexID)
		v.add("gen", gen)
		v.add("plaintext", indexBody)
		v.add("pack", fmt.Sprintf("%x %d", packID, gen))
		for _, b := range blobs {
			v.add("blob", fmt.Sprintf("%d %x %d %d", b.kind, b.id, b.sealedLen, b.rawLn))
		}
		v.add("pack", fmt.Sprintf("%x %d", otherPack, gen))
		v.add("blob", fmt.Sprintf("0 %x 1040 1024", otherBlob))
		v.body, v.hexBody = body, true
	}
	indexVec("index.txt", "success", "an index object (raw payload) naming two packs", indexObj)
	{
		bad := bytes.Clone(indexObj)
		copy(bad, "RPS1")
		indexVec("index_bad_magic.txt", "corrupt", "index.txt with the snapshot magic", bad)
		g2 := bytes.Clone(indexObj)
		g2[7] = 2
		indexVec("index_gen_altered.txt", "auth failure", "index.txt with its generation field changed to 2 (opened with the generation 1 key)", g2)
	}

	// ---- snapshot.txt
	snapID := fixed("snapshot id", 32)
	snapJSON := fmt.Sprintf(`{"version":1,"id":"%x","time":"2024-05-01T12:00:00.123456789Z","host":"build-01","kind":"dir","source":"/srv/acme","tags":["nightly"],"tree":[{"id":"%x","len":%d}],"stats":{"files":3,"dirs":2,"symlinks":1,"bytes":%d,"chunks":3,"new_chunks":3,"bytes_added":%d,"seconds":1.5}}`,
		snapID, treeID, len(tree), 2*len(hello)+len(jack), len(pack))
	snapObj := refSealedObject("RPS1", metaKey, gen, handle, snapID, append([]byte{1}, zstdRawFrame([]byte(snapJSON))...))
	snapVec := func(name, expect, comment string, id []byte) {
		v := newVec(name, expect, comment)
		v.add("metadata key", metaKey)
		v.add("tenant handle", handle)
		v.add("object id", id)
		v.add("gen", gen)
		v.add("plaintext", snapJSON)
		v.body, v.hexBody = snapObj, true
	}
	snapVec("snapshot.txt", "success", "a snapshot object whose payload is a zstd frame with one raw block", snapID)
	snapVec("snapshot_moved.txt", "auth failure", "snapshot.txt read under another object ID (copied to another name)", fixed("another snapshot id", 32))

	// ---- record.txt
	{
		recID := fixed("run record id", 32)
		recJSON := fmt.Sprintf(`{"version":1,"id":"%x","kind":"drill","source":"/srv/acme","host":"build-01","start":"2024-05-01T13:00:00Z","end":"2024-05-01T13:00:04.25Z","ok":true,"snapshot":"%x","files":3,"bytes":374,"stages":{"restore":2.5,"verify":0.75}}`, recID, snapID)
		recObj := refSealedObject("RPR1", metaKey, gen, handle, recID, append([]byte{0}, recJSON...))
		v := newVec("record.txt", "success", "a run record object (raw payload)")
		v.add("metadata key", metaKey)
		v.add("tenant handle", handle)
		v.add("object id", recID)
		v.add("gen", gen)
		v.add("plaintext", recJSON)
		v.body, v.hexBody = recObj, true

		u := newVec("record_unknown_kind.txt", "corrupt", "a run record of a kind this version does not define")
		bad := strings.Replace(recJSON, `"drill"`, `"prune"`, 1)
		u.add("metadata key", metaKey)
		u.add("tenant handle", handle)
		u.add("object id", recID)
		u.add("gen", gen)
		u.add("plaintext", bad)
		u.body, u.hexBody = refSealedObject("RPR1", metaKey, gen, handle, recID, append([]byte{0}, bad...)), true
	}

	// ---- config.txt
	{
		v := newVec("config.txt", "success", "the repository config (plaintext JSON)")
		v.add("repository id", repoID)
		v.body = fmt.Appendf(nil, `{
  "format": "reprise.dev/v1",
  "version": 1,
  "id": "%x",
  "created": "2024-05-01T12:00:00Z",
  "chunker": {
    "min": 262144,
    "avg": 1048576,
    "max": 4194304
  },
  "pack_size": 16777216
}`, repoID)
		s2 := newVec("config_v2_s2.txt", "success", "a version 2 config: the repository's chunks are compressed with S2 (payload encoding 2)")
		s2.add("repository id", repoID)
		s2.add("codec", "s2")
		s2.add("chunk encoding", 2)
		s2.body = fmt.Appendf(nil, `{
  "format": "reprise.dev/v1",
  "version": 2,
  "id": "%x",
  "created": "2024-05-01T12:00:00Z",
  "chunker": {
    "min": 262144,
    "avg": 1048576,
    "max": 4194304
  },
  "pack_size": 16777216,
  "codec": "s2"
}`, repoID)
		u := newVec("config_version_3.txt", "unsupported version", "a config from a later format version, with a codec version 2 does not define: unsupported, not corrupt")
		u.body = fmt.Appendf(nil, `{"format":"reprise.dev/v1","version":3,"id":"%x","created":"2024-05-01T12:00:00Z","chunker":{"min":262144,"avg":1048576,"max":4194304},"pack_size":16777216,"codec":"lz4"}`, repoID)
		f := newVec("config_format_v2.txt", "unsupported version", "a config of another format name (reprise.dev/v2): version 2 keeps the name reprise.dev/v1")
		f.body = fmt.Appendf(nil, `{"format":"reprise.dev/v2","version":2,"id":"%x","created":"2024-05-01T12:00:00Z","chunker":{"min":262144,"avg":1048576,"max":4194304},"pack_size":16777216,"codec":"s2"}`, repoID)
		nc := newVec("config_v2_no_codec.txt", "corrupt", "a version 2 config without its required codec field")
		nc.body = fmt.Appendf(nil, `{"format":"reprise.dev/v1","version":2,"id":"%x","created":"2024-05-01T12:00:00Z","chunker":{"min":262144,"avg":1048576,"max":4194304},"pack_size":16777216}`, repoID)
		vc := newVec("config_v1_codec.txt", "corrupt", "a version 1 config with a codec field, which version 1 does not define")
		vc.body = fmt.Appendf(nil, `{"format":"reprise.dev/v1","version":1,"id":"%x","created":"2024-05-01T12:00:00Z","chunker":{"min":262144,"avg":1048576,"max":4194304},"pack_size":16777216,"codec":"zstd"}`, repoID)
		x := newVec("config_unknown_field.txt", "corrupt", "a config with a field this version does not define")
		x.body = fmt.Appendf(nil, `{"format":"reprise.dev/v1","version":1,"id":"%x","created":"2024-05-01T12:00:00Z","chunker":{"min":262144,"avg":1048576,"max":4194304},"pack_size":16777216,"compression":"lz4"}`, repoID)
		d := newVec("config_duplicate_field.txt", "corrupt", "a config naming pack_size twice (a reader keeping either value would give the object two meanings)")
		d.body = fmt.Appendf(nil, `{"format":"reprise.dev/v1","version":1,"id":"%x","created":"2024-05-01T12:00:00Z","chunker":{"min":262144,"avg":1048576,"max":4194304},"pack_size":16777216,"pack_size":1048576}`, repoID)
	}

	// ---- slot.txt, slot_bad_mac.txt
	{
		slotJSON := func(id []byte, salt []byte, pub, secret, mac []byte, label string) []byte {
			return fmt.Appendf(nil, `{
  "version": 1,
  "id": "%x",
  "type": "passphrase",
  "label": "%s",
  "created": "2024-05-01T12:00:00Z",
  "argon2id": {
    "t": %d,
    "m": %d,
    "p": %d,
    "salt": "%s"
  },
  "public_key": "%s",
  "secret": "%s",
  "mac": "%s"
}`, id, label, argonT, argonM, argonP, b64(salt), b64(pub), b64(secret), b64(mac))
		}

		v := newVec("slot.txt", "success", "a passphrase key slot: argon2id -> slot key -> secret box (X25519 private key || repository key); MAC under the slot auth key")
		secretAD := refSlotAD(repoID, slotID, "secret")
		secret := append(bytes.Clone(slotScalar), repoKey...)
		secretBox := refBox(slotKey, fixed("slot secret box salt", 32), secret, secretAD)
		mac := refSlotMAC(slotAuthKey, repoID, slotID, slotPub, "passphrase")
		v.add("repository id", repoID)
		v.add("passphrase", passphrase)
		v.add("slot key", slotKey)
		v.add("slot private key", slotScalar)
		v.add("slot public key", slotPub)
		v.add("repository key", repoKey)
		v.add("secret ad", secretAD)
		v.add("secret", secret)
		v.add("slot auth key", slotAuthKey)
		v.add("expected mac", mac)
		v.body = slotJSON(slotID, argonSalt, slotPub, secretBox, mac, "ops laptop")

		// A slot planted by a party that can write to the storage but does
		// not know the repository key: its own passphrase, key pair and a
		// repository key of its choosing, with a MAC that verifies under
		// that forged key. A reader holding the genuine repository key
		// (opened through slot.txt) finds the MAC wrong.
		b := newVec("slot_bad_mac.txt", "auth failure", "a slot planted without the repository key: it opens with its own passphrase and its MAC verifies under the forged repository key it holds, not under the genuine one")
		evilID := fixed("planted slot id", 32)
		evilPass := "attacker passphrase"
		evilSalt := fixed("planted slot argon2id salt", 32)
		evilSlotKey := refDerive(specPassphrase, argon2.IDKey([]byte(evilPass), evilSalt, argonT, argonM, argonP, 32))
		evilScalar := fixed("planted slot private key", 32)
		evilPub := x25519Public(evilScalar)
		forgedRepoKey := fixed("forged repository key", 32)
		evilSecretAD := refSlotAD(repoID, evilID, "secret")
		evilSecret := append(bytes.Clone(evilScalar), forgedRepoKey...)
		evilBox := refBox(evilSlotKey, fixed("planted slot secret box salt", 32), evilSecret, evilSecretAD)
		forgedMAC := refSlotMAC(refDerive(specSlotAuth, forgedRepoKey), repoID, evilID, evilPub, "passphrase")
		b.add("repository id", repoID)
		b.add("passphrase", evilPass)
		b.add("slot key", evilSlotKey)
		b.add("slot private key", evilScalar)
		b.add("slot public key", evilPub)
		b.add("repository key", repoKey)
		b.add("forged repository key", forgedRepoKey)
		b.add("secret ad", evilSecretAD)
		b.add("secret", evilSecret)
		b.add("slot auth key", slotAuthKey)
		b.add("expected mac", refSlotMAC(slotAuthKey, repoID, evilID, evilPub, "passphrase"))
		b.body = slotJSON(evilID, evilSalt, evilPub, evilBox, forgedMAC, "backup")
	}

	// ---- envelope.txt, envelope_planted_generation.txt
	{
		nameBox := refBox(repoMetaKey, fixed("tenant name box salt", 32), []byte(tenantName), refNameAD(repoID, handle))
		type vgen struct {
			root, stanza, mac, genuineMAC []byte
		}
		genJSON := func(g uint32, x vgen) string {
			return fmt.Sprintf(`    {
      "gen": %d,
      "created": "2024-05-0%dT12:00:00Z",
      "keys": {
        "%x": "%s"
      },
      "mac": "%s"
    }`, g, g, slotID, b64(x.stanza), b64(x.mac))
		}
		envVec := func(name, expect, comment string, version int, gens []vgen) *vecFile {
			v := newVec(name, expect, comment)
			v.add("object name", refEnvelopeName(handle, version))
			v.add("repository id", repoID)
			v.add("repository key", repoKey)
			v.add("repository metadata key", repoMetaKey)
			v.add("envelope auth key", envAuthKey)
			v.add("tenant name", tenantName)
			v.add("tenant handle", handle)
			v.add("slot id", slotID)
			v.add("slot private key", slotScalar)
			var js []string
			for i, x := range gens {
				g := uint32(i + 1)
				v.add(fmt.Sprintf("root key %d", g), x.root)
				v.add(fmt.Sprintf("expected mac %d", g), x.genuineMAC)
				js = append(js, genJSON(g, x))
			}
			v.body = fmt.Appendf(nil, `{
  "version": 1,
  "name": "%s",
  "generations": [
%s
  ]
}`, b64(nameBox), strings.Join(js, ",\n"))
			return v
		}
		var gens []vgen
		for i, r := range roots {
			g := uint32(i + 1)
			st := refStanza(slotPub, fixed(fmt.Sprintf("envelope ephemeral %d", g), 32), fixed(fmt.Sprintf("envelope salt %d", g), 32), r, refTenantKeyAD(repoID, handle, g, slotID))
			mac := refGenMAC(envAuthKey, repoID, handle, g, r)
			gens = append(gens, vgen{root: r, stanza: st.stanza, mac: mac, genuineMAC: mac})
		}
		// Two generations: the tenant was created (version 1) and rolled
		// once (version 2).
		envVec("envelope.txt", "success", "version 2 of a tenant envelope: two generations, each wrapped to one slot, with their MACs", 2, gens)

		// A generation appended by a party without the repository key: a
		// root key of its choosing, wrapped to the slot's public key (which
		// needs no secret), with a MAC under an envelope auth key derived
		// from a forged repository key.
		const g3 = 3
		evilRoot := fixed("planted root key", 32)
		st := refStanza(slotPub, fixed("planted ephemeral", 32), fixed("planted salt", 32), evilRoot, refTenantKeyAD(repoID, handle, g3, slotID))
		forgedMAC := refGenMAC(refDerive(specEnvAuth, fixed("forged repository key", 32)), repoID, handle, g3, evilRoot)
		planted := append(gens[:len(gens):len(gens)], vgen{root: evilRoot, stanza: st.stanza, mac: forgedMAC,
			genuineMAC: refGenMAC(envAuthKey, repoID, handle, g3, evilRoot)})
		p := envVec("envelope_planted_generation.txt", "auth failure", "envelope.txt with a generation 3 appended (as version 3) by a party without the repository key: its stanza opens, its MAC does not verify", 3, planted)
		p.add("failing generation", g3)
	}

	// ---- payload_*.txt
	{
		payload := func(name, expect, comment string, body []byte, rawLen int, plaintext []byte) {
			v := newVec(name, expect, comment)
			if rawLen >= 0 {
				v.add("raw length", rawLen)
			}
			if plaintext != nil {
				v.add("plaintext", plaintext)
			}
			v.body, v.hexBody = body, true
		}
		payload("payload_raw.txt", "success", "encoding 0: the bytes as they are", append([]byte{0}, hello...), len(hello), hello)
		payload("payload_raw_empty.txt", "success", "encoding 0 of nothing", []byte{0}, 0, []byte{})
		payload("payload_zstd.txt", "success", "encoding 1: a zstd frame with a compressed block", append([]byte{1}, mustHex(frozenZstd)...), len(jack), jack)
		payload("payload_zstd_raw_block.txt", "success", "encoding 1: a zstd frame with one raw block", append([]byte{1}, zstdRawFrame(hello)...), -1, hello)
		payload("payload_zstd_rle_block.txt", "success", "encoding 1: a zstd frame with one RLE block", append([]byte{1}, zstdRLEFrame('a', 100)...), 100, bytes.Repeat([]byte{'a'}, 100))
		payload("payload_length_mismatch.txt", "corrupt", "a payload decoding to 15 bytes where 16 are expected", append([]byte{0}, hello...), 16, nil)
		payload("payload_empty.txt", "corrupt", "no encoding byte", []byte{}, -1, nil)
		payload("payload_unknown_encoding.txt", "corrupt", "encoding 3 is not defined", append([]byte{3}, hello...), -1, nil)
		payload("payload_zstd_garbage.txt", "corrupt", "encoding 1 followed by bytes that are not a zstd frame", append([]byte{1}, hello...), -1, nil)
		payload("payload_s2.txt", "success", "encoding 2 (version 2): an S2 block with a literal, a copy and a repeat", append([]byte{2}, mustHex(frozenS2)...), len(jack), jack)
		payload("payload_s2_literal.txt", "success", "encoding 2 (version 2): an S2 block holding one literal", append([]byte{2}, s2LiteralBlock(hello)...), len(hello), hello)
		payload("payload_s2_length_mismatch.txt", "corrupt", "the payload_s2.txt block, which states 344 bytes, read where 343 are expected: refused before decoding", append([]byte{2}, mustHex(frozenS2)...), len(jack)-1, nil)
		payload("payload_s2_garbage.txt", "corrupt", "encoding 2 followed by bytes that are not an S2 block: the stated length (its first byte, 104) is the one expected, but the first tag copies from before the start", append([]byte{2}, hello...), int(hello[0]), nil)
	}
	return out
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
