package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuickstart runs the whole example on a small dataset.
func TestQuickstart(t *testing.T) {
	if err := run(context.Background(), 8<<20, false); err != nil {
		t.Fatal(err)
	}
}

// TestManifestDiff checks that the verification catches every kind of
// difference.
func TestManifestDiff(t *testing.T) {
	for name, change := range map[string]func(p func(string) string, ds *dataset) error{
		"contents differ": func(p func(string) string, ds *dataset) error { // same size, one byte changed
			b, err := os.ReadFile(p(ds.smallPaths[0]))
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 1
			return os.WriteFile(p(ds.smallPaths[0]), b, 0o644)
		},
		"mode":    func(p func(string) string, ds *dataset) error { return os.Chmod(p(ds.smallPaths[0]), 0o600) },
		"missing": func(p func(string) string, ds *dataset) error { return os.Remove(p(ds.smallPaths[0])) },
		"not in":  func(p func(string) string, ds *dataset) error { return os.WriteFile(p("extra"), nil, 0o644) },
		"links to": func(p func(string) string, ds *dataset) error {
			os.Remove(p("dumps/latest.sql"))
			return os.Symlink("elsewhere.sql", p("dumps/latest.sql"))
		},
		"modification time": func(p func(string) string, ds *dataset) error {
			mt := time.Unix(1e9, 0)
			return os.Chtimes(p(ds.dumpPaths[0]), mt, mt)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			ds, err := makeDataset(dir, 4<<20)
			if err != nil {
				t.Fatal(err)
			}
			want, err := takeManifest(dir)
			if err != nil {
				t.Fatal(err)
			}
			if d := want.diff(want); len(d) != 0 {
				t.Fatalf("a manifest differs from itself: %v", d)
			}
			p := func(rel string) string { return filepath.Join(dir, filepath.FromSlash(rel)) }
			if err := change(p, ds); err != nil {
				t.Fatal(err)
			}
			got, err := takeManifest(dir)
			if err != nil {
				t.Fatal(err)
			}
			d := want.diff(got)
			if len(d) == 0 || !strings.Contains(strings.Join(d, "\n"), name) {
				t.Errorf("diff %q does not report %q", d, name)
			}
		})
	}
}
