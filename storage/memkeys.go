package storage

import "strings"

// keyList holds a Mem's keys in byte order, as a skip list: listing a
// prefix costs O(log n) plus the keys listed, where scanning the object
// map and sorting cost O(n log n) per List — which weighed on tests and
// benchmarks of many tenants (10% of the CPU of a 1000-tenant restore
// benchmark). Not safe for concurrent use: Mem's lock guards it.
type keyList struct {
	head  keyNode
	level int    // levels in use
	rng   uint64 // xorshift state for node levels; deterministic
}

type keyNode struct {
	key  string
	next []*keyNode
}

// maxKeyLevel suits up to 4^16 keys (each level holds a quarter of the
// keys of the one below).
const maxKeyLevel = 16

func newKeyList() *keyList {
	l := &keyList{level: 1, rng: 0x9e3779b97f4a7c15}
	l.head.next = make([]*keyNode, maxKeyLevel)
	return l
}

func (l *keyList) randomLevel() int {
	x := l.rng
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	l.rng = x
	lvl := 1
	for lvl < maxKeyLevel && x&3 == 0 {
		lvl++
		x >>= 2
	}
	return lvl
}

// path fills prev with the last node before key at each level and
// returns the first node at or after key.
func (l *keyList) path(key string, prev *[maxKeyLevel]*keyNode) *keyNode {
	n := &l.head
	for i := l.level - 1; i >= 0; i-- {
		for n.next[i] != nil && n.next[i].key < key {
			n = n.next[i]
		}
		if prev != nil {
			prev[i] = n
		}
	}
	return n.next[0]
}

// insert adds key; it must not be present.
func (l *keyList) insert(key string) {
	var prev [maxKeyLevel]*keyNode
	l.path(key, &prev)
	lvl := l.randomLevel()
	for i := l.level; i < lvl; i++ {
		prev[i] = &l.head
	}
	l.level = max(l.level, lvl)
	n := &keyNode{key: key, next: make([]*keyNode, lvl)}
	for i := range lvl {
		n.next[i] = prev[i].next[i]
		prev[i].next[i] = n
	}
}

// remove deletes key if present.
func (l *keyList) remove(key string) {
	var prev [maxKeyLevel]*keyNode
	n := l.path(key, &prev)
	if n == nil || n.key != key {
		return
	}
	for i := range n.next {
		prev[i].next[i] = n.next[i]
	}
	for l.level > 1 && l.head.next[l.level-1] == nil {
		l.level--
	}
}

// prefix calls fn for every key starting with p, in order.
func (l *keyList) prefix(p string, fn func(key string)) {
	for n := l.path(p, nil); n != nil && strings.HasPrefix(n.key, p); n = n.next[0] {
		fn(n.key)
	}
}
