package format

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

func TestDecodeBoundsOutput(t *testing.T) {
	big := make([]byte, 32<<20) // zeros: compresses to almost nothing
	payload := Encode(nil, big, true)
	if payload[0] != EncodingZstd || len(payload) > 1<<20 {
		t.Fatalf("zeros did not compress: %d bytes", len(payload))
	}
	// Claimed length far below what the payload holds: refused without
	// inflating it all.
	if _, err := Decode(nil, payload, 1000); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("oversized payload: %v, want ErrCorrupt", err)
	}
	out, err := Decode(make([]byte, 3, 8), payload, len(big))
	if err != nil || len(out) != 3+len(big) || !bytes.Equal(out[3:], big) {
		t.Fatalf("exact length: %v %d", err, len(out))
	}
	if _, err := Decode(nil, payload, len(big)+1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short payload: %v, want ErrCorrupt", err)
	}
	raw := Encode(nil, []byte("x"), true)
	if raw[0] != EncodingRaw {
		t.Fatal("tiny input compressed")
	}
}

// EncodeFramed stores incompressible chunks from the caller's buffer (no
// copy) and compresses the others; both decode back to the chunk.
func TestEncodeFramed(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	random := make([]byte, 256<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	text := bytes.Repeat([]byte("INSERT INTO t VALUES (1, 'reprise');\n"), 4096)
	for _, tc := range []struct {
		name     string
		chunk    []byte
		compress bool
		inPlace  bool
	}{
		{"random", random, true, true},
		{"text", text, true, false},
		{"text, no compression", text, false, true},
		{"tiny", []byte("ab"), true, true},
	} {
		framed := append([]byte{0xff}, tc.chunk...)
		out := EncodeFramed(nil, framed, tc.compress)
		if got := &out[0] == &framed[0]; got != tc.inPlace {
			t.Errorf("%s: payload in place = %v, want %v", tc.name, got, tc.inPlace)
		}
		dec, err := Decode(nil, out, len(tc.chunk))
		if err != nil || !bytes.Equal(dec, tc.chunk) {
			t.Errorf("%s: decodes to %d bytes (err %v)", tc.name, len(dec), err)
		}
		if want := Encode(nil, tc.chunk, tc.compress); !bytes.Equal(out, want) {
			t.Errorf("%s: EncodeFramed and Encode disagree", tc.name)
		}
	}
}
