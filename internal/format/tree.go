package format

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/reprise-backup/reprise/crypto"
)

// Node types in a tree stream.
const (
	TypeFile    byte = 'f'
	TypeDir     byte = 'd'
	TypeSymlink byte = 'l'
)

// treeMagic starts every tree stream.
const treeMagic = "RPT1"

// ChunkRef points at one chunk of a file.
type ChunkRef struct {
	ID  crypto.ID `json:"id"`
	Len uint32    `json:"len"` // plaintext length
}

// Node is one entry of a snapshot's tree.
type Node struct {
	Path   string // slash-separated, relative to the snapshot root; "." is the root
	Type   byte
	Mode   uint32 // permission bits plus setuid, setgid, sticky (0o7777)
	MTime  int64  // Unix nanoseconds
	Size   uint64 // files: content length
	Target string // symlinks: link target
	Chunks []ChunkRef
}

// ValidPath reports whether p is a clean relative slash path that stays
// inside the snapshot root: restore relies on it to never write outside
// its target.
func ValidPath(p string) bool {
	if p == "." {
		return true
	}
	return p != "" && len(p) <= MaxPathLen && !strings.HasPrefix(p, "/") &&
		path.Clean(p) == p && p != ".." && !strings.HasPrefix(p, "../") &&
		!strings.ContainsRune(p, 0)
}

// TreeWriter encodes nodes as a tree stream (docs/FORMAT.md, "Trees"):
//
//	tree    = "RPT1" node*
//	node    = pathLen:uvarint path type:u8 mode:uvarint mtime:varint body
//	body    = size:uvarint count:uvarint (id[32] len:uvarint)*   for 'f'
//	        | (empty)                                            for 'd'
//	        | targetLen:uvarint target                           for 'l'
type TreeWriter struct {
	w       io.Writer
	buf     []byte
	started bool
}

// NewTreeWriter returns a writer encoding to w.
func NewTreeWriter(w io.Writer) *TreeWriter { return &TreeWriter{w: w} }

// Write encodes one node.
func (t *TreeWriter) Write(n *Node) error {
	if !ValidPath(n.Path) {
		return fmt.Errorf("format: invalid tree path %q", n.Path)
	}
	b := t.buf[:0]
	if !t.started {
		b = append(b, treeMagic...)
		t.started = true
	}
	b = binary.AppendUvarint(b, uint64(len(n.Path)))
	b = append(b, n.Path...)
	b = append(b, n.Type)
	b = binary.AppendUvarint(b, uint64(n.Mode&0o7777))
	b = binary.AppendVarint(b, n.MTime)
	switch n.Type {
	case TypeFile:
		b = binary.AppendUvarint(b, n.Size)
		b = binary.AppendUvarint(b, uint64(len(n.Chunks)))
		for _, c := range n.Chunks {
			b = append(b, c.ID[:]...)
			b = binary.AppendUvarint(b, uint64(c.Len))
		}
	case TypeDir:
	case TypeSymlink:
		b = binary.AppendUvarint(b, uint64(len(n.Target)))
		b = append(b, n.Target...)
	default:
		return fmt.Errorf("format: unknown node type %q", n.Type)
	}
	t.buf = b
	_, err := t.w.Write(b)
	return err
}

// Close writes the stream header if no node was written, so that an empty
// tree is still a valid stream.
func (t *TreeWriter) Close() error {
	if t.started {
		return nil
	}
	t.started = true
	_, err := io.WriteString(t.w, treeMagic)
	return err
}

// TreeReader decodes a tree stream.
type TreeReader struct {
	r       *bufio.Reader
	started bool
	node    Node
}

// NewTreeReader returns a reader decoding from r.
func NewTreeReader(r io.Reader) *TreeReader {
	return &TreeReader{r: bufio.NewReaderSize(r, 64<<10)}
}

func (t *TreeReader) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: tree: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

func (t *TreeReader) uvarint(max uint64) (uint64, error) {
	v, err := t.readUvarint()
	if err != nil {
		return 0, err
	}
	if v > max {
		return 0, t.corrupt("value %d above limit %d", v, max)
	}
	return v, nil
}

// readUvarint reads a uvarint, reporting an overlong one as corrupt (the
// standard library's overflow error carries no sentinel).
func (t *TreeReader) readUvarint() (uint64, error) {
	var v uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := t.r.ReadByte()
		if err != nil {
			return 0, t.eof(err)
		}
		if i == binary.MaxVarintLen64-1 && b > 1 {
			break
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, t.corrupt("varint overflows 64 bits")
}

// readVarint reads a zig-zag signed varint.
func (t *TreeReader) readVarint() (int64, error) {
	u, err := t.readUvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x, err
}

func (t *TreeReader) eof(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return t.corrupt("truncated")
	}
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	return fmt.Errorf("tree: %w", err)
}

// Next returns the next node, or io.EOF after the last one. The returned
// node and its Chunks slice are reused by the next call.
func (t *TreeReader) Next() (*Node, error) {
	if !t.started {
		var m [4]byte
		if _, err := io.ReadFull(t.r, m[:]); err != nil || string(m[:]) != treeMagic {
			if err != nil {
				return nil, t.eof(err)
			}
			return nil, t.corrupt("bad magic")
		}
		t.started = true
	}
	if _, err := t.r.Peek(1); err == io.EOF {
		return nil, io.EOF
	}
	n := &t.node
	chunks := n.Chunks[:0]
	*n = Node{}
	l, err := t.uvarint(MaxPathLen)
	if err != nil {
		return nil, err
	}
	p := make([]byte, l)
	if _, err := io.ReadFull(t.r, p); err != nil {
		return nil, t.eof(err)
	}
	n.Path = string(p)
	if !ValidPath(n.Path) {
		return nil, t.corrupt("invalid path %q", n.Path)
	}
	if n.Type, err = t.r.ReadByte(); err != nil {
		return nil, t.eof(err)
	}
	mode, err := t.uvarint(0o7777)
	if err != nil {
		return nil, err
	}
	n.Mode = uint32(mode)
	if n.MTime, err = t.readVarint(); err != nil {
		return nil, err
	}
	switch n.Type {
	case TypeFile:
		if n.Size, err = t.uvarint(1 << 62); err != nil {
			return nil, err
		}
		cnt, err := t.uvarint(n.Size + 1) // each chunk holds at least one byte
		if err != nil {
			return nil, err
		}
		var sum uint64
		for i := uint64(0); i < cnt; i++ {
			var c ChunkRef
			if _, err := io.ReadFull(t.r, c.ID[:]); err != nil {
				return nil, t.eof(err)
			}
			l, err := t.uvarint(MaxChunkSize)
			if err != nil {
				return nil, err
			}
			if l == 0 {
				return nil, t.corrupt("empty chunk in %q", n.Path)
			}
			c.Len = uint32(l)
			sum += l
			chunks = append(chunks, c)
		}
		if sum != n.Size {
			return nil, t.corrupt("chunks of %q add up to %d bytes, size says %d", n.Path, sum, n.Size)
		}
		n.Chunks = chunks
	case TypeDir:
	case TypeSymlink:
		l, err := t.uvarint(MaxPathLen)
		if err != nil {
			return nil, err
		}
		b := make([]byte, l)
		if _, err := io.ReadFull(t.r, b); err != nil {
			return nil, t.eof(err)
		}
		n.Target = string(b)
	default:
		return nil, t.corrupt("unknown node type %d", n.Type)
	}
	return n, nil
}
