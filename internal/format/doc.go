// Package format encodes and decodes every byte Reprise stores, exactly as
// docs/FORMAT.md specifies them: the repository config, key slots, tenant
// envelopes, packs, indexes, snapshots and tree streams.
//
// It does no I/O on backends: encoders append to byte slices and decoders
// parse byte slices (or stream a tree from an io.Reader). Decoders treat
// their input as hostile: every length is bounded before it is used, and
// every failure wraps ErrCorrupt (or crypto.ErrAuth for sealed parts) with
// a message naming what is wrong.
package format

import "errors"

// Version is format version 1: the config version of a repository whose
// chunks are compressed with zstd, and the value of the version field of
// key slots, tenant envelopes, snapshots and run records in repositories
// of every version (format version 2 changed none of them).
const Version = 1

// Version2 is format version 2: the config version of a repository that
// names its chunk codec in its config (Config.Codec), which a repository
// created with S2 does. Besides that field it adds one payload encoding,
// EncodingS2, and nothing else. This package reads versions 1 and 2.
const Version2 = 2

// FormatName identifies the format in the repository config, in versions
// 1 and 2 alike (the name is the format's, the version its revision).
const FormatName = "reprise.dev/v1"

// ErrCorrupt reports stored bytes that do not parse.
var ErrCorrupt = errors.New("format: corrupt data")

// ErrVersion reports a repository written in a format version this code
// does not read.
var ErrVersion = errors.New("format: unsupported format version")

// Limits that decoders enforce on hostile input.
const (
	// MaxChunkSize bounds a chunk's plaintext (chunk.Params allow at most
	// 64 MiB).
	MaxChunkSize = 64 << 20
	// MaxPackSize bounds a pack object.
	MaxPackSize = 1 << 30
	// MaxMetaSize bounds an index or snapshot object's plaintext.
	MaxMetaSize = 256 << 20
	// MaxPathLen bounds one path in a tree stream.
	MaxPathLen = 64 << 10
)

// Chunk kinds, recorded in pack headers and indexes.
const (
	KindData byte = 0 // file or stream contents
	KindTree byte = 1 // a piece of a snapshot's tree stream
)
