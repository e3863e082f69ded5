package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/internal/format"
)

// A chunk stored under an ID its plaintext does not hash to (a writer
// holding the tenant's keys, buggy or hostile) authenticates, since the
// ID it was sealed with is the one asked for, and is then refused by the
// ID check: Load, Open and OpenInPlace all fail with ErrChunkMismatch
// wrapped in a ChunkError naming the pack.
func TestChunkMismatch(t *testing.T) {
	ctx := context.Background()
	st, r := initCodec(t, "")
	defer r.Close()
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
	rng := rand.New(rand.NewPCG(3, 3))
	text := bytes.Repeat([]byte("INSERT INTO t VALUES (1, 'paris');\n"), 1000)
	random := make([]byte, 32<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	// Each chunk is stored under the ID of another content.
	wrong := map[string]crypto.ID{"compressed": h.Sum([]byte("not this text")), "raw": h.Sum([]byte("not these bytes"))}
	w := ten.NewWriter(ctx, idx, WriterOptions{})
	if _, err := w.Add(format.KindData, wrong["compressed"], text); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add(format.KindData, wrong["raw"], random); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	l := ten.NewLoader(idx)
	var s Scratch
	check := func(what string, err error) {
		t.Helper()
		var ce *ChunkError
		if !errors.Is(err, ErrChunkMismatch) || !errors.As(err, &ce) || ce.Object == "" {
			t.Errorf("%s: got %v, want a ChunkError naming the pack, wrapping ErrChunkMismatch", what, err)
		}
	}
	for name, id := range wrong {
		loc, p, ok := idx.Lookup(id)
		if !ok {
			t.Fatalf("%s chunk not indexed", name)
		}
		out, err := l.Load(ctx, id, nil, &s)
		check(name+": Load", err)
		if len(out) != 0 {
			t.Errorf("%s: Load returned %d bytes with its error", name, len(out))
		}
		rc, err := st.Get(ctx, ten.PackKey(p.ID), int64(loc.Offset), int64(loc.SealedLen))
		if err != nil {
			t.Fatal(err)
		}
		sealed, _ := io.ReadAll(rc)
		rc.Close()
		_, err = l.Open(nil, id, loc, p, bytes.Clone(sealed), &s)
		check(name+": Open", err)
		if name == "raw" {
			if loc.SealedLen != RawSealedLen(uint32(len(random))) {
				t.Fatalf("random chunk not stored raw: %d sealed bytes for %d", loc.SealedLen, len(random))
			}
			_, err = l.OpenInPlace(id, loc, p, sealed, &s)
			check(name+": OpenInPlace", err)
		}
	}
}
