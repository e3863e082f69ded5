package multisite

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/reprise-backup/reprise/storage"
)

// List implements [storage.Storage.List]: the union of the sites'
// listings, merged in lexical order, each key once (with the Info of the
// first site in configured order that holds it). Copies on sites known
// (to this Store) to have missed the key's deletion are left out. A site
// failing to list,
// at once or midway, is left out and recorded; List fails only when no
// site completes. The journal keys under ReservedPrefix are hidden unless
// prefix starts with ReservedPrefix.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("multisite: list %q: %w", prefix, err)
	}
	if !storage.ValidPrefix(prefix) {
		return fmt.Errorf("multisite: list %q: %w", prefix, storage.ErrInvalidKey)
	}
	hide := !strings.HasPrefix(prefix, ReservedPrefix)
	failed, err := s.merge(ctx, prefix, func(key string, infos []*storage.Info, _ []bool) error {
		if hide && strings.HasPrefix(key, ReservedPrefix) {
			return nil
		}
		for i, in := range infos {
			if in != nil && !s.deleted(i, key) {
				return fn(*in)
			}
		}
		return nil // held only by sites that missed its deletion
	})
	if err != nil {
		return err // the callback's, as it is
	}
	return s.listErr(ctx, prefix, failed)
}

// listErr turns the sites' listing failures into List's error: nil when
// at least one site completed.
func (s *Store) listErr(ctx context.Context, prefix string, failed []error) error {
	var errs []error
	for i, err := range failed {
		if err != nil {
			errs = append(errs, s.siteErr(i, err))
		}
	}
	switch {
	case len(errs) == 0:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("multisite: list %q: %w", prefix, ctx.Err())
	case len(errs) == len(s.sites):
		return &multiError{msg: fmt.Sprintf("multisite: list %q: no site could list", prefix), errs: errs}
	}
	s.count(func(st *Stats) { st.PartialLists++ })
	s.log.Warn("multisite: listing went on without failing sites", "prefix", prefix, "error", &multiError{msg: "failed", errs: errs})
	return nil
}

// listSource is one site's listing, pulled through a channel.
type listSource struct {
	ch     chan storage.Info
	err    error // valid once ch is closed
	head   storage.Info
	ok     bool // head is valid
	failed bool // the listing ended with an error
}

// merge lists prefix on every site at once and calls fn for each distinct
// key, in lexical order, with the Info of each site holding it (nil for
// the others). known[i] is false for a site whose listing failed before
// reaching the key: whether it holds the key is unknown. merge returns
// each site's listing error (nil entries for the sites that completed)
// and, separately, the error of fn, which stops the merge.
func (s *Store) merge(ctx context.Context, prefix string, fn func(key string, infos []*storage.Info, known []bool) error) ([]error, error) {
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	srcs := make([]*listSource, len(s.sites))
	for i, st := range s.sites {
		src := &listSource{ch: make(chan storage.Info, 64)}
		srcs[i] = src
		wg.Go(func() {
			defer close(src.ch)
			src.err = st.st.List(lctx, prefix, func(info storage.Info) error {
				select {
				case src.ch <- info:
					return nil
				case <-lctx.Done():
					return lctx.Err()
				}
			})
			s.observe(lctx, i, src.err, -1) // a listing's duration is no latency
		})
	}
	advance := func(src *listSource) {
		info, ok := <-src.ch
		src.head, src.ok = info, ok
		if !ok && src.err != nil {
			src.failed = true
		}
	}
	for _, src := range srcs {
		advance(src)
	}
	infos := make([]*storage.Info, len(srcs))
	known := make([]bool, len(srcs))
	for {
		var key string
		found := false
		for _, src := range srcs {
			if src.ok && (!found || src.head.Key < key) {
				key, found = src.head.Key, true
			}
		}
		if !found {
			break
		}
		for i, src := range srcs {
			infos[i], known[i] = nil, !src.failed
			if src.ok && src.head.Key == key {
				h := src.head
				infos[i] = &h
				advance(src)
			}
		}
		if err := fn(key, infos, known); err != nil {
			return nil, err
		}
	}
	failed := make([]error, len(srcs))
	for i, src := range srcs {
		failed[i] = src.err
	}
	return failed, nil
}
