package restore_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/chunk"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/faulty"
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

// BenchmarkRestoreLatency restores through a backend answering every
// request after 20 ms (storage/faulty), against the same backend without
// latency: issue #7 asks for at least 80% of the zero-latency throughput.
func BenchmarkRestoreLatency(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := testutil.RandBytes(rng, 64<<20)
	mem := storage.NewMem()
	lat := faulty.New(mem, 1)
	r := testutil.InitRepo(b, lat, chunk.DefaultParams())
	ctx := context.Background()
	ten, _ := r.Tenant(ctx, "t")
	res, err := backup.Stream(ctx, ten, "s", bytes.NewReader(data), nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("latency=%v", d), func(b *testing.B) {
			lat.SetRuleAll(faulty.Rule{Latency: d})
			defer lat.ClearRules()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := restore.Stream(ctx, ten, res.Snapshot.ID, io.Discard, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
