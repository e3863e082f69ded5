package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"gocloud.dev/secrets"

	"github.com/reprise-backup/reprise/storage"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args   []string
		pos    []string
		target string
		json   bool
		tags   []string
	}{
		{args: nil},
		{args: []string{"latest"}, pos: []string{"latest"}},
		{args: []string{"--target", "out", "latest"}, pos: []string{"latest"}, target: "out"},
		{args: []string{"latest", "--target", "out"}, pos: []string{"latest"}, target: "out"},
		{args: []string{"latest", "--target=out", "--json"}, pos: []string{"latest"}, target: "out", json: true},
		{args: []string{"-json", "a", "-target", "x", "b"}, pos: []string{"a", "b"}, target: "x", json: true},
		{args: []string{"a", "--tag", "t1", "b", "--tag=t2"}, pos: []string{"a", "b"}, tags: []string{"t1", "t2"}},
		// "-" is a positional argument (standard input, by convention).
		{args: []string{"-", "--json"}, pos: []string{"-"}, json: true},
		// "--" ends the flags, even after a positional argument.
		{args: []string{"a", "--", "--json", "-x"}, pos: []string{"a", "--json", "-x"}},
		{args: []string{"--", "a", "--json"}, pos: []string{"a", "--json"}},
		// "--" as the value of a flag is a value, not a terminator.
		{args: []string{"--target", "--", "a", "--json"}, pos: []string{"a"}, target: "--", json: true},
		// A flag whose value looks like a flag name, then a terminator.
		{args: []string{"--target", "--json", "--", "--x"}, pos: []string{"--x"}, target: "--json"},
		{args: []string{"a", "--json=false", "b"}, pos: []string{"a", "b"}},
	}
	for _, tc := range tests {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		target := fs.String("target", "", "")
		js := fs.Bool("json", false, "")
		var tags stringList
		fs.Var(&tags, "tag", "")
		pos, err := parseArgs(fs, tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if !slices.Equal(pos, tc.pos) || *target != tc.target || *js != tc.json || !slices.Equal(tags, tc.tags) {
			t.Errorf("%q: got pos %q target %q json %v tags %q; want %q %q %v %q",
				tc.args, pos, *target, *js, tags, tc.pos, tc.target, tc.json, tc.tags)
		}
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, args := range [][]string{
		{"latest", "--nope"},
		{"latest", "--target"}, // missing value
		{"latest", "-h"},
		{"--help"},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.String("target", "", "")
		if _, err := parseArgs(fs, args); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "1MiB": 1 << 20, "16M": 16 << 20, "16 mib": 16 << 20,
		"512k": 512 << 10, "1.5GiB": 3 << 29, "2gb": 2 << 30, "100B": 100,
	} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "12XB", "1.2.3M", "1e300G"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 30 << 20: "30.0 MiB",
		5 << 30: "5.0 GiB", 3 << 40: "3.0 TiB", 2048 << 40: "2048.0 TiB",
	} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		400 * time.Millisecond: "0.4 s", 65 * time.Second: "1m05s", 3725 * time.Second: "1h02m",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	if got := ratio(400, 10); got != "40.0x" {
		t.Errorf("ratio = %q", got)
	}
}

func TestRateMeter(t *testing.T) {
	var m rateMeter
	if r := m.update(time.Second, 100); r != 100 {
		t.Fatalf("first rate %v, want 100", r)
	}
	if r := m.update(2*time.Second, 200); r != 100 {
		t.Fatalf("steady rate %v, want 100", r)
	}
	// A slow start is forgotten after the window: 1000 B/s from 2 s on.
	for s := 3; s <= 8; s++ {
		m.update(time.Duration(s)*time.Second, 200+int64(s-2)*1000)
	}
	if r := m.update(9*time.Second, 7200); r != 1000 {
		t.Fatalf("rate %v, want 1000 once the slow start is out of the window", r)
	}
	if len(m.samples) > 6 {
		t.Errorf("meter keeps %d samples", len(m.samples))
	}
}

func TestStatusLine(t *testing.T) {
	if s := newStatusLine(io.Discard, false); s != nil {
		t.Fatal("a disabled status line draws")
	}
	var b strings.Builder
	s := newStatusLine(&b, true)
	s.update("backup", 50<<20, 100<<20, time.Second, "3 files")
	if got, want := b.String(), "\rbackup 50.0 MiB / 100.0 MiB (50%), 50.0 MiB/s, ETA 1.0 s, 3 files\x1b[K"; got != want {
		t.Errorf("status line %q, want %q", got, want)
	}
	b.Reset()
	s.clear()
	s.clear()
	if b.String() != "\r\x1b[K" {
		t.Errorf("clear wrote %q", b.String())
	}
}

func TestCancelableReader(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100000)
	got, err := io.ReadAll(newCancelableReader(context.Background(), iotest.HalfReader(bytes.NewReader(data))))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v; want the %d written", len(got), err, len(data))
	}

	// A read blocked on a stalled pipe returns once the context is done.
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	defer pw.Close()
	r := newCancelableReader(ctx, pr)
	go func() {
		pw.Write([]byte("some"))
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	got, err = io.ReadAll(r)
	if string(got) != "some" || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %q, %v; want \"some\" then context.Canceled", got, err)
	}
}

func TestStatusLineStop(t *testing.T) {
	var b strings.Builder
	s := newStatusLine(&b, true)
	s.update("restore", 1, 2, time.Second, "")
	s.stop()
	b.Reset()
	s.update("restore", 2, 2, 2*time.Second, "")
	if b.Len() != 0 {
		t.Errorf("a stopped status line drew %q", b.String())
	}
}

// TestCloudDrivers checks that the default build links the cloud drivers
// in (the test binary is built without the nocloud tag).
func TestCloudDrivers(t *testing.T) {
	for _, scheme := range []string{"file", "s3", "gs", "azblob"} {
		if !slices.Contains(storage.Schemes(), scheme) {
			t.Errorf("scheme %s is not registered (registered: %v)", scheme, storage.Schemes())
		}
	}
	for _, scheme := range []string{"base64key", "awskms", "gcpkms", "azurekeyvault"} {
		if !secrets.DefaultURLMux().ValidKeeperScheme(scheme) {
			t.Errorf("key keeper scheme %s is not registered", scheme)
		}
	}
}
