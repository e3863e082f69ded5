package format_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
)

var update = flag.Bool("update", false, "regenerate the test vectors in testdata/vectors (see vectors_gen_test.go)")

// vectorDir holds the golden vectors, described in its README.md and in
// docs/FORMAT.md, "Test vectors".
var vectorDir = filepath.Join("..", "..", "testdata", "vectors")

// vector is one parsed vector file: "name: value" header lines, a blank
// line, then the body ("body: hex" or "body: raw").
type vector struct {
	name string
	hdr  [][2]string
	body []byte
}

func parseVector(name string, b []byte) (*vector, error) {
	head, body, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("%s: no blank line after the header", name)
	}
	v := &vector{name: name}
	for _, line := range strings.Split(string(head), "\n") {
		k, val, ok := strings.Cut(line, ": ")
		if !ok {
			return nil, fmt.Errorf("%s: bad header line %q", name, line)
		}
		v.hdr = append(v.hdr, [2]string{k, val})
	}
	switch enc := v.all("body"); {
	case len(enc) == 1 && enc[0] == "raw":
		v.body = body
	case len(enc) == 1 && enc[0] == "hex":
		h := strings.Join(strings.Fields(string(body)), "")
		var err error
		if v.body, err = hex.DecodeString(h); err != nil {
			return nil, fmt.Errorf("%s: body: %v", name, err)
		}
	default:
		return nil, fmt.Errorf("%s: want one \"body: hex\" or \"body: raw\" line", name)
	}
	return v, nil
}

func (v *vector) all(k string) []string {
	var out []string
	for _, kv := range v.hdr {
		if kv[0] == k {
			out = append(out, kv[1])
		}
	}
	return out
}

func (v *vector) has(k string) bool { return len(v.all(k)) > 0 }

func (v *vector) one(t testing.TB, k string) string {
	t.Helper()
	a := v.all(k)
	if len(a) != 1 {
		t.Fatalf("%s: want one %q header line, have %d", v.name, k, len(a))
	}
	return a[0]
}

func (v *vector) hex(t testing.TB, k string) []byte {
	t.Helper()
	b, err := hex.DecodeString(v.one(t, k))
	if err != nil {
		t.Fatalf("%s: %s: %v", v.name, k, err)
	}
	return b
}

func (v *vector) key(t testing.TB, k string) crypto.Key {
	t.Helper()
	b := v.hex(t, k)
	if len(b) != crypto.KeySize {
		t.Fatalf("%s: %s: %d bytes", v.name, k, len(b))
	}
	return crypto.Key(b)
}

func (v *vector) id(t testing.TB, k string) crypto.ID {
	t.Helper()
	id, err := crypto.ParseID(v.one(t, k))
	if err != nil {
		t.Fatalf("%s: %s: %v", v.name, k, err)
	}
	return id
}

func (v *vector) handle(t testing.TB, k string) format.Handle {
	t.Helper()
	b := v.hex(t, k)
	if len(b) != format.TenantHandleSize {
		t.Fatalf("%s: %s: %d bytes", v.name, k, len(b))
	}
	return format.Handle(b)
}

func (v *vector) int(t testing.TB, k string) int {
	t.Helper()
	n, err := strconv.Atoi(v.one(t, k))
	if err != nil {
		t.Fatalf("%s: %s: %v", v.name, k, err)
	}
	return n
}

// outcome classifies a decoding result as the "expect" header spells it.
func outcome(err error) string {
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, crypto.ErrIncorrectKey):
		return "incorrect key"
	case errors.Is(err, crypto.ErrAuth):
		return "auth failure"
	case errors.Is(err, format.ErrVersion):
		return "unsupported version"
	case errors.Is(err, format.ErrCorrupt):
		return "corrupt"
	}
	return "unclassified error: " + err.Error()
}

// checkers open a vector with the real decoders. They report mismatching
// contents with t.Errorf and return the decoding error, which the caller
// compares with the vector's "expect" line.
var checkers = []struct {
	prefix string
	check  func(*testing.T, *vector) error
}{
	{"kdf", checkKDF},
	{"box", checkBox},
	{"wrapped_key", checkWrappedKey},
	{"stanza", checkStanza},
	{"pack", checkPack},
	{"index", checkIndex},
	{"snapshot", checkSnapshot},
	{"record", checkRecord},
	{"tree", checkTree},
	{"config", checkConfig},
	{"slot", checkSlot},
	{"envelope", checkEnvelope},
	{"payload", checkPayload},
}

func checkerFor(name string) func(*testing.T, *vector) error {
	for _, c := range checkers {
		if name == c.prefix+".txt" || strings.HasPrefix(name, c.prefix+"_") {
			return c.check
		}
	}
	return nil
}

func writeVectors(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(vectorDir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(vectorDir, "*.txt"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range generateVectors() {
		if err := os.WriteFile(filepath.Join(vectorDir, v.name), v.bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readVectors(t *testing.T) []*vector {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(vectorDir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors in %s (%v): run go test ./internal/format -run '^TestVectors$' -update", vectorDir, err)
	}
	var out []*vector
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := parseVector(filepath.Base(f), b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// TestVectors opens every golden vector with the real decoders and checks
// the documented plaintexts or the expected failure. With -update it first
// regenerates the files.
func TestVectors(t *testing.T) {
	if *update {
		writeVectors(t)
	}
	for _, v := range readVectors(t) {
		t.Run(strings.TrimSuffix(v.name, ".txt"), func(t *testing.T) {
			check := checkerFor(v.name)
			if check == nil {
				t.Fatalf("no checker for %s", v.name)
			}
			want := v.one(t, "expect")
			err := check(t, v)
			if got := outcome(err); got != want {
				t.Errorf("expect %q, got %q (err %v)", want, got, err)
			}
		})
	}
}

// TestVectorsUpToDate checks that the committed vectors are exactly what
// the generator produces: a hand edit or a generator change without
// -update fails here.
func TestVectorsUpToDate(t *testing.T) {
	gen := generateVectors()
	names := map[string]bool{}
	for _, v := range gen {
		names[v.name] = true
		b, err := os.ReadFile(filepath.Join(vectorDir, v.name))
		if err != nil {
			t.Errorf("%s: %v (run with -update)", v.name, err)
			continue
		}
		if !bytes.Equal(b, v.bytes()) {
			t.Errorf("%s differs from the generator's output (run go test ./internal/format -run '^TestVectors$' -update)", v.name)
		}
	}
	files, _ := filepath.Glob(filepath.Join(vectorDir, "*.txt"))
	for _, f := range files {
		if !names[filepath.Base(f)] {
			t.Errorf("%s is not produced by the generator", f)
		}
	}
}

func eqBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
}

func checkKDF(t *testing.T, v *vector) error {
	rk := v.key(t, "repository key")
	repoKeys := crypto.NewRepoKeys(&rk)
	eqBytes(t, "names key", repoKeys.Names[:], v.hex(t, "names key"))
	eqBytes(t, "repository metadata key", repoKeys.Metadata[:], v.hex(t, "repository metadata key"))
	eqBytes(t, "slot auth key", repoKeys.SlotAuth[:], v.hex(t, "slot auth key"))
	eqBytes(t, "envelope auth key", repoKeys.EnvelopeAuth[:], v.hex(t, "envelope auth key"))

	// Tenant handle, as internal/repo's HandleOf computes it.
	hid := crypto.NewIDHasher(&repoKeys.Names).Sum([]byte(v.one(t, "tenant name")))
	eqBytes(t, "tenant handle", hid[:format.TenantHandleSize], v.hex(t, "tenant handle"))

	root := v.key(t, "tenant root key")
	tk := crypto.NewTenantKeys(&root)
	eqBytes(t, "chunk id key", tk.ChunkID[:], v.hex(t, "chunk id key"))
	eqBytes(t, "data key", tk.Data[:], v.hex(t, "data key"))
	eqBytes(t, "metadata key", tk.Metadata[:], v.hex(t, "metadata key"))
	eqBytes(t, "gear key", tk.Gear[:], v.hex(t, "gear key"))
	g := chunk.NewGear(tk.Gear[:])
	for _, i := range []int{0, 1, 255} {
		k := fmt.Sprintf("gear[%d]", i)
		if got := fmt.Sprintf("%016x", g[i]); got != v.one(t, k) {
			t.Errorf("%s = %s, want %s", k, got, v.one(t, k))
		}
	}

	cid := crypto.NewIDHasher(&tk.ChunkID).Sum(v.hex(t, "chunk"))
	eqBytes(t, "chunk id", cid[:], v.hex(t, "chunk id"))

	oid := v.id(t, "object id")
	ok := crypto.Derive(crypto.ContextObjectKey, tk.Data[:], oid[:])
	eqBytes(t, "object key", ok[:], v.hex(t, "object key"))
	c, err := crypto.NewObjectCipher(&tk.Data, &oid)
	if err != nil {
		return err
	}
	for _, s := range []struct {
		seq uint64
		k   string
	}{{0, "seal seq 0 of empty message"}, {1, "seal seq 1 of empty message"}, {crypto.LastSeq, "seal seq last of empty message"}} {
		eqBytes(t, s.k, c.Seal(nil, s.seq, nil, nil), v.hex(t, s.k))
		if _, err := c.Open(nil, s.seq, v.hex(t, s.k), nil); err != nil {
			t.Errorf("%s: Open: %v", s.k, err)
		}
	}

	p := crypto.Argon2Params{Time: uint32(v.int(t, "argon2id t")), MemoryKiB: uint32(v.int(t, "argon2id m")),
		Threads: uint8(v.int(t, "argon2id p")), Salt: v.hex(t, "argon2id salt")}
	pk, err := crypto.PassphraseKey([]byte(v.one(t, "passphrase")), &p)
	if err != nil {
		return err
	}
	eqBytes(t, "passphrase key", pk[:], v.hex(t, "passphrase key"))
	return nil
}

func checkBox(t *testing.T, v *vector) error {
	k := v.key(t, "key")
	pt, err := crypto.OpenBox(&k, v.body, v.hex(t, "ad"))
	if err != nil {
		return err
	}
	eqBytes(t, "plaintext", pt, v.hex(t, "plaintext"))
	return nil
}

func checkWrappedKey(t *testing.T, v *vector) error {
	kek := v.key(t, "kek")
	k, err := crypto.UnwrapKey(&kek, v.body, v.hex(t, "ad"))
	if err != nil {
		return err
	}
	eqBytes(t, "key", k[:], v.hex(t, "key"))
	return nil
}

func checkStanza(t *testing.T, v *vector) error {
	priv, err := crypto.ParseSlotPrivateKey(v.hex(t, "slot private key"))
	if err != nil {
		t.Fatal(err)
	}
	eqBytes(t, "slot public key", priv.Public(), v.hex(t, "slot public key"))
	eqBytes(t, "ephemeral public key", v.body[:crypto.PublicKeySize], v.hex(t, "ephemeral public key"))
	k, err := priv.Unwrap(v.body, v.hex(t, "ad"))
	if err != nil {
		return err
	}
	eqBytes(t, "key", k[:], v.hex(t, "key"))
	return nil
}

type vecBlob struct {
	kind              byte
	id                crypto.ID
	sealedLen, rawLen uint32
}

func parseBlobLine(t testing.TB, s string) vecBlob {
	t.Helper()
	f := strings.Fields(s)
	if len(f) < 4 {
		t.Fatalf("bad blob line %q", s)
	}
	var b vecBlob
	k, err1 := strconv.ParseUint(f[0], 10, 8)
	id, err2 := crypto.ParseID(f[1])
	sl, err3 := strconv.ParseUint(f[2], 10, 32)
	rl, err4 := strconv.ParseUint(f[3], 10, 32)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatalf("bad blob line %q: %v", s, err)
	}
	b.kind, b.id, b.sealedLen, b.rawLen = byte(k), id, uint32(sl), uint32(rl)
	return b
}

func checkPack(t *testing.T, v *vector) error {
	dataKey := v.key(t, "data key")
	cidKey := v.key(t, "chunk id key")
	h := v.handle(t, "tenant handle")
	packID := v.id(t, "pack id")
	wantGen := uint32(v.int(t, "gen"))
	var want []vecBlob
	for _, s := range v.all("blob") {
		want = append(want, parseBlobLine(t, s))
	}
	plaintexts := v.all("plaintext")
	pack := v.body

	if len(pack) < format.TrailerSize {
		return fmt.Errorf("%w: pack shorter than its trailer", format.ErrCorrupt)
	}
	gen, hlen, err := format.ParseTrailer(pack[len(pack)-format.TrailerSize:])
	if err != nil {
		return err
	}
	if gen != wantGen {
		t.Errorf("trailer generation %d, want %d", gen, wantGen)
	}
	if hlen > len(pack)-format.TrailerSize {
		return fmt.Errorf("%w: header longer than the pack", format.ErrCorrupt)
	}
	hdr := pack[len(pack)-format.TrailerSize-hlen : len(pack)-format.TrailerSize]
	blobs, err := format.OpenPackHeader(&dataKey, &packID, gen, &h, hdr, int64(len(pack)))
	if err != nil {
		return err
	}
	if len(blobs) != len(want) {
		t.Fatalf("header lists %d blobs, want %d", len(blobs), len(want))
	}
	var off uint32
	for i, b := range blobs {
		w := want[i]
		if b.Kind != w.kind || b.ID != w.id || b.SealedLen != w.sealedLen || b.RawLen != w.rawLen ||
			b.Seq != uint32(i) || b.Offset != off {
			t.Errorf("blob %d = %+v, want %+v at offset %d", i, b, w, off)
		}
		off += b.SealedLen
	}
	c, err := crypto.NewObjectCipher(&dataKey, &packID)
	if err != nil {
		t.Fatal(err)
	}
	hasher := crypto.NewIDHasher(&cidKey)
	var o format.BlobOpener
	var first error
	failed := -1
	for i, b := range blobs {
		pt, err := o.Open(nil, c, gen, &h, &b, pack[b.Offset:b.Offset+b.SealedLen])
		if err != nil {
			if first == nil {
				first, failed = err, i
			}
			continue
		}
		eqBytes(t, fmt.Sprintf("blob %d plaintext", i), pt, mustHex(plaintexts[i]))
		if hasher.Sum(pt) != b.ID {
			t.Errorf("blob %d: plaintext does not hash to its chunk ID", i)
		}
	}
	if v.has("failing blob") {
		if n := v.int(t, "failing blob"); failed != n {
			t.Errorf("first failing blob %d, want %d", failed, n)
		}
	}
	return first
}

// openSealed opens an index or snapshot vector.
func openSealed(t *testing.T, v *vector, magic string) (crypto.ID, []byte, error) {
	metaKey := v.key(t, "metadata key")
	h := v.handle(t, "tenant handle")
	id := v.id(t, "object id")
	gen, err := format.SealedGen(magic, v.body)
	if err != nil {
		return id, nil, err
	}
	if want := uint32(v.int(t, "gen")); gen != want && outcome(nil) == v.one(t, "expect") {
		t.Errorf("generation %d, want %d", gen, want)
	}
	pt, err := format.OpenObject(magic, &metaKey, &h, &id, v.body)
	return id, pt, err
}

func checkIndex(t *testing.T, v *vector) error {
	_, pt, err := openSealed(t, v, format.MagicIndex)
	if err != nil {
		return err
	}
	eqBytes(t, "plaintext", pt, v.hex(t, "plaintext"))
	packs, err := format.UnmarshalIndex(pt)
	if err != nil {
		return err
	}
	// Expected entries from the header: each "pack" line is followed by
	// its "blob" lines.
	var want []format.PackEntry
	for _, kv := range v.hdr {
		switch kv[0] {
		case "pack":
			f := strings.Fields(kv[1])
			id, err := crypto.ParseID(f[0])
			if err != nil {
				t.Fatal(err)
			}
			g, _ := strconv.Atoi(f[1])
			want = append(want, format.PackEntry{ID: id, Gen: uint32(g)})
		case "blob":
			b := parseBlobLine(t, kv[1])
			p := &want[len(want)-1]
			var off uint32
			for _, x := range p.Blobs {
				off += x.SealedLen
			}
			p.Blobs = append(p.Blobs, format.BlobInfo{Kind: b.kind, ID: b.id, Seq: uint32(len(p.Blobs)),
				Offset: off, SealedLen: b.sealedLen, RawLen: b.rawLen})
		}
	}
	if !slices.EqualFunc(packs, want, func(a, b format.PackEntry) bool {
		return a.ID == b.ID && a.Gen == b.Gen && slices.Equal(a.Blobs, b.Blobs)
	}) {
		t.Errorf("index = %+v\nwant %+v", packs, want)
	}
	eqBytes(t, "MarshalIndex(UnmarshalIndex(plaintext))", format.MarshalIndex(packs), pt)
	return nil
}

func checkSnapshot(t *testing.T, v *vector) error {
	id, pt, err := openSealed(t, v, format.MagicSnapshot)
	if err != nil {
		return err
	}
	eqBytes(t, "plaintext", pt, []byte(v.one(t, "plaintext")))
	s, err := format.ParseSnapshot(pt, &id)
	if err != nil {
		return err
	}
	b, err := format.MarshalSnapshot(s)
	if err != nil {
		t.Fatal(err)
	}
	eqBytes(t, "MarshalSnapshot(ParseSnapshot(plaintext))", b, pt)
	return nil
}

func checkRecord(t *testing.T, v *vector) error {
	id, pt, err := openSealed(t, v, format.MagicRecord)
	if err != nil {
		return err
	}
	eqBytes(t, "plaintext", pt, []byte(v.one(t, "plaintext")))
	r, err := format.ParseRecord(pt, &id)
	if err != nil {
		return err
	}
	b, err := format.MarshalRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	eqBytes(t, "MarshalRecord(ParseRecord(plaintext))", b, pt)
	return nil
}

func nodeToVec(n *format.Node) vecNode {
	out := vecNode{Path: n.Path, Type: string(rune(n.Type)), Mode: fmt.Sprintf("%04o", n.Mode), MTime: n.MTime, Size: n.Size, Target: n.Target}
	for _, c := range n.Chunks {
		out.Chunks = append(out.Chunks, vecChunk{ID: c.ID.String(), Len: c.Len})
	}
	return out
}

func checkTree(t *testing.T, v *vector) error {
	tr := format.NewTreeReader(bytes.NewReader(v.body))
	var nodes []format.Node
	var got []string
	for {
		n, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		j, _ := json.Marshal(nodeToVec(n))
		got = append(got, string(j))
		c := *n
		c.Chunks = slices.Clone(n.Chunks)
		nodes = append(nodes, c)
	}
	if want := v.all("node"); !slices.Equal(got, want) {
		t.Errorf("nodes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var buf bytes.Buffer
	w := format.NewTreeWriter(&buf)
	for i := range nodes {
		if err := w.Write(&nodes[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	eqBytes(t, "TreeWriter output", buf.Bytes(), v.body)
	return nil
}

func marshalIndent(t *testing.T, v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkConfig(t *testing.T, v *vector) error {
	c, err := format.ParseConfig(v.body)
	if err != nil {
		return err
	}
	if id := v.id(t, "repository id"); c.ID != id {
		t.Errorf("id %s, want %s", c.ID, id)
	}
	if v.has("codec") && c.Codec != v.one(t, "codec") {
		t.Errorf("codec %q, want %q", c.Codec, v.one(t, "codec"))
	}
	if v.has("chunk encoding") && int(c.ChunkEncoding()) != v.int(t, "chunk encoding") {
		t.Errorf("chunk encoding %d, want %d", c.ChunkEncoding(), v.int(t, "chunk encoding"))
	}
	eqBytes(t, "re-encoded config", marshalIndent(t, c), v.body)
	return nil
}

// checkSlot reads a key slot as internal/repo's Open does: parse it, open
// its secret with the passphrase, check that the private key matches the
// public key, then verify the slot's MAC under the repository key the
// reader holds ("repository key": the one in slot.txt's secret). A slot
// whose MAC does not verify is refused (an auth failure).
func checkSlot(t *testing.T, v *vector) error {
	s, err := format.ParseSlot(v.body)
	if err != nil {
		return err
	}
	repoID := v.id(t, "repository id")
	ad := format.SlotAD(&repoID, &s.ID, "secret")
	eqBytes(t, "secret ad", ad, v.hex(t, "secret ad"))
	sk, err := crypto.PassphraseKey([]byte(v.one(t, "passphrase")), s.Argon2)
	if err != nil {
		return err
	}
	eqBytes(t, "slot key", sk[:], v.hex(t, "slot key"))
	secret, err := crypto.OpenBox(&sk, s.Secret, ad)
	if err != nil {
		return err
	}
	eqBytes(t, "secret", secret, v.hex(t, "secret"))
	if len(secret) != format.SlotSecretSize {
		return fmt.Errorf("%w: slot secret of %d bytes", format.ErrCorrupt, len(secret))
	}
	eqBytes(t, "slot private key", secret[:crypto.KeySize], v.hex(t, "slot private key"))
	priv, err := crypto.ParseSlotPrivateKey(secret[:crypto.KeySize])
	if err != nil {
		return err
	}
	eqBytes(t, "slot public key", priv.Public(), v.hex(t, "slot public key"))
	if !crypto.ConstantTimeEqual(priv.Public(), s.PublicKey) {
		return fmt.Errorf("%w: slot public key does not match its private key", crypto.ErrAuth)
	}
	sealedRepoKey := crypto.Key(secret[crypto.KeySize:])
	rk := v.key(t, "repository key")
	if v.has("forged repository key") {
		// The planted slot is self-consistent: it holds the forged key,
		// and its MAC verifies under that key.
		forged := v.key(t, "forged repository key")
		eqBytes(t, "repository key in the secret", sealedRepoKey[:], forged[:])
		fk := crypto.NewRepoKeys(&forged)
		if !crypto.ConstantTimeEqual(format.SlotMAC(&fk.SlotAuth, &repoID, s), s.MAC) {
			t.Errorf("the planted slot's MAC does not verify under the forged repository key")
		}
	} else {
		eqBytes(t, "repository key in the secret", sealedRepoKey[:], rk[:])
	}
	keys := crypto.NewRepoKeys(&rk)
	eqBytes(t, "slot auth key", keys.SlotAuth[:], v.hex(t, "slot auth key"))
	want := format.SlotMAC(&keys.SlotAuth, &repoID, s)
	eqBytes(t, "expected mac", want, v.hex(t, "expected mac"))
	eqBytes(t, "re-encoded slot", marshalIndent(t, s), v.body)
	if !crypto.ConstantTimeEqual(want, s.MAC) {
		return fmt.Errorf("%w: key slot MAC does not verify", crypto.ErrAuth)
	}
	return nil
}

// checkEnvelope reads a tenant envelope as internal/repo does: check its
// object name, open its name box, then for every generation unwrap the root
// key with the slot and verify the generation's MAC under the envelope auth
// key. A generation whose MAC does not verify is an auth failure.
func checkEnvelope(t *testing.T, v *vector) error {
	h := v.handle(t, "tenant handle")
	checkEnvelopeName(t, v.one(t, "object name"), h)
	e, err := format.ParseEnvelope(v.body)
	if err != nil {
		return err
	}
	repoID := v.id(t, "repository id")
	rk := v.key(t, "repository key")
	keys := crypto.NewRepoKeys(&rk)
	eqBytes(t, "repository metadata key", keys.Metadata[:], v.hex(t, "repository metadata key"))
	eqBytes(t, "envelope auth key", keys.EnvelopeAuth[:], v.hex(t, "envelope auth key"))
	name, err := crypto.OpenBox(&keys.Metadata, e.Name, format.NameAD(&repoID, &h))
	if err != nil {
		return err
	}
	eqBytes(t, "tenant name", name, []byte(v.one(t, "tenant name")))
	hid := crypto.NewIDHasher(&keys.Names).Sum(name)
	eqBytes(t, "handle of the tenant name", hid[:format.TenantHandleSize], h[:])
	slotID := v.id(t, "slot id")
	priv, err := crypto.ParseSlotPrivateKey(v.hex(t, "slot private key"))
	if err != nil {
		t.Fatal(err)
	}
	eqBytes(t, "re-encoded envelope", marshalIndent(t, e), v.body)
	for _, g := range e.Generations {
		st, ok := g.Keys[slotID.String()]
		if !ok {
			t.Fatalf("generation %d has no key for slot %s", g.Gen, slotID)
		}
		root, err := priv.Unwrap(st, format.TenantKeyAD(&repoID, &h, g.Gen, &slotID))
		if err != nil {
			return err
		}
		eqBytes(t, fmt.Sprintf("root key %d", g.Gen), root[:], v.hex(t, fmt.Sprintf("root key %d", g.Gen)))
		want := format.GenerationMAC(&keys.EnvelopeAuth, &repoID, &h, g.Gen, &root)
		eqBytes(t, fmt.Sprintf("expected mac %d", g.Gen), want, v.hex(t, fmt.Sprintf("expected mac %d", g.Gen)))
		if !crypto.ConstantTimeEqual(want, g.MAC) {
			if v.has("failing generation") && int(g.Gen) != v.int(t, "failing generation") {
				t.Errorf("generation %d fails, want generation %d", g.Gen, v.int(t, "failing generation"))
			}
			return fmt.Errorf("generation %d: %w: root key MAC does not verify", g.Gen, crypto.ErrAuth)
		}
	}
	return nil
}

// checkEnvelopeName checks an envelope's object name as docs/FORMAT.md
// spells it: "tenants/" || handle in hex || "/" || version, 10 decimal
// digits, from 0000000001.
func checkEnvelopeName(t *testing.T, name string, h format.Handle) {
	t.Helper()
	rest, ok := strings.CutPrefix(name, "tenants/"+h.String()+"/")
	n, err := strconv.ParseUint(rest, 10, 64)
	if !ok || err != nil || len(rest) != 10 || n < 1 {
		t.Errorf("envelope object name %q: want tenants/%s/<10-digit version from 0000000001>", name, h)
	}
}

func checkPayload(t *testing.T, v *vector) error {
	rawLen := -1
	if v.has("raw length") {
		rawLen = v.int(t, "raw length")
	}
	out, err := format.Decode(nil, v.body, rawLen)
	if err != nil {
		return err
	}
	eqBytes(t, "plaintext", out, v.hex(t, "plaintext"))
	return nil
}
