package reprise_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
)

// Back up a stream for one tenant and restore it.
func Example() {
	ctx := context.Background()
	st := storage.NewMem() // storage.Open(ctx, "/srv/backups") for a local disk
	repo, err := reprise.Init(ctx, st, reprise.Credentials{Passphrase: []byte("example passphrase")},
		// Cheap key derivation for the example only; nil calibrates it.
		&reprise.InitOptions{Argon2: &crypto.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}})
	if err != nil {
		log.Fatal(err)
	}
	defer repo.Close()

	acme, err := repo.Tenant(ctx, "acme")
	if err != nil {
		log.Fatal(err)
	}
	dump := strings.Repeat("INSERT INTO customers VALUES (1, 'paris');\n", 10000)
	res, err := backup.Stream(ctx, acme, "acme.sql", strings.NewReader(dump), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("backed up %d bytes, stored %v\n", res.BytesRead, res.BytesAdded < res.BytesRead/10)

	var out bytes.Buffer
	if _, err := restore.Stream(ctx, acme, "latest", &out, nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println("restored identical:", out.String() == dump)
	// Output:
	// backed up 430000 bytes, stored true
	// restored identical: true
}

// Check a repository and list what is wrong with it.
func ExampleRepository_Check() {
	ctx := context.Background()
	st := storage.NewMem()
	repo, err := reprise.Init(ctx, st, reprise.Credentials{Passphrase: []byte("pw")},
		&reprise.InitOptions{Argon2: &crypto.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}})
	if err != nil {
		log.Fatal(err)
	}
	defer repo.Close()
	t, _ := repo.Tenant(ctx, "acme")
	if _, err := backup.Stream(ctx, t, "db", strings.NewReader("some data"), nil); err != nil {
		log.Fatal(err)
	}
	report, err := repo.Check(ctx, &reprise.CheckOptions{ReadData: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d tenant, %d snapshot, %d problems\n", report.Tenants, report.Snapshots, len(report.Problems))
	// Output: 1 tenant, 1 snapshot, 0 problems
}
