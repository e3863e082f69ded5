package restore

import "testing"

func TestClassSizes(t *testing.T) {
	seen := map[int]int64{}
	for n := int64(1); n < 1<<26; n = n*9/8 + 1 {
		s := classSize(n)
		if s < n || (n > minClassSize && s > n+n/4+1) {
			t.Fatalf("classSize(%d) = %d", n, s)
		}
		if classSize(s) != s {
			t.Fatalf("classSize(%d) = %d not a fixed point", n, s)
		}
		i := classIndex(s)
		if o, ok := seen[i]; ok && o != s {
			t.Fatalf("class %d: %d and %d", i, o, s)
		}
		seen[i] = s
	}
}
