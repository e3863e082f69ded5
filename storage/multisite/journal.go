package multisite

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/reprise-backup/reprise/storage"
)

// The missed-write journal.
//
// When a site misses a put or a delete that other sites applied, each of
// those other sites receives a small object
//
//	multisite/missed/<site name>/<time in hex>-<random hex>
//
// listing, one per line after a header, the operation and the key the
// named site missed. CatchUp reads them from every site, brings the named
// site in line with the others, and deletes them.

const journalHeader = "reprise multisite journal 1"

// entry is one line of a journal: the site missed op on key.
type entry struct {
	op, key string
}

// journal is one journal object.
type journal struct {
	site    string // the site that missed the entries
	id      string // the last key segment
	entries []entry
	holders []int // sites holding the journal object (when read back)
}

func (j *journal) key() string { return journalPrefix + j.site + "/" + j.id }

func newJournalID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return fmt.Sprintf("%016x-%s", time.Now().UnixNano(), hex.EncodeToString(b[:]))
}

func (j *journal) encode() []byte {
	var b bytes.Buffer
	b.WriteString(journalHeader + "\n")
	for _, e := range j.entries {
		fmt.Fprintf(&b, "%s %s\n", e.op, e.key)
	}
	return b.Bytes()
}

func parseJournal(b []byte) ([]entry, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), 4096)
	if !sc.Scan() || sc.Text() != journalHeader {
		return nil, errors.New("not a multisite journal (bad header)")
	}
	var out []entry
	for sc.Scan() {
		op, key, ok := strings.Cut(sc.Text(), " ")
		if !ok || op == "" || !storage.ValidKey(key) {
			return nil, fmt.Errorf("bad journal line %q", sc.Text())
		}
		out = append(out, entry{op: op, key: key})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// writeJournal stores j (under a new id if it has none) on the sites
// holders, at once, and returns on how many it succeeded.
func (s *Store) writeJournal(ctx context.Context, j *journal, holders []int) int {
	if j.id == "" {
		j.id = newJournalID()
	}
	b := j.encode()
	res := s.fanOut(ctx, holders, nil, false, func(ctx context.Context, i int) error {
		return s.sites[i].st.Put(ctx, j.key(), bytes.NewReader(b), int64(len(b)), nil)
	})
	n := 0
	for _, i := range holders {
		if res[i].err == nil {
			n++
		} else {
			s.log.Warn("multisite: could not write a journal object", "site", s.sites[i].name, "journal", j.key(), "error", res[i].err)
		}
	}
	s.count(func(st *Stats) {
		st.JournalWrites += int64(n)
		st.JournalErrors += int64(len(holders) - n)
	})
	return n
}

// readJournals lists and reads the journal objects of every site. A
// journal held by several sites is read once (from the first that
// serves it) and knows all its holders. It returns the journals in key
// order, the journals that could not be read or parsed (key -> error),
// and each site's listing error.
func (s *Store) readJournals(ctx context.Context) ([]*journal, map[string]error, []error) {
	holders := map[string][]int{}
	listErrs := make([]error, len(s.sites))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, st := range s.sites {
		wg.Go(func() {
			var keys []string
			err := st.st.List(ctx, journalPrefix, func(info storage.Info) error {
				keys = append(keys, info.Key)
				return nil
			})
			s.observe(ctx, i, err, -1)
			mu.Lock()
			defer mu.Unlock()
			listErrs[i] = err
			for _, k := range keys {
				holders[k] = append(holders[k], i)
			}
		})
	}
	wg.Wait()
	keys := make([]string, 0, len(holders))
	for k := range holders {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	found := make([]*journal, len(keys))
	errs := make([]error, len(keys))
	parallel(len(keys), func(n int) {
		k := keys[n]
		rest := strings.TrimPrefix(k, journalPrefix)
		site, id, ok := strings.Cut(rest, "/")
		if !ok || strings.Contains(id, "/") {
			errs[n] = errors.New("unexpected journal key")
			return
		}
		h := holders[k]
		slices.Sort(h)
		var b []byte
		var err error
		for _, i := range h {
			if b, err = storage.ReadAll(ctx, s.sites[i].st, k); err == nil {
				break
			}
		}
		if err != nil {
			errs[n] = err
			return
		}
		entries, err := parseJournal(b)
		if err != nil {
			errs[n] = err
			return
		}
		found[n] = &journal{site: site, id: id, entries: entries, holders: h}
	})
	var out []*journal
	bad := map[string]error{}
	for n, j := range found {
		if j != nil {
			out = append(out, j)
		} else {
			bad[keys[n]] = errs[n]
		}
	}
	return out, bad, listErrs
}

// parallel calls fn(0), ..., fn(n-1), catchUpWorkers at a time.
func parallel(n int, fn func(i int)) {
	sem := make(chan struct{}, catchUpWorkers)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}
