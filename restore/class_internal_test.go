package restore

import "testing"

func TestClassSizes(t *testing.T) {
	for n := int64(1); n < 1<<26; n = n*9/8 + 1 {
		s := classSize(n)
		if s < n || (n > 1<<minClass && s >= 2*n) {
			t.Fatalf("classSize(%d) = %d", n, s)
		}
		if classSize(s) != s {
			t.Fatalf("classSize(%d) = %d is not a class size", n, s)
		}
	}
}
