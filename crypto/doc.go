// Package crypto holds Reprise's cryptographic primitives and its key
// hierarchy. It knows nothing of storage, chunking, backups or restores:
// callers hand it bytes and keys and get sealed bytes back.
//
// # Key hierarchy
//
//	KEK (passphrase via argon2id, or a KMS keeper) ──> slot key
//	  slot key ──seals──> slot X25519 private key || repository key
//	  repository key ──> names key, metadata key, slot-auth and envelope-auth MAC keys
//	  slot public key <──wrapped to── tenant root key, one per tenant and generation
//	                                     ├─ chunk-ID key   (keyed BLAKE3 chunk IDs)
//	                                     ├─ data key       (pack contents)
//	                                     ├─ metadata key   (indexes, snapshots, run records)
//	                                     └─ gear key       (content-defined chunk boundaries)
//
// Every subkey is derived with BLAKE3 in derive-key mode under its own
// context string ([Derive]), so keys for different purposes are independent
// even though they stem from one root.
//
// # Sealing
//
// All stored secrets and contents are sealed with AES-256-GCM under a key
// derived for the one object being written ([NewObjectCipher]): the object's
// random 256-bit identifier (its name) is mixed into the key, so nonces can
// be small counters within the object, moving an object under another name
// breaks authentication, and no key ever encrypts more than one object's
// worth of messages. docs/SECURITY.md explains the choice against
// XChaCha20-Poly1305 and the nonce limits; docs/FORMAT.md gives the bytes.
//
// Keys are held in [Key] values; call [Key.Wipe] when dropping one. Go
// cannot guarantee that no copy survives in memory (the garbage collector
// may move values), so wiping is best effort, as in every Go program.
package crypto
