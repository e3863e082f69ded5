// Package appendonly wraps a [storage.Storage] so that nothing stored can be
// deleted or overwritten through it: every Put becomes create-only and
// every Delete is refused. It enforces, on the client side, what
// append-only credentials enforce on a server (an IAM policy without
// s3:DeleteObject, a share without delete rights): a backup made through
// it can add snapshots to a repository but cannot erase or rewrite its
// history, whatever the code above it does.
//
// Open the repository with reprise.Options.AppendOnly set (which wraps the
// storage with this package itself): the library then never tries to
// delete or overwrite (leases are refreshed by creating new objects, run
// records and tombstones are created once), and the operations that must
// delete — forget, prune, tenant erasure, key changes, repair — fail at
// once with reprise.ErrAppendOnly. Prune runs elsewhere, with credentials
// allowed to delete.
//
// Errors: a plain Put onto an existing key fails with an error wrapping
// [storage.ErrPermission] (the wrapped store's ErrExist is kept in the
// chain only as text, so that callers do not take the refusal for a lost
// create-only race); a create-only Put onto an existing key fails with
// [storage.ErrExist] as usual; every Delete of a valid key fails with
// [storage.ErrPermission]. Reads (Get, Stat, List) pass through.
package appendonly

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/reprise-backup/reprise/storage"
)

// Store is the append-only wrapper. It is safe for concurrent use when the
// wrapped store is.
type Store struct {
	s storage.Storage
}

var (
	_ storage.Storage = (*Store)(nil)
	_ storage.Wrapper = (*Store)(nil)
)

// New wraps s. Wrapping a Store again returns it unchanged.
func New(s storage.Storage) *Store {
	if a, ok := s.(*Store); ok {
		return a
	}
	return &Store{s: s}
}

// Is reports whether s is, or wraps (through [storage.Wrapper]), an
// append-only Store.
func Is(s storage.Storage) bool {
	for s != nil {
		if _, ok := s.(*Store); ok {
			return true
		}
		w, ok := s.(storage.Wrapper)
		if !ok {
			return false
		}
		s = w.Unwrap()
	}
	return false
}

// Unwrap returns the wrapped store.
func (a *Store) Unwrap() storage.Storage { return a.s }

// Put stores the object create-only, whatever opts says: a put onto a key
// that already holds an object fails and leaves that object untouched.
// Other options (Retain) are passed on.
func (a *Store) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *storage.PutOptions) error {
	var o storage.PutOptions
	if opts != nil {
		o = *opts
	}
	createOnly := o.IfNotExist
	o.IfNotExist = true
	err := a.s.Put(ctx, key, r, size, &o)
	if err != nil && !createOnly && errors.Is(err, storage.ErrExist) {
		// Not ErrExist: the caller asked to overwrite, and was refused.
		return fmt.Errorf("appendonly: put %q: append-only store refused to overwrite an existing object (%v): %w",
			key, err, storage.ErrPermission)
	}
	return err
}

// Get passes the read through.
func (a *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	return a.s.Get(ctx, key, off, n)
}

// Stat passes through.
func (a *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	return a.s.Stat(ctx, key)
}

// List passes through.
func (a *Store) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	return a.s.List(ctx, prefix, fn)
}

// Delete refuses: it fails with an error wrapping storage.ErrPermission
// (after the checks every driver makes: a malformed key fails with
// storage.ErrInvalidKey, a cancelled context with its error).
func (a *Store) Delete(ctx context.Context, key string) error {
	if !storage.ValidKey(key) {
		return fmt.Errorf("appendonly: delete %q: %w", key, storage.ErrInvalidKey)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("appendonly: delete %q: %w", key, err)
	}
	return fmt.Errorf("appendonly: delete %q refused: the store is append-only: %w", key, storage.ErrPermission)
}

// Close closes the wrapped store.
func (a *Store) Close() error { return a.s.Close() }
