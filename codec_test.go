package reprise_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
)

func initWithCodec(t *testing.T, st storage.Storage, c reprise.Codec) *reprise.Repository {
	t.Helper()
	r, err := reprise.Init(context.Background(), st, reprise.Credentials{Passphrase: []byte(testutil.Passphrase)},
		&reprise.InitOptions{Chunking: testutil.SmallChunks, PackSize: 1 << 20, Argon2: testutil.FastArgon2(), Codec: c})
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func openRepo(t *testing.T, st storage.Storage) (*reprise.Repository, error) {
	t.Helper()
	r, err := reprise.Open(context.Background(), st, reprise.Credentials{Passphrase: []byte(testutil.Passphrase)}, nil)
	if err == nil {
		t.Cleanup(func() { r.Close() })
	}
	return r, err
}

func readConfig(t *testing.T, st storage.Storage) []byte {
	t.Helper()
	b, err := storage.ReadAll(context.Background(), st, "config")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putConfig(t *testing.T, st storage.Storage, b []byte) {
	t.Helper()
	ctx := context.Background()
	if err := st.Delete(ctx, "config"); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "config", bytes.NewReader(b), int64(len(b)), nil); err != nil {
		t.Fatal(err)
	}
}

// codecTree writes a tree of SQL-like text, random data and a random
// mixture under a new directory.
func codecTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(11, 3))
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"dump.sql", testutil.TextBytes(rng, 3<<20+17)},
		{"small.sql", testutil.TextBytes(rng, 9000)},
		{"secret.bin", testutil.RandBytes(rng, 1<<20+5)},
		{"empty", nil},
		{"sub/again.sql", testutil.TextBytes(rng, 700<<10)},
		{"sub/random.bin", testutil.RandBytes(rng, 200<<10)},
	} {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "mixed"), 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.WriteRandomTree(t, filepath.Join(dir, "mixed"), rng, 40, 256<<10)
	return dir
}

// TestCodecS2RoundTrip backs a tree of text and random data up into a
// repository created with CodecS2 (format version 2), restores it, and
// checks every byte; the same tree stored with zstd takes fewer bytes.
func TestCodecS2RoundTrip(t *testing.T) {
	ctx := context.Background()
	src := codecTree(t)
	added := map[reprise.Codec]int64{}
	for _, c := range []reprise.Codec{reprise.CodecZstd, reprise.CodecS2} {
		t.Run("codec="+c.String(), func(t *testing.T) {
			st := storage.NewMem()
			initWithCodec(t, st, c).Close()
			cfg := string(readConfig(t, st))
			r, err := openRepo(t, st)
			if err != nil {
				t.Fatal(err)
			}
			if r.Codec() != c {
				t.Errorf("reopened repository: codec %v, want %v", r.Codec(), c)
			}
			wantVersion, wantField := 1, false
			if c == reprise.CodecS2 {
				wantVersion, wantField = 2, true
			}
			if r.FormatVersion() != wantVersion || strings.Contains(cfg, `"codec": "s2"`) != wantField ||
				strings.Contains(cfg, `"codec"`) != wantField {
				t.Errorf("format version %d, config:\n%s", r.FormatVersion(), cfg)
			}
			ten := tenant(t, r, "acme")
			res, err := backup.Dir(ctx, ten, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			added[c] = res.BytesAdded
			dst := filepath.Join(t.TempDir(), "out")
			rr, err := restore.Dir(ctx, ten, res.Snapshot.ID, dst, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rr.Files != res.Files || rr.Bytes != res.BytesRead {
				t.Errorf("restored %d files/%d bytes, backed up %d/%d", rr.Files, rr.Bytes, res.Files, res.BytesRead)
			}
			testutil.CompareTrees(t, src, dst)
			rep, err := r.Check(ctx, &reprise.CheckOptions{ReadData: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) != 0 || rep.BytesRead == 0 {
				t.Errorf("check --read-data: %+v", rep)
			}
			if res.BytesAdded >= res.BytesRead {
				t.Errorf("stored %d bytes for %d read: nothing compressed", res.BytesAdded, res.BytesRead)
			}
		})
	}
	if added[reprise.CodecZstd] == 0 || added[reprise.CodecS2] <= added[reprise.CodecZstd] {
		t.Errorf("bytes stored: zstd %d, s2 %d: want zstd < s2", added[reprise.CodecZstd], added[reprise.CodecS2])
	}
}

// TestCodecS2ChunksNeedVersion2: a version 2 repository's S2 chunks are
// corrupt once its config is rewritten as version 1 (docs/FORMAT.md,
// "Payload encoding"): encoding 2 is not part of version 1.
func TestCodecS2ChunksNeedVersion2(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	r := initWithCodec(t, st, reprise.CodecS2)
	ten := tenant(t, r, "acme")
	data := testutil.TextBytes(rand.New(rand.NewPCG(4, 4)), 512<<10)
	if _, err := backup.Stream(ctx, ten, "dump.sql", bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	r.Close()
	cfg := readConfig(t, st)
	v1 := bytes.Replace(cfg, []byte(`"version": 2,`), []byte(`"version": 1,`), 1)
	v1 = bytes.Replace(v1, []byte(",\n  \"codec\": \"s2\""), nil, 1)
	if bytes.Equal(v1, cfg) || bytes.Contains(v1, []byte("codec")) {
		t.Fatalf("config not rewritten:\n%s", v1)
	}
	putConfig(t, st, v1)
	r1, err := openRepo(t, st)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r1.Check(ctx, &reprise.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) == 0 {
		t.Fatal("S2 chunks accepted in a version 1 repository")
	}
	for _, p := range rep.Problems {
		if !errors.Is(p.Err, reprise.ErrCorrupt) {
			t.Errorf("problem %v: want ErrCorrupt", p)
		}
	}
}

// TestCodecVersion1Repository: a repository created without a codec is
// version 1, byte for byte as before S2 existed (no codec field); it
// opens and backs up with zstd.
func TestCodecVersion1Repository(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	testutil.InitRepo(t, st, testutil.SmallChunks).Close()
	cfg := readConfig(t, st)
	if !bytes.Contains(cfg, []byte("\n  \"version\": 1,\n")) || bytes.Contains(cfg, []byte("codec")) ||
		!bytes.HasSuffix(cfg, []byte("\n  \"pack_size\": 1048576\n}")) {
		t.Errorf("a default repository's config:\n%s", cfg)
	}
	r, err := openRepo(t, st)
	if err != nil {
		t.Fatal(err)
	}
	if r.Codec() != reprise.CodecZstd || r.FormatVersion() != 1 {
		t.Errorf("codec %v, version %d", r.Codec(), r.FormatVersion())
	}
	ten := tenant(t, r, "acme")
	data := testutil.TextBytes(rand.New(rand.NewPCG(5, 5)), 1<<20)
	res, err := backup.Stream(ctx, ten, "dump.sql", bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	// zstd stores this text in well under 40% of its size; S2 could not.
	if res.BytesAdded > int64(len(data))*4/10 {
		t.Errorf("stored %d bytes for %d of text", res.BytesAdded, len(data))
	}
	var out bytes.Buffer
	if _, err := restore.Stream(ctx, ten, res.Snapshot.ID, &out, nil); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Errorf("restore: %v", err)
	}
	if !bytes.Equal(readConfig(t, st), cfg) {
		t.Error("a backup changed the config")
	}
}

// TestCodecConfigVersions: a version 2 config opens; a version 3 one is
// refused with ErrUnsupportedVersion.
func TestCodecConfigVersions(t *testing.T) {
	st := storage.NewMem()
	initWithCodec(t, st, reprise.CodecS2).Close()
	cfg := readConfig(t, st)
	if !bytes.Contains(cfg, []byte("\n  \"version\": 2,\n")) || !bytes.Contains(cfg, []byte("\n  \"codec\": \"s2\"\n")) {
		t.Fatalf("an S2 repository's config:\n%s", cfg)
	}
	if _, err := openRepo(t, st); err != nil {
		t.Fatalf("version 2: %v", err)
	}
	for _, v3 := range [][]byte{
		bytes.Replace(cfg, []byte(`"version": 2,`), []byte(`"version": 3,`), 1),
		bytes.Replace(bytes.Replace(cfg, []byte(`"version": 2,`), []byte(`"version": 3,`), 1), []byte(`"s2"`), []byte(`"lz4"`), 1),
	} {
		putConfig(t, st, v3)
		_, err := openRepo(t, st)
		if !errors.Is(err, reprise.ErrUnsupportedVersion) {
			t.Errorf("version 3: %v, want ErrUnsupportedVersion", err)
		}
	}
}

func TestCodecNames(t *testing.T) {
	for _, c := range []reprise.Codec{reprise.CodecZstd, reprise.CodecS2} {
		got, err := reprise.ParseCodec(c.String())
		if err != nil || got != c {
			t.Errorf("ParseCodec(%q) = %v, %v", c.String(), got, err)
		}
	}
	if _, err := reprise.ParseCodec("lz4"); !errors.Is(err, reprise.ErrUnknownCodec) {
		t.Errorf("ParseCodec(lz4): %v", err)
	}
	_, err := reprise.Init(context.Background(), storage.NewMem(), reprise.Credentials{Passphrase: []byte("x")},
		&reprise.InitOptions{Argon2: testutil.FastArgon2(), Codec: reprise.Codec(9)})
	if !errors.Is(err, reprise.ErrUnknownCodec) {
		t.Errorf("Init with codec 9: %v", err)
	}
}
