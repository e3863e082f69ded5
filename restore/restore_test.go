package restore_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
)

// BenchmarkRestoreStream measures a streaming restore (fetch, decrypt,
// decompress, verify, write in order) from in-memory storage.
func BenchmarkRestoreStream(b *testing.B) {
	for _, kind := range []string{"text", "random"} {
		b.Run(kind, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			data := testutil.RandBytes(rng, 64<<20)
			if kind == "text" {
				data = testutil.TextBytes(rng, 64<<20)
			}
			r := testutil.InitRepo(b, storage.NewMem(), chunk.DefaultParams())
			ctx := context.Background()
			ten, _ := r.Tenant(ctx, "t")
			res, err := backup.Stream(ctx, ten, "s", bytes.NewReader(data), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				rr, err := restore.Stream(ctx, ten, res.Snapshot.ID, io.Discard, nil)
				if err != nil {
					b.Fatal(err)
				}
				if rr.Bytes != int64(len(data)) {
					b.Fatalf("restored %d bytes", rr.Bytes)
				}
			}
		})
	}
}
