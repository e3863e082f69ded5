package repo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/s2"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
	"github.com/reprise-backup/reprise/storage"
)

func initCodec(t *testing.T, codec string) (storage.Storage, *Repo) {
	t.Helper()
	st := storage.NewMem()
	r, err := Init(context.Background(), st, testCred, InitOptions{
		Chunker: format.Chunker{Min: 4096, Avg: 16384, Max: 65536}, PackSize: 1 << 20,
		Argon2: &crypto.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}, Codec: codec}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st, r
}

// TestWriterUsesRepositoryCodec: the config records the codec chosen at
// init (a zstd repository stays version 1, without a codec field), the
// writer compresses chunks with it, and the loader reads them back.
func TestWriterUsesRepositoryCodec(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 1))
	var text []byte
	for len(text) < 48<<10 {
		text = fmt.Appendf(text, "INSERT INTO t VALUES (%d, '%s');\n", rng.IntN(1000), []string{"paris", "lyon", "lille"}[rng.IntN(3)])
	}
	random := make([]byte, 48<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	for _, tc := range []struct {
		codec   string
		version int
		field   string
		enc     byte
	}{
		{"", format.Version, "", format.EncodingZstd},
		{format.CodecZstd, format.Version, "", format.EncodingZstd},
		{format.CodecS2, format.Version2, format.CodecS2, format.EncodingS2},
	} {
		t.Run("codec="+tc.codec, func(t *testing.T) {
			st, r0 := initCodec(t, tc.codec)
			r0.Close()
			b, err := storage.ReadAll(ctx, st, ConfigKey)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("\n  \"version\": %d,\n", tc.version); !bytes.Contains(b, []byte(want)) {
				t.Errorf("config does not say version %d:\n%s", tc.version, b)
			}
			if got := bytes.Contains(b, []byte(`"codec"`)); got != (tc.field != "") {
				t.Errorf("codec field present = %v:\n%s", got, b)
			}
			r, err := Open(ctx, st, testCred, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Config.Version != tc.version || r.Config.Codec != tc.field {
				t.Fatalf("reopened config %+v", r.Config)
			}
			ten, err := r.Tenant(ctx, "acme", true)
			if err != nil {
				t.Fatal(err)
			}
			idx, _, err := ten.LoadIndexForWrite(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, keys := ten.Current()
			h := crypto.NewIDHasher(&keys.ChunkID)
			type added struct {
				name       string
				noCompress bool
			}
			chunks := map[crypto.ID]added{}
			for _, nc := range []bool{false, true} {
				w := ten.NewWriter(ctx, idx, WriterOptions{NoCompress: nc})
				for _, c := range []added{{"text", nc}, {"random", nc}, {"tiny", nc}} {
					data := map[string][]byte{"text": text, "random": random, "tiny": []byte("tiny")}[c.name]
					if nc {
						data = append(bytes.Clone(data), '!') // another chunk
					}
					id := h.Sum(data)
					chunks[id] = c
					if _, err := w.Add(format.KindData, id, data); err != nil {
						t.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
			}
			// Every blob's payload, as stored.
			l := ten.NewLoader(idx)
			var s Scratch
			n := 0
			idx.ForEach(func(id crypto.ID, loc Loc, p PackRef) {
				n++
				rc, err := st.Get(ctx, ten.PackKey(p.ID), int64(loc.Offset), int64(loc.SealedLen))
				if err != nil {
					t.Fatal(err)
				}
				sealed, _ := io.ReadAll(rc)
				rc.Close()
				c, _ := l.PackCipher(p)
				payload, err := s.opener.Decrypt(c, p.Gen, &ten.Handle, &format.BlobInfo{Kind: loc.Kind, ID: id, Seq: loc.Seq}, sealed)
				if err != nil {
					t.Fatal(err)
				}
				a := chunks[id]
				want := format.EncodingRaw
				if a.name == "text" && !a.noCompress {
					want = tc.enc
				}
				if payload[0] != want {
					t.Errorf("%s chunk (no-compress %v) stored with encoding %d, want %d", a.name, a.noCompress, payload[0], want)
				}
				if out, err := l.Load(ctx, id, nil, &s); err != nil || h.Sum(out) != id {
					t.Errorf("%s chunk (no-compress %v) does not load: %v", a.name, a.noCompress, err)
				}
			})
			if n != len(chunks) {
				t.Errorf("%d chunks indexed, %d added", n, len(chunks))
			}
		})
	}
}

// TestS2PayloadInVersion1 enforces docs/FORMAT.md, "Payload encoding":
// in a version 1 repository, a payload with encoding 2 is corrupt, in
// chunks as in sealed metadata objects, even if it is a valid S2 block.
func TestS2PayloadInVersion1(t *testing.T) {
	ctx := context.Background()
	_, r := initCodec(t, format.CodecS2)
	defer r.Close()
	ten, err := r.Tenant(ctx, "acme", true)
	if err != nil {
		t.Fatal(err)
	}
	idx, _, err := ten.LoadIndexForWrite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gen, keys := ten.Current()
	h := crypto.NewIDHasher(&keys.ChunkID)
	chunk := bytes.Repeat([]byte("an s2 chunk; "), 1000)
	id := h.Sum(chunk)
	w := ten.NewWriter(ctx, idx, WriterOptions{})
	if _, err := w.Add(format.KindData, id, chunk); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// An index object whose payload is an S2 block.
	objID := crypto.ID{7}
	c, err := crypto.NewObjectCipher(&keys.Metadata, &objID)
	if err != nil {
		t.Fatal(err)
	}
	ad := append(binary.BigEndian.AppendUint32([]byte(format.MagicIndex), gen), ten.Handle[:]...)
	body := format.MarshalIndex(nil)
	obj := append(bytes.Clone(ad[:8]), c.Seal(nil, 0, append([]byte{format.EncodingS2}, s2.Encode(nil, body)...), ad)...)

	l := ten.NewLoader(idx)
	var s Scratch
	for _, version := range []int{format.Version2, format.Version} {
		r.Config.Version = version
		out, err := l.Load(ctx, id, nil, &s)
		pt, oerr := ten.openSealed(format.MagicIndex, &objID, obj)
		if version == format.Version2 {
			if err != nil || !bytes.Equal(out, chunk) {
				t.Errorf("version 2: chunk: %v", err)
			}
			if oerr != nil || !bytes.Equal(pt, body) {
				t.Errorf("version 2: index: %v", oerr)
			}
			continue
		}
		if !errors.Is(err, format.ErrCorrupt) {
			t.Errorf("version 1: chunk with encoding 2: %v, want ErrCorrupt", err)
		}
		if !errors.Is(oerr, format.ErrCorrupt) {
			t.Errorf("version 1: index with encoding 2: %v, want ErrCorrupt", oerr)
		}
	}
}

func TestInitUnknownCodec(t *testing.T) {
	_, err := Init(context.Background(), storage.NewMem(), testCred, InitOptions{
		Chunker: format.Chunker{Min: 4096, Avg: 16384, Max: 65536}, PackSize: 1 << 20,
		Argon2: &crypto.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}, Codec: "lz4"}, nil)
	if err == nil {
		t.Fatal("codec lz4 accepted")
	}
}
