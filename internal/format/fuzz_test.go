package format_test

// Fuzz targets, one per decoder of stored bytes. Each is seeded with the
// golden vectors (testdata/vectors) and with round-trip encodings. Run one
// with, for example:
//
//	go test -run '^$' -fuzz '^FuzzTreeReader$' -fuzztime 10s ./internal/format/
//
// The properties checked are the decoders' documented contract
// (docs/FORMAT.md, "Limits"): never panic, never allocate more than the
// input justifies, fail only with errors wrapping format.ErrCorrupt (or
// crypto.ErrAuth / format.ErrVersion where the format says so), and decode
// whatever the matching encoder writes back to the same value.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
)

// maxFuzzInput caps fuzzed inputs: the decoders bound their allocations by
// the input size, so a larger input only slows the fuzzer down.
const maxFuzzInput = 1 << 20

// seedVectors adds the bodies of the vectors whose names start with prefix.
func seedVectors(f *testing.F, prefix string, add func(v *vector)) {
	f.Helper()
	files, _ := filepath.Glob(filepath.Join(vectorDir, prefix+"*.txt"))
	if len(files) == 0 {
		f.Fatalf("no %s* vectors in %s", prefix, vectorDir)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		v, err := parseVector(filepath.Base(name), b)
		if err != nil {
			f.Fatal(err)
		}
		add(v)
	}
}

// mustWrap fails unless err wraps one of the allowed sentinels.
func mustWrap(t *testing.T, err error, allowed ...error) {
	t.Helper()
	for _, a := range allowed {
		if errors.Is(err, a) {
			return
		}
	}
	t.Fatalf("error does not wrap %v: %v", allowed, err)
}

func readTree(t testing.TB, b []byte) ([]format.Node, error) {
	t.Helper()
	tr := format.NewTreeReader(bytes.NewReader(b))
	var nodes []format.Node
	for {
		n, err := tr.Next()
		if err == io.EOF {
			return nodes, nil
		}
		if err != nil {
			return nodes, err
		}
		c := *n
		c.Chunks = slices.Clone(n.Chunks)
		nodes = append(nodes, c)
	}
}

func writeTree(t testing.TB, nodes []format.Node) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := format.NewTreeWriter(&buf)
	for i := range nodes {
		if err := w.Write(&nodes[i]); err != nil {
			t.Fatalf("TreeWriter rejects a node TreeReader accepted: %v (%+v)", err, nodes[i])
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func nodesEqual(a, b []format.Node) bool {
	return slices.EqualFunc(a, b, func(x, y format.Node) bool {
		return x.Path == y.Path && x.Type == y.Type && x.Mode == y.Mode && x.MTime == y.MTime &&
			x.Size == y.Size && x.Target == y.Target && slices.Equal(x.Chunks, y.Chunks)
	})
}

func FuzzTreeReader(f *testing.F) {
	seedVectors(f, "tree", func(v *vector) { f.Add(v.body) })
	f.Add([]byte("RPT1"))
	f.Add([]byte{})
	var id crypto.ID
	id[0] = 7
	f.Add(writeTree(f, []format.Node{
		{Path: "a", Type: format.TypeFile, Mode: 0o4755, MTime: -1 << 62, Size: 3, Chunks: []format.ChunkRef{{ID: id, Len: 1}, {ID: id, Len: 2}}},
		{Path: "a/b", Type: format.TypeSymlink, Target: ""},
		{Path: "c", Type: format.TypeDir, MTime: 1<<63 - 1},
	}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxFuzzInput {
			return
		}
		nodes, err := readTree(t, b)
		if err != nil {
			mustWrap(t, err, format.ErrCorrupt)
			return
		}
		// Whatever decodes re-encodes, and the re-encoding decodes to the
		// same nodes and is a fixed point.
		enc := writeTree(t, nodes)
		again, err := readTree(t, enc)
		if err != nil {
			t.Fatalf("re-encoded tree does not decode: %v", err)
		}
		if !nodesEqual(nodes, again) {
			t.Fatalf("round trip changed the nodes:\n%+v\n%+v", nodes, again)
		}
		if !bytes.Equal(writeTree(t, again), enc) {
			t.Fatal("TreeWriter is not deterministic")
		}
	})
}

func FuzzUnmarshalIndex(f *testing.F) {
	seedVectors(f, "index", func(v *vector) {
		if v.has("plaintext") {
			f.Add(mustHex(v.all("plaintext")[0]))
		}
	})
	f.Add([]byte{0})
	f.Add(format.MarshalIndex([]format.PackEntry{{Gen: 3, Blobs: []format.BlobInfo{{Kind: 1, SealedLen: 17, RawLen: 0}}}, {Gen: 1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxFuzzInput {
			return
		}
		packs, err := format.UnmarshalIndex(b)
		if err != nil {
			mustWrap(t, err, format.ErrCorrupt)
			return
		}
		for _, p := range packs {
			var off int64
			for j, bl := range p.Blobs {
				if bl.Seq != uint32(j) || int64(bl.Offset) != off || bl.RawLen > format.MaxChunkSize {
					t.Fatalf("blob %d: %+v (offset want %d)", j, bl, off)
				}
				off += int64(bl.SealedLen)
			}
			if off > format.MaxPackSize {
				t.Fatalf("pack of %d bytes accepted", off)
			}
		}
		enc := format.MarshalIndex(packs)
		again, err := format.UnmarshalIndex(enc)
		if err != nil {
			t.Fatalf("MarshalIndex output does not decode: %v", err)
		}
		if !slices.EqualFunc(packs, again, func(a, b format.PackEntry) bool {
			return a.ID == b.ID && a.Gen == b.Gen && slices.Equal(a.Blobs, b.Blobs)
		}) {
			t.Fatal("index round trip changed the entries")
		}
		if !bytes.Equal(format.MarshalIndex(again), enc) {
			t.Fatal("MarshalIndex is not a fixed point")
		}
	})
}

// fuzzPackKeys are the fixed key, pack ID, generation and handle under
// which FuzzPackHeader seals its fuzzed header bodies.
func fuzzPackKeys() (crypto.Key, crypto.ID, uint32, format.Handle) {
	var k crypto.Key
	var id crypto.ID
	var h format.Handle
	for i := range k {
		k[i], id[i] = byte(i), byte(255-i)
	}
	copy(h[:], "fuzz tenant hdl!")
	return k, id, 1, h
}

// sealHeader seals body as a pack header per docs/FORMAT.md ("Packs"): seq
// LastSeq, ad = "RPK1" || gen:u32be || handle.
func sealHeader(body []byte) []byte {
	k, id, gen, h := fuzzPackKeys()
	c, err := crypto.NewObjectCipher(&k, &id)
	if err != nil {
		panic(err)
	}
	ad := binary.BigEndian.AppendUint32([]byte("RPK1"), gen)
	return c.Seal(nil, crypto.LastSeq, body, append(ad, h[:]...))
}

func encodeHeader(blobs []format.BlobInfo) []byte {
	b := binary.AppendUvarint(nil, uint64(len(blobs)))
	for _, bl := range blobs {
		b = append(b, bl.Kind)
		b = append(b, bl.ID[:]...)
		b = binary.AppendUvarint(b, uint64(bl.SealedLen))
		b = binary.AppendUvarint(b, uint64(bl.RawLen))
	}
	return b
}

func FuzzPackHeader(f *testing.F) {
	seedVectors(f, "pack", func(v *vector) {
		if v.one(f, "expect") == "success" {
			f.Add(mustHex(v.all("header body")[0]), int64(0))
			var n int64
			for _, s := range v.all("blob") {
				n += int64(parseBlobLine(f, s).sealedLen)
			}
			f.Add(mustHex(v.all("header body")[0]), n)
		}
	})
	f.Add([]byte{0}, int64(0))
	f.Add(encodeHeader([]format.BlobInfo{{Kind: 0, SealedLen: 17}, {Kind: 1, SealedLen: 100, RawLen: 83}}), int64(117))
	f.Fuzz(func(t *testing.T, body []byte, blobsSize int64) {
		if len(body) > maxFuzzInput {
			return
		}
		k, id, gen, h := fuzzPackKeys()
		sealed := sealHeader(body)
		packSize := blobsSize + int64(len(sealed)) + format.TrailerSize
		blobs, err := format.OpenPackHeader(&k, &id, gen, &h, sealed, packSize)
		if err != nil {
			mustWrap(t, err, format.ErrCorrupt)
			return
		}
		var off int64
		for i, b := range blobs {
			if b.Seq != uint32(i) || int64(b.Offset) != off || b.SealedLen < crypto.Overhead+1 ||
				b.SealedLen > format.MaxChunkSize+1+crypto.Overhead || b.RawLen > format.MaxChunkSize {
				t.Fatalf("blob %d: %+v (offset want %d)", i, b, off)
			}
			off += int64(b.SealedLen)
		}
		if off != blobsSize {
			t.Fatalf("blobs cover %d bytes, pack holds %d", off, blobsSize)
		}
		// The header re-encoded per the spec (shortest varints, so perhaps
		// shorter than the input) opens to the same blobs.
		resealed := sealHeader(encodeHeader(blobs))
		again, err := format.OpenPackHeader(&k, &id, gen, &h, resealed, blobsSize+int64(len(resealed))+format.TrailerSize)
		if err != nil || !slices.Equal(again, blobs) {
			t.Fatalf("re-encoded header: %v, %+v vs %+v", err, again, blobs)
		}
		// And under any other generation or handle it fails to open.
		if _, err := format.OpenPackHeader(&k, &id, gen+1, &h, sealed, packSize); !errors.Is(err, crypto.ErrAuth) {
			t.Fatalf("header opened under another generation: %v", err)
		}
	})
}

func FuzzParseTrailer(f *testing.F) {
	seedVectors(f, "pack", func(v *vector) {
		if len(v.body) >= format.TrailerSize {
			f.Add(v.body[len(v.body)-format.TrailerSize:])
		}
	})
	f.Add([]byte("\x00\x00\x00\x01\x00\x00\x00\x10RPK1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		gen, hlen, err := format.ParseTrailer(b)
		if err != nil {
			mustWrap(t, err, format.ErrCorrupt)
			return
		}
		if hlen < crypto.Overhead || hlen > format.MaxPackSize {
			t.Fatalf("header length %d accepted", hlen)
		}
		re := binary.BigEndian.AppendUint32(nil, gen)
		re = binary.BigEndian.AppendUint32(re, uint32(hlen))
		if re = append(re, "RPK1"...); !bytes.Equal(re, b) {
			t.Fatalf("trailer %x re-encodes as %x", b, re)
		}
	})
}

// FuzzOpenObject feeds arbitrary bytes, as an index, a snapshot and a run
// record object, to OpenObject under the keys of those vectors:
// only the unaltered vectors may open; anything else fails cleanly.
func FuzzOpenObject(f *testing.F) {
	type keyset struct {
		magic string
		key   crypto.Key
		h     format.Handle
		id    crypto.ID
	}
	var sets []keyset
	var seeds [][]byte
	seed := func(magic string) func(v *vector) {
		return func(v *vector) {
			f.Add(v.body)
			seeds = append(seeds, v.body)
			if v.one(f, "expect") == "success" {
				sets = append(sets, keyset{magic, v.key(f, "metadata key"), v.handle(f, "tenant handle"), v.id(f, "object id")})
			}
		}
	}
	seedVectors(f, "index", seed(format.MagicIndex))
	seedVectors(f, "snapshot", seed(format.MagicSnapshot))
	seedVectors(f, "record", seed(format.MagicRecord))
	f.Add([]byte("RPI1\x00\x00\x00\x01"))
	// The objects that legitimately open under each key set: the vectors
	// sealed under it (some of them fail later, in the plaintext parser).
	valid := make([]map[string]bool, len(sets))
	for i, s := range sets {
		valid[i] = map[string]bool{}
		for _, b := range seeds {
			if _, err := format.OpenObject(s.magic, &s.key, &s.h, &s.id, b); err == nil {
				valid[i][string(b)] = true
			}
		}
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		if len(obj) > maxFuzzInput {
			return
		}
		for i, s := range sets {
			pt, err := format.OpenObject(s.magic, &s.key, &s.h, &s.id, obj)
			if err != nil {
				mustWrap(t, err, format.ErrCorrupt, crypto.ErrAuth)
				continue
			}
			if !valid[i][string(obj)] {
				t.Fatalf("an altered %s object opened: %x -> %q", s.magic, obj, pt)
			}
		}
	})
}

// fuzzJSON checks a JSON object decoder: failures wrap ErrCorrupt or
// ErrVersion; what decodes satisfies valid (the constraints of
// docs/FORMAT.md the decoder promises to check; nil for none) and
// re-encodes (with encoding/json, as the writers do) to bytes that decode
// to an equal value.
func fuzzJSON[T any](f *testing.F, prefix string, parse func([]byte) (*T, error), valid func(*testing.T, *T)) {
	f.Add([]byte("{}"))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxFuzzInput {
			return
		}
		v, err := parse(b)
		if err != nil {
			mustWrap(t, err, format.ErrCorrupt, format.ErrVersion)
			return
		}
		if valid != nil {
			valid(t, v)
		}
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("a decoded %s does not re-encode: %v", prefix, err)
		}
		v2, err := parse(enc)
		if err != nil {
			t.Fatalf("a re-encoded %s does not decode: %v\n%s", prefix, err, enc)
		}
		enc2, err := json.Marshal(v2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("%s round trip is not stable:\n%s\n%s", prefix, enc, enc2)
		}
	})
}

func seedBodies(f *testing.F, prefix string) {
	seedVectors(f, prefix, func(v *vector) { f.Add(v.body) })
}

func FuzzParseConfig(f *testing.F) {
	seedBodies(f, "config")
	// Stray closing brackets after the object (once accepted).
	seedVectors(f, "config", func(v *vector) { f.Add(append(bytes.Clone(v.body), '}')) })
	fuzzJSON(f, "config", format.ParseConfig, func(t *testing.T, c *format.Config) {
		p := chunk.Params{Min: c.Chunker.Min, Avg: c.Chunker.Avg, Max: c.Chunker.Max}
		if c.Format != format.FormatName || p == (chunk.Params{}) || p.Validate() != nil ||
			c.PackSize < 1<<20 || c.PackSize > format.MaxPackSize/2 {
			t.Fatalf("invalid config accepted: %+v", c)
		}
		switch {
		case c.Version == format.Version && c.Codec == "":
		case c.Version == format.Version2 && (c.Codec == format.CodecZstd || c.Codec == format.CodecS2):
		default:
			t.Fatalf("config of version %d with codec %q accepted", c.Version, c.Codec)
		}
	})
}

func FuzzParseSlot(f *testing.F) {
	seedBodies(f, "slot")
	fuzzJSON(f, "slot", format.ParseSlot, func(t *testing.T, s *format.Slot) {
		if s.Version != format.Version || len(s.PublicKey) != crypto.PublicKeySize ||
			len(s.Secret) != format.SlotSecretSize+crypto.BoxOverhead || len(s.MAC) != crypto.KeySize {
			t.Fatalf("invalid slot accepted: %+v", s)
		}
		switch s.Type {
		case format.SlotPassphrase:
			if s.Argon2 == nil || s.Argon2.Validate() != nil {
				t.Fatalf("passphrase slot with bad argon2id parameters accepted: %+v", s.Argon2)
			}
		case format.SlotKeeper:
			if len(s.KeeperKey) == 0 || len(s.KeeperKey) > 64<<10 {
				t.Fatalf("keeper slot with a keeper key of %d bytes accepted", len(s.KeeperKey))
			}
		default:
			t.Fatalf("slot type %q accepted", s.Type)
		}
	})
}

func FuzzParseEnvelope(f *testing.F) {
	seedBodies(f, "envelope")
	fuzzJSON(f, "envelope", format.ParseEnvelope, func(t *testing.T, e *format.Envelope) {
		if e.Version != format.Version || len(e.Generations) == 0 {
			t.Fatalf("invalid envelope accepted: %+v", e)
		}
		for i, g := range e.Generations {
			if g.Gen != uint32(i+1) || len(g.Keys) == 0 || len(g.MAC) != crypto.KeySize {
				t.Fatalf("invalid generation %d accepted: %+v", i, g)
			}
			for slot, st := range g.Keys {
				if _, err := crypto.ParseID(slot); err != nil || len(st) != crypto.StanzaSize {
					t.Fatalf("generation %d: bad key for slot %q accepted", g.Gen, slot)
				}
			}
		}
	})
}

// snapshotVectorID is the object ID of testdata/vectors/snapshot.txt: a
// snapshot plaintext must name the object it is read from.
func snapshotVectorID(f *testing.F) crypto.ID {
	b, err := os.ReadFile(filepath.Join(vectorDir, "snapshot.txt"))
	if err != nil {
		f.Fatal(err)
	}
	v, err := parseVector("snapshot.txt", b)
	if err != nil {
		f.Fatal(err)
	}
	return v.id(f, "object id")
}

func FuzzParseSnapshot(f *testing.F) {
	id := snapshotVectorID(f)
	parse := func(b []byte) (*format.Snapshot, error) { return format.ParseSnapshot(b, &id) }
	seedVectors(f, "snapshot", func(v *vector) { f.Add([]byte(v.all("plaintext")[0])) })
	fuzzJSON(f, "snapshot", parse, nil)
}

func FuzzParseRecord(f *testing.F) {
	b, err := os.ReadFile(filepath.Join(vectorDir, "record.txt"))
	if err != nil {
		f.Fatal(err)
	}
	v, err := parseVector("record.txt", b)
	if err != nil {
		f.Fatal(err)
	}
	id := v.id(f, "object id")
	seedVectors(f, "record", func(v *vector) { f.Add([]byte(v.all("plaintext")[0])) })
	fuzzJSON(f, "record", func(b []byte) (*format.Record, error) { return format.ParseRecord(b, &id) }, nil)
}

func FuzzDecodePayload(f *testing.F) {
	seedVectors(f, "payload", func(v *vector) {
		n := -1
		if v.has("raw length") {
			n = v.int(f, "raw length")
		}
		f.Add(v.body, n)
	})
	abc := bytes.Repeat([]byte("abc"), 100)
	f.Add(format.Encode(nil, abc, format.EncodingZstd), 300)
	// Encoding 2 (S2 blocks): a compressed one, read with the right
	// length, a wrong one and none; the empty block; a block stating far
	// more than it holds; a block whose copy reaches before its start.
	s2abc := format.Encode(nil, abc, format.EncodingS2)
	f.Add(s2abc, 300)
	f.Add(s2abc, 299)
	f.Add(s2abc, -1)
	f.Add([]byte{format.EncodingS2, 0}, 0)
	f.Add(format.Encode(nil, make([]byte, 1<<20), format.EncodingS2), 1000)
	f.Add([]byte{format.EncodingS2, 8, 0x01, 0x10}, 8)
	f.Fuzz(func(t *testing.T, payload []byte, rawLen int) {
		if len(payload) > maxFuzzInput {
			return
		}
		out, err := format.Decode(nil, payload, rawLen)
		if err != nil {
			mustWrap(t, err, format.ErrCorrupt)
			return
		}
		if rawLen >= 0 && len(out) != rawLen {
			t.Fatalf("decoded %d bytes, want %d", len(out), rawLen)
		}
		if len(out) > format.MaxMetaSize {
			t.Fatalf("decoded %d bytes, above the %d limit", len(out), format.MaxMetaSize)
		}
		for _, e := range []byte{format.EncodingRaw, format.EncodingZstd, format.EncodingS2} {
			enc := format.Encode(nil, out, e)
			back, err := format.Decode(nil, enc, len(out))
			if err != nil || !bytes.Equal(back, out) {
				t.Fatalf("Encode(encoding %d) does not round trip: %v", e, err)
			}
			if len(enc) > len(out)+1 {
				t.Fatalf("Encode(encoding %d) grew %d bytes to %d", e, len(out), len(enc))
			}
		}
	})
}
