package s3store_test

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
	"github.com/reprise-backup/reprise/storage/s3store"
)

// BenchmarkS3BackupRestore measures backup and restore throughput of the
// library through the local S3-compatible server (.ci/servers.sh starts
// one): 64 MiB of incompressible data, default chunk and pack sizes.
//
//	source .ci/servers.sh && go test ./storage/s3store -run XXX -bench BackupRestore -benchtime 3x
func BenchmarkS3BackupRestore(b *testing.B) {
	st := newStore(b, "repo", s3store.Options{})
	r := testutil.InitRepo(b, st, chunk.DefaultParams())
	ctx := context.Background()
	data := testutil.RandBytes(rand.New(rand.NewPCG(1, 1)), 64<<20)

	b.Run("backup", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			ten, err := r.Tenant(ctx, "t"+string(rune('a'+i))) // a new tenant each time: nothing deduplicates
			if err != nil {
				b.Fatal(err)
			}
			_, err = backup.Stream(ctx, ten, "s", bytes.NewReader(data), nil)
			if err != nil {
				b.Fatal(err)
			}

			i++
		}
	})
	b.Run("restore", func(b *testing.B) {
		names, _ := r.Tenants(ctx)
		ten, err := r.OpenTenant(ctx, names[0])
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := restore.Stream(ctx, ten, "latest", io.Discard, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
