package metered_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/faulty"
	"github.com/reprise-backup/reprise/storage/metered"
	"github.com/reprise-backup/reprise/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return metered.New(storage.NewMem(), &metered.Options{
			Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
	}, nil)
}

func TestCounts(t *testing.T) {
	var logs bytes.Buffer
	fi := faulty.New(storage.NewMem(), 1)
	m := metered.New(fi, &metered.Options{
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if m.Unwrap() != fi {
		t.Fatal("Unwrap")
	}
	ctx := t.Context()
	b := []byte("0123456789")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.Put(ctx, "a/1", bytes.NewReader(b), 10, nil))
	must(m.Put(ctx, "a/2", bytes.NewReader(b[:4]), 4, nil))
	if err := m.Put(ctx, "a/1", bytes.NewReader(b), 10, &storage.PutOptions{IfNotExist: true}); !errors.Is(err, storage.ErrExist) {
		t.Fatal(err)
	}
	got, err := storage.ReadAll(ctx, m, "a/1")
	must(err)
	if string(got) != string(b) {
		t.Fatalf("ReadAll = %q", got)
	}
	rc, err := m.Get(ctx, "a/1", 2, 3)
	must(err)
	io.ReadAll(rc)
	rc.Close()
	if _, err := m.Stat(ctx, "nope"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatal(err)
	}
	must(m.List(ctx, "a/", func(storage.Info) error { return nil }))
	must(m.Delete(ctx, "a/2"))
	fi.SetRule(faulty.OpGet, faulty.Rule{ReadErrRate: 1})
	rc, err = m.Get(ctx, "a/1", 0, -1)
	must(err)
	if _, err := io.ReadAll(rc); !errors.Is(err, storage.ErrTransient) {
		t.Fatalf("read = %v", err)
	}
	rc.Close()
	fi.SetRule(faulty.OpDelete, faulty.Rule{ErrRate: 1})
	if err := m.Delete(ctx, "a/1"); err == nil {
		t.Fatal("injected delete failure missing")
	}

	s := m.Stats()
	check := func(name string, got, want int64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	check("Put.Calls", s.Put.Calls, 3)
	check("Put.Bytes", s.Put.Bytes, 14)
	check("Put.Exist", s.Put.Exist, 1)
	check("Put.Errors", s.Put.Errors, 0)
	check("Get.Calls", s.Get.Calls, 3)
	check("Get.Errors", s.Get.Errors, 1)
	if s.Get.Bytes < 13 || s.Get.Bytes >= 23 {
		t.Errorf("Get.Bytes = %d, want 13 plus a truncated read", s.Get.Bytes)
	}
	check("Stat.NotExist", s.Stat.NotExist, 1)
	check("List.Calls", s.List.Calls, 1)
	check("List.Entries", s.List.Entries, 2)
	check("Delete.Calls", s.Delete.Calls, 2)
	check("Delete.Errors", s.Delete.Errors, 1)
	if s.Put.Latency <= 0 || s.Put.MaxLatency <= 0 || s.Put.MeanLatency() <= 0 || s.Put.MaxLatency > s.Put.Latency {
		t.Errorf("Put latency: %+v", s.Put)
	}
	for _, want := range []string{"storage put", "key=a/1", "storage get", "storage stat", "storage list", "storage delete", "error="} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
	m.Reset()
	if m.Stats() != (metered.Stats{}) {
		t.Fatal("Reset left counts")
	}
	// A nil logger logs nothing and does not crash.
	q := metered.New(storage.NewMem(), nil)
	must(q.Put(ctx, "k", bytes.NewReader(b), 10, nil))
}
