package format

import (
	"bytes"
	"errors"
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
