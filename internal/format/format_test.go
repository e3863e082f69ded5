package format_test

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
)

// The vectors check that the decoders read what docs/FORMAT.md specifies.
// The tests below check the other direction: what the real encoders (whose
// outputs involve fresh random IDs and salts, so cannot be vectors) write
// is opened by the specification's reference functions of
// vectors_gen_test.go.

func testKeys() (crypto.Key, format.Handle) {
	k := crypto.Key(fixed("format_test data key", 32))
	return k, format.Handle(fixed("format_test handle", 16))
}

func TestPackBuilderMatchesSpec(t *testing.T) {
	dataKey, h := testKeys()
	const gen = 3
	chunks := []struct {
		kind byte
		data []byte
		enc  byte
	}{
		{format.KindData, []byte("short"), format.EncodingZstd},
		{format.KindData, bytes.Repeat([]byte("compressible "), 100), format.EncodingZstd},
		{format.KindData, bytes.Repeat([]byte("stored raw "), 100), format.EncodingRaw},
		{format.KindTree, []byte("RPT1"), format.EncodingZstd},
		{format.KindData, bytes.Repeat([]byte("compressible with s2 "), 100), format.EncodingS2},
		{format.KindData, []byte("short, s2"), format.EncodingS2},
	}
	pb := format.NewPackBuilder()
	if err := pb.Reset(&dataKey, gen, h); err != nil {
		t.Fatal(err)
	}
	cidKey := crypto.Key(fixed("format_test chunk id key", 32))
	hasher := crypto.NewIDHasher(&cidKey)
	for _, c := range chunks {
		id := hasher.Sum(c.data)
		pb.Add(c.kind, &id, c.data, c.enc)
	}
	pack := bytes.Clone(pb.Finish())
	id := pb.ID[:]

	// Trailer.
	tr := pack[len(pack)-12:]
	if string(tr[8:]) != "RPK1" || binary.BigEndian.Uint32(tr) != gen {
		t.Fatalf("trailer %x", tr)
	}
	hlen := int(binary.BigEndian.Uint32(tr[4:8]))
	hdr := pack[len(pack)-12-hlen : len(pack)-12]
	body, err := refOpen(dataKey[:], id, lastSeq, hdr, refSealedAD("RPK1", gen, h[:]))
	if err != nil {
		t.Fatalf("header does not open per the spec: %v", err)
	}
	// Header body, blob by blob.
	want := binary.AppendUvarint(nil, uint64(len(chunks)))
	off := 0
	for i, c := range chunks {
		cid := hasher.Sum(c.data)
		want = append(want, c.kind)
		want = append(want, cid[:]...)
		b := pb.Blobs()[i]
		want = binary.AppendUvarint(want, uint64(b.SealedLen))
		want = binary.AppendUvarint(want, uint64(len(c.data)))
		if int(b.Offset) != off {
			t.Errorf("blob %d at %d, want %d", i, b.Offset, off)
		}
		payload, err := refOpen(dataKey[:], id, uint64(i), pack[off:off+int(b.SealedLen)], refChunkAD(gen, h[:], c.kind, cid[:]))
		if err != nil {
			t.Fatalf("blob %d does not open per the spec: %v", i, err)
		}
		switch payload[0] {
		case 0:
			eqBytes(t, "raw payload", payload[1:], c.data)
		case 1, 2:
			if payload[0] != c.enc {
				t.Errorf("blob %d: encoding %d, asked for %d", i, payload[0], c.enc)
			}
			if len(payload) > len(c.data)-len(c.data)/32+1 {
				t.Errorf("blob %d: compression kept although it saves less than 1/32", i)
			}
			if payload[0] == 1 && !bytes.HasPrefix(payload[1:], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
				t.Errorf("blob %d: not a zstd frame", i)
			}
			// An S2 block starts with its decoded length, a uvarint.
			if n, k := binary.Uvarint(payload[1:]); payload[0] == 2 && (k <= 0 || n != uint64(len(c.data))) {
				t.Errorf("blob %d: S2 block states %d bytes, want %d", i, n, len(c.data))
			}
			if got, err := format.Decode(nil, payload, len(c.data)); err != nil || !bytes.Equal(got, c.data) {
				t.Errorf("blob %d: does not decode: %v", i, err)
			}
		default:
			t.Errorf("blob %d: encoding byte %d", i, payload[0])
		}
		off += int(b.SealedLen)
	}
	eqBytes(t, "header body", body, want)
	if off+hlen+12 != len(pack) {
		t.Errorf("pack of %d bytes, blobs %d + header %d + 12", len(pack), off, hlen)
	}
}

func TestSealObjectMatchesSpec(t *testing.T) {
	metaKey, h := testKeys()
	id := crypto.ID(fixed("format_test object id", 32))
	for _, magic := range []string{format.MagicIndex, format.MagicSnapshot} {
		for _, pt := range [][]byte{{}, []byte("small"), bytes.Repeat([]byte("{\"a\":1}"), 200)} {
			obj, err := format.SealObject(magic, &metaKey, 9, &h, &id, pt)
			if err != nil {
				t.Fatal(err)
			}
			if string(obj[:4]) != magic || binary.BigEndian.Uint32(obj[4:8]) != 9 {
				t.Fatalf("header %x", obj[:8])
			}
			payload, err := refOpen(metaKey[:], id[:], 0, obj[8:], refSealedAD(magic, 9, h[:]))
			if err != nil {
				t.Fatalf("%s object does not open per the spec: %v", magic, err)
			}
			got, err := format.Decode(nil, payload, len(pt))
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("payload: %v", err)
			}
		}
	}
}

func TestSealBoxAndStanzaMatchSpec(t *testing.T) {
	k := crypto.Key(fixed("format_test box key", 32))
	ad := []byte("ad")
	box, err := crypto.SealBox(&k, []byte("secret"), ad)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := refOpen(k[:], box[:32], 0, box[32:], ad)
	if err != nil || string(pt) != "secret" {
		t.Fatalf("box does not open per the spec: %v", err)
	}

	scalar := fixed("format_test slot scalar", 32)
	pub := x25519Public(scalar)
	key := crypto.Key(fixed("format_test wrapped", 32))
	st, err := crypto.WrapToPublic(pub, &key, ad)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 112 {
		t.Fatalf("stanza of %d bytes", len(st))
	}
	priv, _ := ecdh.X25519().NewPrivateKey(scalar)
	e, err := ecdh.X25519().NewPublicKey(st[:32])
	if err != nil {
		t.Fatal(err)
	}
	shared, err := priv.ECDH(e)
	if err != nil {
		t.Fatal(err)
	}
	wk := refDerive(specStanza, shared, st[:32], pub)
	got, err := refOpen(wk, st[32:64], 0, st[64:], ad)
	if err != nil || !bytes.Equal(got, key[:]) {
		t.Fatalf("stanza does not open per the spec: %v", err)
	}
}

// TestPackVectorMisuse opens the pack vector in the wrong places: another
// pack name, tenant or generation must fail authentication.
func TestPackVectorMisuse(t *testing.T) {
	b, err := os.ReadFile(vectorDir + "/pack.txt")
	if err != nil {
		t.Fatal(err)
	}
	v, err := parseVector("pack.txt", b)
	if err != nil {
		t.Fatal(err)
	}
	dataKey, id, h := v.key(t, "data key"), v.id(t, "pack id"), v.handle(t, "tenant handle")
	gen, hlen, err := format.ParseTrailer(v.body[len(v.body)-12:])
	if err != nil {
		t.Fatal(err)
	}
	hdr := v.body[len(v.body)-12-hlen : len(v.body)-12]
	size := int64(len(v.body))
	if _, err := format.OpenPackHeader(&dataKey, &id, gen, &h, hdr, size); err != nil {
		t.Fatal(err)
	}
	otherID, otherH := id, h
	otherID[31] ^= 1
	otherH[0] ^= 1
	for name, f := range map[string]func() error{
		"other pack ID": func() error { _, err := format.OpenPackHeader(&dataKey, &otherID, gen, &h, hdr, size); return err },
		"other tenant":  func() error { _, err := format.OpenPackHeader(&dataKey, &id, gen, &otherH, hdr, size); return err },
		"other gen":     func() error { _, err := format.OpenPackHeader(&dataKey, &id, gen+1, &h, hdr, size); return err },
	} {
		if err := f(); !errors.Is(err, crypto.ErrAuth) {
			t.Errorf("%s: %v, want an auth failure", name, err)
		}
	}
	// A blob opened as another kind, chunk ID or position fails too.
	blobs, _ := format.OpenPackHeader(&dataKey, &id, gen, &h, hdr, size)
	c, _ := crypto.NewObjectCipher(&dataKey, &id)
	var o format.BlobOpener
	for i, mutate := range []func(*format.BlobInfo){
		func(b *format.BlobInfo) { b.Kind ^= 1 },
		func(b *format.BlobInfo) { b.ID[0] ^= 1 },
		func(b *format.BlobInfo) { b.Seq++ },
	} {
		b := blobs[0]
		mutate(&b)
		if _, err := o.Open(nil, c, gen, &h, &b, v.body[:blobs[0].SealedLen]); !errors.Is(err, crypto.ErrAuth) {
			t.Errorf("mutation %d: %v, want an auth failure", i, err)
		}
	}
	// The pack too short for the header length its trailer gives: callers
	// check it (ParseTrailer alone cannot), and OpenPackHeader rejects the
	// wrong size.
	if _, err := format.OpenPackHeader(&dataKey, &id, gen, &h, hdr, size+1); !errors.Is(err, format.ErrCorrupt) {
		t.Errorf("wrong pack size: %v, want corrupt", err)
	}
}

// TestContextStringsMatchSpec checks the code's derivation context
// strings (crypto/key.go) against docs/FORMAT.md, "Derivation contexts", as
// the generator spells them.
func TestContextStringsMatchSpec(t *testing.T) {
	for _, c := range []struct{ code, spec string }{
		{crypto.ContextChunkID, specChunkID},
		{crypto.ContextData, specData},
		{crypto.ContextMetadata, specMetadata},
		{crypto.ContextGear, specGear},
		{crypto.ContextNames, specNames},
		{crypto.ContextRepoMeta, specRepoMeta},
		{crypto.ContextSlotAuth, specSlotAuth},
		{crypto.ContextSlotMAC, specSlotMAC},
		{crypto.ContextEnvAuth, specEnvAuth},
		{crypto.ContextGenMAC, specGenMAC},
		{crypto.ContextObjectKey, specObjectKey},
		{crypto.ContextPassphrase, specPassphrase},
		{crypto.ContextStanza, specStanza},
	} {
		if c.code != c.spec {
			t.Errorf("context %q, spec says %q", c.code, c.spec)
		}
	}
}

// TestMACsMatchSpec checks format.SlotMAC, format.GenerationMAC and
// format.SlotAD against the reference functions, for a keeper slot (the
// vectors hold a passphrase slot) and a generation number above 255.
func TestMACsMatchSpec(t *testing.T) {
	rk := crypto.Key(fixed("format_test repository key", 32))
	keys := crypto.NewRepoKeys(&rk)
	eqBytes(t, "slot auth key", keys.SlotAuth[:], refDerive(specSlotAuth, rk[:]))
	eqBytes(t, "envelope auth key", keys.EnvelopeAuth[:], refDerive(specEnvAuth, rk[:]))
	repo := crypto.ID(fixed("format_test repository id", 32))
	s := &format.Slot{ID: crypto.ID(fixed("format_test slot id", 32)), Type: format.SlotKeeper,
		PublicKey: x25519Public(fixed("format_test slot scalar", 32))}
	eqBytes(t, "slot MAC", format.SlotMAC(&keys.SlotAuth, &repo, s), refSlotMAC(keys.SlotAuth[:], repo[:], s.ID[:], s.PublicKey, "keeper"))
	eqBytes(t, "slot secret AD", format.SlotAD(&repo, &s.ID, "secret"), refSlotAD(repo[:], s.ID[:], "secret"))
	_, h := testKeys()
	root := crypto.Key(fixed("format_test root key", 32))
	const gen = 0x01020304
	eqBytes(t, "generation MAC", format.GenerationMAC(&keys.EnvelopeAuth, &repo, &h, gen, &root), refGenMAC(keys.EnvelopeAuth[:], repo[:], h[:], gen, root[:]))
}

// vectorBody returns the body of a golden vector.
func vectorBody(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(vectorDir + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := parseVector(name, b)
	if err != nil {
		t.Fatal(err)
	}
	return string(v.body)
}

func wantErr(t *testing.T, what string, err error, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Errorf("%s: error %v, want %v", what, err, sentinel)
	}
}

// TestStrictJSON checks that the JSON decoders reject what docs/FORMAT.md
// ("JSON objects") forbids: data after the object, repeated fields (at any
// depth), undefined fields.
func TestStrictJSON(t *testing.T) {
	cfg := vectorBody(t, "config.txt")
	if _, err := format.ParseConfig([]byte(cfg + " \n\t")); err != nil {
		t.Errorf("trailing whitespace: %v", err)
	}
	for name, b := range map[string]string{
		"trailing brace":          cfg + "}",
		"trailing bracket":        cfg + "]",
		"trailing object":         cfg + "{}",
		"trailing garbage":        cfg + "x",
		"second config":           cfg + cfg,
		"duplicate field":         strings.Replace(cfg, `"version": 1,`, `"version": 2, "version": 1,`, 1),
		"duplicate nested field":  strings.Replace(cfg, `"min": 262144,`, `"min": 262144, "min": 65536,`, 1),
		"duplicate object field":  strings.Replace(cfg, `"pack_size"`, `"chunker": {"min": 64, "avg": 128, "max": 256}, "pack_size"`, 1),
		"unknown nested field":    strings.Replace(cfg, `"min": 262144,`, `"min": 262144, "mean": 1,`, 1),
		"not an object":           `[` + cfg + `]`,
		"truncated":               cfg[:len(cfg)-1],
		"integer with a fraction": strings.Replace(cfg, `"pack_size": 16777216`, `"pack_size": 16777216.5`, 1),
	} {
		if _, err := format.ParseConfig([]byte(b)); !errors.Is(err, format.ErrCorrupt) {
			t.Errorf("config, %s: %v, want corrupt", name, err)
		}
	}

	slot := vectorBody(t, "slot.txt")
	env := vectorBody(t, "envelope.txt")
	for name, c := range map[string]struct {
		parse func([]byte) error
		b     string
	}{
		"slot, duplicate mac":          {parseSlot, strings.Replace(slot, `"mac"`, `"mac": "AA==", "mac"`, 1)},
		"slot, trailing brace":         {parseSlot, slot + "}"},
		"envelope, duplicate slot key": {parseEnvelope, dupEnvelopeKey(t, env)},
		"envelope, trailing bracket":   {parseEnvelope, env + "]"},
	} {
		wantErr(t, name, c.parse([]byte(c.b)), format.ErrCorrupt)
	}
}

func parseSlot(b []byte) error     { _, err := format.ParseSlot(b); return err }
func parseEnvelope(b []byte) error { _, err := format.ParseEnvelope(b); return err }

// firstEnvelopeKey returns the first `"<slot id>": "<stanza>"` entry of
// the envelope's first generation, and where it starts.
func firstEnvelopeKey(t *testing.T, env string) (entry string, at int) {
	t.Helper()
	i := strings.Index(env, `"keys": {`)
	if i < 0 {
		t.Fatal("no keys in envelope.txt")
	}
	i += len(`"keys": {`)
	j := strings.Index(env[i:], "\n      }")
	if j < 0 {
		t.Fatal("keys of envelope.txt not closed")
	}
	return strings.TrimSpace(env[i : i+j]), i
}

// dupEnvelopeKey repeats the first slot key of the envelope's first
// generation.
func dupEnvelopeKey(t *testing.T, env string) string {
	t.Helper()
	entry, at := firstEnvelopeKey(t, env)
	return env[:at] + "\n        " + entry + "," + env[at:]
}

// TestParseConfigChunker checks that a config must give explicit, valid
// chunker parameters (docs/FORMAT.md, "Config" and "Chunking").
func TestParseConfigChunker(t *testing.T) {
	cfg := vectorBody(t, "config.txt")
	chunker := "\"chunker\": {\n    \"min\": 262144,\n    \"avg\": 1048576,\n    \"max\": 4194304\n  },\n  "
	if !strings.Contains(cfg, chunker) {
		t.Fatalf("config.txt has no chunker %q", chunker)
	}
	for name, repl := range map[string]string{
		"missing":            "",
		"all zero":           `"chunker": {"min": 0, "avg": 0, "max": 0}, `,
		"empty object":       `"chunker": {}, `,
		"null":               `"chunker": null, `,
		"min below 64":       `"chunker": {"min": 32, "avg": 1048576, "max": 4194304}, `,
		"avg not power of 2": `"chunker": {"min": 262144, "avg": 1000000, "max": 4194304}, `,
		"max above 64 MiB":   `"chunker": {"min": 262144, "avg": 1048576, "max": 67108865}, `,
		"min above avg":      `"chunker": {"min": 2097152, "avg": 1048576, "max": 4194304}, `,
		"max equal to avg":   `"chunker": {"min": 262144, "avg": 1048576, "max": 1048576}, `,
		"negative":           `"chunker": {"min": -1, "avg": 1048576, "max": 4194304}, `,
	} {
		b := strings.Replace(cfg, chunker, repl, 1)
		if _, err := format.ParseConfig([]byte(b)); !errors.Is(err, format.ErrCorrupt) {
			t.Errorf("chunker %s: %v, want corrupt", name, err)
		}
	}
	ok := strings.Replace(cfg, chunker, `"chunker": {"min": 64, "avg": 128, "max": 67108864}, `, 1)
	if _, err := format.ParseConfig([]byte(ok)); err != nil {
		t.Errorf("extreme valid chunker parameters: %v", err)
	}
	for name, ps := range map[string]string{"below 1 MiB": "1048575", "above 512 MiB": "536870913"} {
		b := strings.Replace(cfg, `"pack_size": 16777216`, `"pack_size": `+ps, 1)
		wantErr(t, "pack size "+name, func() error { _, err := format.ParseConfig([]byte(b)); return err }(), format.ErrCorrupt)
	}
}

// TestParseSlotFields checks the field constraints of key slots: the
// version 1 slot of earlier drafts (private_key, repo_key) is refused,
// and so are secrets, public keys and MACs of the wrong length.
func TestParseSlotFields(t *testing.T) {
	slot := vectorBody(t, "slot.txt")
	s, err := format.ParseSlot([]byte(slot))
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string, b []byte) string {
		return fmt.Sprintf("%q: %q", name, base64.StdEncoding.EncodeToString(b))
	}
	replace := func(old, new string) string {
		if !strings.Contains(slot, old) {
			t.Fatalf("slot.txt has no %s", old)
		}
		return strings.Replace(slot, old, new, 1)
	}
	secret := field("secret", s.Secret)
	for name, b := range map[string]string{
		"old private_key and repo_key": replace(secret, field("private_key", s.Secret[:80])+",\n  "+field("repo_key", s.Secret)),
		"no secret":                    replace(secret+",\n  ", ""),
		"secret of 111 bytes":          replace(secret, field("secret", s.Secret[:111])),
		"secret of 113 bytes":          replace(secret, field("secret", append(bytes.Clone(s.Secret), 0))),
		"no mac":                       replace(",\n  "+field("mac", s.MAC), ""),
		"mac of 31 bytes":              replace(field("mac", s.MAC), field("mac", s.MAC[:31])),
		"public key of 33 bytes":       replace(field("public_key", s.PublicKey), field("public_key", append(bytes.Clone(s.PublicKey), 9))),
		"unknown type":                 replace(`"type": "passphrase"`, `"type": "fido2"`),
		"keeper without keeper_key":    replace(`"type": "passphrase"`, `"type": "keeper"`),
	} {
		wantErr(t, name, parseSlot([]byte(b)), format.ErrCorrupt)
	}
	wantErr(t, "version 2", parseSlot([]byte(replace(`"version": 1`, `"version": 2`))), format.ErrVersion)
}

// TestParseEnvelopeFields checks the field constraints of envelopes: every
// generation has at least one key and a 32-byte MAC, and generations are
// numbered from 1 in order.
func TestParseEnvelopeFields(t *testing.T) {
	env := vectorBody(t, "envelope.txt")
	e, err := format.ParseEnvelope([]byte(env))
	if err != nil {
		t.Fatal(err)
	}
	mac := func(b []byte) string { return fmt.Sprintf(`"mac": %q`, base64.StdEncoding.EncodeToString(b)) }
	m1 := mac(e.Generations[0].MAC)
	replace := func(old, new string) string {
		if !strings.Contains(env, old) {
			t.Fatalf("envelope.txt has no %s", old)
		}
		return strings.Replace(env, old, new, 1)
	}
	k1, _ := firstEnvelopeKey(t, env)
	for name, b := range map[string]string{
		"no mac":            replace(",\n      "+m1, ""),
		"null mac":          replace(m1, `"mac": null`),
		"mac of 31 bytes":   replace(m1, mac(e.Generations[0].MAC[:31])),
		"mac of 33 bytes":   replace(m1, mac(append(bytes.Clone(e.Generations[0].MAC), 0))),
		"empty keys":        replace(k1, ""),
		"no keys":           replace(`"keys": {`+"\n        "+k1+"\n      },", ""),
		"generation 2 of 1": replace(`"gen": 1`, `"gen": 2`),
		"generation 0":      replace(`"gen": 1`, `"gen": 0`),
		"upper-case slot":   replace(k1, strings.ToUpper(k1[:65])+k1[65:]),
		"no generations":    `{"version": 1, "name": "AA==", "generations": []}`,
	} {
		wantErr(t, name, parseEnvelope([]byte(b)), format.ErrCorrupt)
	}
}

// TestDecoderBounds checks the limits of docs/FORMAT.md ("Limits",
// "Payload encoding") where decoders used to be more lenient: varint
// overflow in trees, chunk kinds, blob lengths, payload sizes.
func TestDecoderBounds(t *testing.T) {
	t.Run("tree/uvarint overflow", func(t *testing.T) {
		b := append([]byte("RPT1"), bytes.Repeat([]byte{0xff}, 10)...)
		_, err := readTree(t, append(b, 0x01))
		wantErr(t, "path length", err, format.ErrCorrupt)
	})
	t.Run("tree/varint overflow", func(t *testing.T) {
		b := []byte("RPT1\x01ad\xed\x03")
		b = append(b, bytes.Repeat([]byte{0xff}, 10)...)
		_, err := readTree(t, append(b, 0x01))
		wantErr(t, "mtime", err, format.ErrCorrupt)
	})
	t.Run("tree/10-byte varints", func(t *testing.T) {
		// The largest 10-byte encodings are valid: mtime -2^63 and 2^63-1.
		for _, mt := range []int64{-1 << 63, 1<<63 - 1} {
			b := writeTree(t, []format.Node{{Path: "d", Type: format.TypeDir, MTime: mt}})
			nodes, err := readTree(t, b)
			if err != nil || len(nodes) != 1 || nodes[0].MTime != mt {
				t.Errorf("mtime %d: %v %+v", mt, err, nodes)
			}
		}
	})
	t.Run("index/unknown kind", func(t *testing.T) {
		for _, k := range []byte{2, 7, 0xff} {
			b := format.MarshalIndex([]format.PackEntry{{Gen: 1, Blobs: []format.BlobInfo{{Kind: k, SealedLen: 17}}}})
			_, err := format.UnmarshalIndex(b)
			wantErr(t, fmt.Sprintf("kind %d", k), err, format.ErrCorrupt)
		}
	})
	t.Run("index/sealed length", func(t *testing.T) {
		for sl, ok := range map[uint32]bool{0: false, 16: false, 17: true, format.MaxChunkSize + 17: true, format.MaxChunkSize + 18: false} {
			b := format.MarshalIndex([]format.PackEntry{{Gen: 1, Blobs: []format.BlobInfo{{Kind: format.KindData, SealedLen: sl}}}})
			_, err := format.UnmarshalIndex(b)
			if ok && err != nil || !ok && !errors.Is(err, format.ErrCorrupt) {
				t.Errorf("sealed length %d: %v", sl, err)
			}
		}
	})
	t.Run("pack header/unknown kind", func(t *testing.T) {
		k, id, gen, h := fuzzPackKeys()
		for _, kind := range []byte{2, 0x80} {
			sealed := sealHeader(encodeHeader([]format.BlobInfo{{Kind: kind, SealedLen: 17}}))
			_, err := format.OpenPackHeader(&k, &id, gen, &h, sealed, 17+int64(len(sealed))+format.TrailerSize)
			wantErr(t, fmt.Sprintf("kind %d", kind), err, format.ErrCorrupt)
		}
	})
	t.Run("payload/zstd longer than rawLen", func(t *testing.T) {
		// 1 MiB of zeros in a few hundred bytes: refused when 100 bytes
		// are expected.
		payload := format.Encode(nil, make([]byte, 1<<20), format.EncodingZstd)
		if payload[0] != format.EncodingZstd || len(payload) > 4096 {
			t.Fatalf("zeros did not compress: %d bytes", len(payload))
		}
		_, err := format.Decode(nil, payload, 100)
		wantErr(t, "zstd bomb", err, format.ErrCorrupt)
		_, err = format.Decode(nil, payload, 1<<20-1)
		wantErr(t, "one byte more", err, format.ErrCorrupt)
		out, err := format.Decode(nil, payload, 1<<20)
		if err != nil || len(out) != 1<<20 {
			t.Errorf("exact length: %v", err)
		}
	})
	t.Run("payload/raw metadata above 256 MiB", func(t *testing.T) {
		// The untouched zero pages of a large allocation cost no memory.
		payload := make([]byte, 1+format.MaxMetaSize+1)
		_, err := format.Decode(nil, payload, -1)
		wantErr(t, "raw payload", err, format.ErrCorrupt)
	})
}

// TestImplementationNotes pins down the lenience that docs/FORMAT.md lists
// under "Implementation notes": the reference reader matches JSON field
// names case-insensitively (encoding/json), so it accepts names that a
// strict reader rejects, and it does not see two spellings of one field as
// a duplicate (the last one wins). If this test fails because the reader
// became strict, update the notes and turn these cases into rejections.
func TestImplementationNotes(t *testing.T) {
	cfg := vectorBody(t, "config.txt")
	for name, c := range map[string]struct {
		b        string
		packSize int
	}{
		"upper-case name": {strings.Replace(cfg, `"format"`, `"FORMAT"`, 1), 16 << 20},
		"mixed-case name": {strings.Replace(cfg, `"pack_size"`, `"Pack_Size"`, 1), 16 << 20},
		"Unicode folding": {strings.Replace(cfg, `"pack_size"`, `"pack_\u017fize"`, 1), 16 << 20},
	} {
		c2, err := format.ParseConfig([]byte(c.b))
		if err != nil {
			t.Errorf("%s: %v (the reader is now stricter: update docs/FORMAT.md, Implementation notes)", name, err)
			continue
		}
		if c2.PackSize != c.packSize {
			t.Errorf("%s: pack size %d, want %d", name, c2.PackSize, c.packSize)
		}
		// What it decodes re-encodes with the exact names.
		if b, _ := json.Marshal(c2); !bytes.Contains(b, []byte(`"format":`)) || !bytes.Contains(b, []byte(`"pack_size":`)) {
			t.Errorf("%s: re-encoded as %s", name, b)
		}
	}
	// A duplicate spelled in another case is a duplicate all the same.
	if _, err := format.ParseConfig([]byte(strings.Replace(cfg, "\n}", `, "PACK_SIZE": 1048576`+"\n}", 1))); !errors.Is(err, format.ErrCorrupt) {
		t.Errorf("duplicate in two cases: %v, want ErrCorrupt", err)
	}
	// Non-minimal varints are accepted (index: one pack, 0x80 0x00 blobs).
	var id [32]byte
	b := append([]byte{1}, id[:]...)
	b = append(b, 1, 0x80, 0x00)
	if packs, err := format.UnmarshalIndex(b); err != nil || len(packs) != 1 || len(packs[0].Blobs) != 0 {
		t.Errorf("non-minimal varint: %v %+v", err, packs)
	}
}
