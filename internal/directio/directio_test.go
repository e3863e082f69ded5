package directio

import "testing"

func TestBuf(t *testing.T) {
	for _, n := range []int{1, Align - 1, Align, 1 << 20} {
		b := Buf(n)
		if len(b) != 0 || cap(b) != n || !Aligned(b[:1]) {
			t.Errorf("Buf(%d): len %d cap %d aligned %v", n, len(b), cap(b), Aligned(b[:1]))
		}
	}
	if Aligned(Buf(8192)[1:2]) {
		t.Error("an offset of one byte reported aligned")
	}
}
