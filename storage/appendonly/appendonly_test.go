package appendonly_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/appendonly"
	"github.com/reprise-backup/reprise/storage/metered"
	"github.com/reprise-backup/reprise/storage/storagetest"
)

// The suite runs in its append-only form: every test that deletes or
// overwrites checks the refusal (ErrPermission) and that nothing changed,
// instead of the delete or the overwrite; everything else — create-only
// races, ranges, listings, cancellation, failing readers, isolation — is
// the same contract as any store's.

func TestConformanceMem(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return appendonly.New(storage.NewMem())
	}, &storagetest.Options{AppendOnly: true})
}

func TestConformanceFS(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		fs, err := storage.NewFS(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fs.Close() })
		return appendonly.New(fs)
	}, &storagetest.Options{AppendOnly: true, Objects: 300})
}

// optsRecorder records the options of every Put.
type optsRecorder struct {
	storage.Storage
	opts []storage.PutOptions
}

func (r *optsRecorder) Put(ctx context.Context, key string, rd io.ReaderAt, size int64, opts *storage.PutOptions) error {
	var o storage.PutOptions
	if opts != nil {
		o = *opts
	}
	r.opts = append(r.opts, o)
	return r.Storage.Put(ctx, key, rd, size, opts)
}

func TestPutIsCreateOnlyAndKeepsRetain(t *testing.T) {
	rec := &optsRecorder{Storage: storage.NewMem()}
	a := appendonly.New(rec)
	ctx := t.Context()
	if err := a.Put(ctx, "a", strings.NewReader("x"), 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, "b", strings.NewReader("y"), 1, &storage.PutOptions{Retain: true}); err != nil {
		t.Fatal(err)
	}
	want := []storage.PutOptions{{IfNotExist: true}, {IfNotExist: true, Retain: true}}
	if len(rec.opts) != 2 || rec.opts[0] != want[0] || rec.opts[1] != want[1] {
		t.Fatalf("options passed on = %+v, want %+v", rec.opts, want)
	}
	// The refusal of an overwrite says what happened.
	err := a.Put(ctx, "a", strings.NewReader("z"), 1, nil)
	if !errors.Is(err, storage.ErrPermission) || errors.Is(err, storage.ErrExist) || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("overwrite = %v, want ErrPermission (not ErrExist) naming append-only", err)
	}
	// A create-only put keeps its ErrExist.
	if err := a.Put(ctx, "a", strings.NewReader("z"), 1, &storage.PutOptions{IfNotExist: true}); !errors.Is(err, storage.ErrExist) {
		t.Fatalf("create-only put over an object = %v, want ErrExist", err)
	}
	if err := a.Delete(ctx, "a"); !errors.Is(err, storage.ErrPermission) || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("Delete = %v, want ErrPermission naming append-only", err)
	}
	b, err := storage.ReadAll(ctx, a, "a")
	if err != nil || !bytes.Equal(b, []byte("x")) {
		t.Fatalf("object after refused writes = %q, %v", b, err)
	}
}

func TestWrapping(t *testing.T) {
	mem := storage.NewMem()
	a := appendonly.New(mem)
	if a.Unwrap() != mem {
		t.Fatal("Unwrap does not return the wrapped store")
	}
	if appendonly.New(a) != a {
		t.Fatal("wrapping twice made a second layer")
	}
	if !appendonly.Is(metered.New(a, nil)) || appendonly.Is(metered.New(mem, nil)) {
		t.Fatal("Is does not see through wrappers")
	}
}
