package storage_test

import (
	"testing"

	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/storagetest"
)

func TestMemConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage { return storage.NewMem() }, nil)
}

func BenchmarkMem(b *testing.B) {
	storagetest.Bench(b, func(b *testing.B) storage.Storage { return storage.NewMem() })
}
