package faulty_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"testing"
	"time"

	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/faulty"
	"github.com/reprise-backup/reprise/storage/storagetest"
)

func TestConformanceNoRules(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return faulty.New(storage.NewMem(), 1)
	}, nil)
}

func TestConformanceLatencyOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("slow by design")
	}
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		f := faulty.New(storage.NewMem(), 1)
		f.SetRuleAll(faulty.Rule{Latency: 50 * time.Microsecond, Jitter: 100 * time.Microsecond})
		return f
	}, &storagetest.Options{Objects: 300})
}

func seeded(t *testing.T, seed int64) (*faulty.Store, []byte) {
	t.Helper()
	f := faulty.New(storage.NewMem(), seed)
	b := make([]byte, 4096)
	for i := range b {
		b[i] = byte(i * 7)
	}
	if err := f.Put(t.Context(), "obj", bytes.NewReader(b), int64(len(b)), nil); err != nil {
		t.Fatal(err)
	}
	return f, b
}

func TestFlipIsReal(t *testing.T) {
	f, b := seeded(t, 1)
	f.SetRule(faulty.OpGet, faulty.Rule{FlipRate: 1})
	for range 20 {
		got, err := storage.ReadAll(t.Context(), f, "obj")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(b) {
			t.Fatalf("flip changed the length: %d", len(got))
		}
		diff := 0
		for i := range b {
			diff += bits.OnesCount8(got[i] ^ b[i])
		}
		if diff != 1 {
			t.Fatalf("%d bits differ, want exactly 1", diff)
		}
	}
	if c := f.Counts(faulty.OpGet); c.Flips != 20 || c.Calls != 20 {
		t.Fatalf("counts = %+v", c)
	}
	// The stored object is intact.
	got, err := storage.ReadAll(t.Context(), f.Unwrap(), "obj")
	if err != nil || !bytes.Equal(got, b) {
		t.Fatal("the wrapped store was damaged")
	}
	// A ranged read is flipped within the range.
	rc, err := f.Get(t.Context(), "obj", 100, 10)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(rc)
	rc.Close()
	if len(got) != 10 || bytes.Equal(got, b[100:110]) {
		t.Fatalf("ranged flip: %x vs %x", got, b[100:110])
	}
}

func TestTruncateIsSilent(t *testing.T) {
	f, b := seeded(t, 2)
	f.SetRule(faulty.OpGet, faulty.Rule{TruncateRate: 1})
	for range 20 {
		got, err := storage.ReadAll(t.Context(), f, "obj")
		if err != nil {
			t.Fatalf("truncated read reported %v, want silence", err)
		}
		if len(got) >= len(b) || !bytes.Equal(got, b[:len(got)]) {
			t.Fatalf("got %d bytes, want a strict prefix", len(got))
		}
	}
	if c := f.Counts(faulty.OpGet); c.Truncations != 20 {
		t.Fatalf("counts = %+v", c)
	}
}

func TestReadErr(t *testing.T) {
	f, b := seeded(t, 3)
	f.SetRule(faulty.OpGet, faulty.Rule{ReadErrRate: 1})
	got, err := storage.ReadAll(t.Context(), f, "obj")
	if !errors.Is(err, storage.ErrTransient) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want ErrTransient and io.ErrUnexpectedEOF", err)
	}
	if len(got) >= len(b) || !bytes.Equal(got, b[:len(got)]) {
		t.Fatalf("got %d bytes, want a strict prefix", len(got))
	}
	custom := errors.New("custom")
	f.SetRule(faulty.OpGet, faulty.Rule{ReadErrRate: 1, Err: custom})
	if _, err := storage.ReadAll(t.Context(), f, "obj"); !errors.Is(err, custom) {
		t.Fatalf("err = %v, want custom", err)
	}
}

func TestErrorsAndLostReplies(t *testing.T) {
	f, _ := seeded(t, 4)
	ctx := t.Context()
	f.SetRuleAll(faulty.Rule{ErrRate: 1})
	if err := f.Put(ctx, "new", bytes.NewReader([]byte("x")), 1, nil); !errors.Is(err, storage.ErrTransient) {
		t.Fatalf("Put = %v", err)
	}
	if _, err := f.Unwrap().Stat(ctx, "new"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatal("a failed Put stored its object")
	}
	if _, err := f.Stat(ctx, "obj"); !errors.Is(err, storage.ErrTransient) {
		t.Fatalf("Stat = %v", err)
	}
	if err := f.Delete(ctx, "obj"); !errors.Is(err, storage.ErrTransient) {
		t.Fatalf("Delete = %v", err)
	}
	if _, err := f.Get(ctx, "obj", 0, -1); !errors.Is(err, storage.ErrTransient) {
		t.Fatalf("Get = %v", err)
	}
	if err := f.List(ctx, "", func(storage.Info) error { return nil }); !errors.Is(err, storage.ErrTransient) {
		t.Fatalf("List = %v", err)
	}
	perm := fmt.Errorf("denied: %w", storage.ErrPermission)
	f.SetRule(faulty.OpStat, faulty.Rule{ErrRate: 1, Err: perm})
	if _, err := f.Stat(ctx, "obj"); !errors.Is(err, storage.ErrPermission) || errors.Is(err, storage.ErrTransient) {
		t.Fatalf("Stat with custom error = %v", err)
	}

	f.ClearRules()
	f.SetRule(faulty.OpPut, faulty.Rule{LostReplyRate: 1})
	f.SetRule(faulty.OpDelete, faulty.Rule{LostReplyRate: 1})
	if err := f.Put(ctx, "lost", bytes.NewReader([]byte("x")), 1, nil); !errors.Is(err, storage.ErrTransient) {
		t.Fatalf("Put with lost reply = %v", err)
	}
	if _, err := f.Stat(ctx, "lost"); err != nil {
		t.Fatal("a Put with a lost reply was not performed")
	}
	if err := f.Delete(ctx, "lost"); !errors.Is(err, storage.ErrTransient) {
		t.Fatalf("Delete with lost reply = %v", err)
	}
	if err := f.Delete(ctx, "lost"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("second Delete = %v, want ErrNotExist (the first one was performed)", err)
	}
	if c := f.Counts(faulty.OpPut); c.Errors != 1 || c.LostReplies != 1 {
		t.Fatalf("put counts = %+v", c)
	}
	if tot := f.Total(); tot.Errors != 6 || tot.LostReplies != 2 {
		t.Fatalf("totals = %+v", tot)
	}
	f.ResetCounts()
	if f.Total() != (faulty.Counts{}) {
		t.Fatal("ResetCounts")
	}
}

func TestListFailsMidway(t *testing.T) {
	f := faulty.New(storage.NewMem(), 5)
	ctx := t.Context()
	for i := range 200 {
		if err := f.Put(ctx, fmt.Sprintf("k/%03d", i), bytes.NewReader(nil), 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	f.SetRule(faulty.OpList, faulty.Rule{ErrRate: 1})
	cuts := map[int]bool{}
	for range 20 {
		n := 0
		err := f.List(ctx, "k/", func(storage.Info) error { n++; return nil })
		if !errors.Is(err, storage.ErrTransient) {
			t.Fatalf("List = %v", err)
		}
		if n > 64 {
			t.Fatalf("%d entries before the failure, want at most 64", n)
		}
		cuts[n] = true
	}
	if len(cuts) < 5 {
		t.Fatalf("cut points %v are not random", cuts)
	}
	// Callback errors pass through untouched.
	f.ClearRules()
	stop := errors.New("stop")
	if err := f.List(ctx, "k/", func(storage.Info) error { return stop }); err != stop {
		t.Fatalf("List = %v, want the callback's error", err)
	}
}

func TestKeyFilter(t *testing.T) {
	f, _ := seeded(t, 6)
	ctx := t.Context()
	f.SetRuleAll(faulty.Rule{ErrRate: 1, KeyFilter: func(k string) bool { return k == "obj" }})
	if _, err := f.Stat(ctx, "obj"); err == nil {
		t.Fatal("filtered key not failed")
	}
	if err := f.Put(ctx, "other", bytes.NewReader(nil), 0, nil); err != nil {
		t.Fatalf("unfiltered key failed: %v", err)
	}
	if c := f.Counts(faulty.OpPut); c.Calls != 0 {
		t.Fatalf("unmatched call counted: %+v", c)
	}
}

func TestDown(t *testing.T) {
	f, b := seeded(t, 7)
	ctx := t.Context()
	rc, err := f.Get(ctx, "obj", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	p := make([]byte, 10)
	if _, err := rc.Read(p); err != nil {
		t.Fatal(err)
	}
	f.Down(true)
	errs := []error{
		f.Put(ctx, "x", bytes.NewReader(nil), 0, nil),
		f.Delete(ctx, "obj"),
		f.List(ctx, "", func(storage.Info) error { return nil }),
	}
	_, err = f.Stat(ctx, "obj")
	errs = append(errs, err)
	_, err = f.Get(ctx, "obj", 0, -1)
	errs = append(errs, err)
	_, err = rc.Read(p)
	errs = append(errs, err)
	for i, err := range errs {
		if !errors.Is(err, faulty.ErrDown) || !errors.Is(err, storage.ErrTransient) {
			t.Errorf("call %d while down = %v", i, err)
		}
	}
	if got := f.Total().DownRejects; got != 6 {
		t.Errorf("DownRejects = %d, want 6", got)
	}
	f.Down(false)
	got, err := storage.ReadAll(ctx, f, "obj")
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("after Down(false): %v", err)
	}
}

func TestLatency(t *testing.T) {
	f, _ := seeded(t, 8)
	f.SetRule(faulty.OpStat, faulty.Rule{Latency: 20 * time.Millisecond, Jitter: 10 * time.Millisecond})
	start := time.Now()
	for range 3 {
		if _, err := f.Stat(t.Context(), "obj"); err != nil {
			t.Fatal(err)
		}
	}
	el := time.Since(start)
	d := f.Counts(faulty.OpStat).Delay
	if el < 60*time.Millisecond || d < 60*time.Millisecond || d >= 90*time.Millisecond {
		t.Fatalf("elapsed %v, injected %v; want >= 60ms, injected in [60ms, 90ms)", el, d)
	}
	// The delay ends with the context.
	f.SetRule(faulty.OpStat, faulty.Rule{Latency: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { _, err := f.Stat(ctx, "obj"); done <- err }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Stat = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("latency did not end with the context")
	}
}

// outcomes runs a fixed sequence of calls and records which failed.
func outcomes(t *testing.T, seed int64) []string {
	f, _ := seeded(t, seed)
	f.SetRuleAll(faulty.Rule{ErrRate: 0.3, TruncateRate: 0.3, FlipRate: 0.3, Jitter: time.Microsecond})
	var out []string
	for i := range 100 {
		got, err := storage.ReadAll(t.Context(), f, "obj")
		out = append(out, fmt.Sprintf("%d: %v %x", i, err != nil, got))
		_, err = f.Stat(t.Context(), "obj")
		out = append(out, fmt.Sprint(err != nil))
	}
	return out
}

func TestDeterministic(t *testing.T) {
	a, b, c := outcomes(t, 42), outcomes(t, 42), outcomes(t, 43)
	if !slices.Equal(a, b) {
		t.Fatal("same seed, same calls, different faults")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds gave the same faults")
	}
}

func TestOpString(t *testing.T) {
	var names []string
	for _, op := range faulty.Ops {
		names = append(names, op.String())
	}
	if fmt.Sprint(names) != "[put get stat list delete]" {
		t.Fatal(names)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("SetRule of an unknown op did not panic")
		}
	}()
	faulty.New(storage.NewMem(), 0).SetRule(faulty.Op(99), faulty.Rule{})
}
