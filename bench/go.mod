module github.com/reprise-backup/reprise/bench

go 1.26.0

replace github.com/reprise-backup/reprise => ../

require (
	github.com/PlakarKorp/go-cdc-chunkers v1.1.0
	github.com/jotfs/fastcdc-go v0.2.0
	github.com/reprise-backup/reprise v0.0.0-00010101000000-000000000000
)

require (
	github.com/klauspost/cpuid/v2 v2.4.0 // indirect
	github.com/zeebo/blake3 v0.2.4 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
