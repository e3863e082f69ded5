// Package reprise is a library for encrypted, chunked, deduplicated
// backups, built for SaaS teams that back up each of their customers
// (tenants) separately, to several sites, and must restore them fast.
//
// This package opens and creates repositories and their tenants, lists
// snapshots and checks a repository's integrity. The work is split across
// packages that each own one thing, with imports flowing one way
// (examples → backup, restore → reprise → internal → chunk, crypto,
// storage):
//
//   - [github.com/reprise-backup/reprise/backup] writes snapshots of a
//     directory tree or a stream;
//   - [github.com/reprise-backup/reprise/restore] reads them back, in
//     parallel;
//   - [github.com/reprise-backup/reprise/chunk] finds content-defined chunk
//     boundaries (keyed FastCDC);
//   - [github.com/reprise-backup/reprise/crypto] holds the primitives and
//     the key hierarchy (argon2id, X25519 key slots, BLAKE3, AES-256-GCM);
//   - [github.com/reprise-backup/reprise/storage] defines the backend
//     interface, its local and in-memory drivers, the conformance suite and
//     the wrappers (retry, fault injection, metrics); subpackages hold the
//     S3 and gocloud drivers;
//   - internal/format encodes every stored byte as docs/FORMAT.md
//     specifies; internal/repo ties the format to a backend.
//
// A backend sees only sealed objects under opaque names: no plaintext, no
// tenant name, no key (docs/SECURITY.md gives the threat model).
package reprise
