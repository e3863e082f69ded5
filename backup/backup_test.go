package backup_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/storage"
)

// BenchmarkBackupStream measures the whole backup pipeline (chunking,
// hashing, compression, sealing, packing, in-memory storage) with the
// default chunk sizes, on SQL-like text and on random (already encrypted)
// data, in a repository of each codec. Every iteration backs up new data
// (a different tenant), so nothing is deduplicated away.
func BenchmarkBackupStream(b *testing.B) {
	for _, kind := range []string{"text", "random"} {
		for _, codec := range []reprise.Codec{reprise.CodecZstd, reprise.CodecS2} {
			b.Run(kind+"/codec="+codec.String(), func(b *testing.B) { benchmarkBackupStream(b, kind, codec) })
		}
	}
}

func benchmarkBackupStream(b *testing.B, kind string, codec reprise.Codec) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := testutil.RandBytes(rng, 64<<20)
	if kind == "text" {
		data = testutil.TextBytes(rng, 64<<20)
	}
	ctx := context.Background()
	r, err := reprise.Init(ctx, storage.NewMem(), reprise.Credentials{Passphrase: []byte(testutil.Passphrase)},
		&reprise.InitOptions{Chunking: chunk.DefaultParams(), PackSize: reprise.DefaultPackSize, Argon2: testutil.FastArgon2(), Codec: codec})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var added int64
	i := 0
	for b.Loop() {
		ten, err := r.Tenant(ctx, "t"+string(rune('a'+i)))
		if err != nil {
			b.Fatal(err)
		}
		res, err := backup.Stream(ctx, ten, "s", bytes.NewReader(data), nil)
		if err != nil {
			b.Fatal(err)
		}
		added += res.BytesAdded
		i++
	}
	b.ReportMetric(float64(added)/float64(int64(i)*int64(len(data))), "stored/read")
}

// BenchmarkBackupUnchanged measures a second backup of unchanged data: the
// cost of reading, chunking and hashing alone, as for an hourly snapshot.
func BenchmarkBackupUnchanged(b *testing.B) {
	data := testutil.RandBytes(rand.New(rand.NewPCG(3, 4)), 64<<20)
	r := testutil.InitRepoPacks(b, storage.NewMem(), chunk.DefaultParams(), reprise.DefaultPackSize)
	ctx := context.Background()
	ten, _ := r.Tenant(ctx, "t")
	if _, err := backup.Stream(ctx, ten, "s", bytes.NewReader(data), nil); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := backup.Stream(ctx, ten, "s", bytes.NewReader(data), nil)
		if err != nil {
			b.Fatal(err)
		}
		if res.NewChunks > 1 {
			b.Fatalf("%d new chunks for unchanged data", res.NewChunks)
		}
	}
}
