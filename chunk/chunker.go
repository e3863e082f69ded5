package chunk

import (
	"errors"
	"io"
)

// maxEmptyReads bounds how many consecutive (0, nil) reads the Chunker
// accepts before it gives up with io.ErrNoProgress, as bufio does.
const maxEmptyReads = 100

// Chunker splits a stream read from an io.Reader into chunks, using one
// reusable buffer: once constructed, it allocates nothing per chunk. A Chunker
// is not safe for concurrent use.
type Chunker struct {
	s     *Splitter
	r     io.Reader
	buf   []byte
	start int   // buf[start:end] is read but not yet returned
	end   int   //
	tried int   // lengths below this are known not to be cut points of buf[start:end]
	eof   bool  // r returned io.EOF
	err   error // sticky read error (never io.EOF)
}

// BufferSize returns the size of the buffer [NewChunker] allocates for
// params p when it is not given one: 2*Max. Zero params mean
// [DefaultParams]. (A buffer of Max bytes works, but then the Chunker reads
// in pieces of a chunk or so; with 2*Max, each read gets at least Max bytes
// and only the chunk in progress is moved to the front of the buffer.)
func BufferSize(p Params) int {
	return 2 * p.withDefaults().Max
}

// NewChunker returns a Chunker that reads from r and cuts with s, which must
// not be nil. If buf is at least s.Params().Max bytes long, it is used as
// the buffer (all of len(buf); [BufferSize] bytes are recommended);
// otherwise a buffer of BufferSize(s.Params()) bytes is allocated, once.
func NewChunker(r io.Reader, s *Splitter, buf []byte) *Chunker {
	if len(buf) < s.p.Max {
		buf = make([]byte, BufferSize(s.p))
	}
	return &Chunker{s: s, r: r, buf: buf}
}

// Reset makes the chunker read a new stream from r, keeping its buffer and
// splitter. It does not allocate.
func (c *Chunker) Reset(r io.Reader) {
	*c = Chunker{s: c.s, r: r, buf: c.buf}
}

// Next returns the next chunk of the stream. The slice aliases the internal
// buffer and is valid only until the next call to Next or Reset.
//
// At the end of the stream Next returns nil, io.EOF, and keeps doing so. The
// chunks depend only on the bytes of the stream, never on how the reader
// splits them into reads: short reads, and a final read returning data with
// io.EOF, give the same chunks.
//
// A read error other than io.EOF is returned, as is, by the call to Next
// that needed the read, and by every later call. The chunks returned before
// it are chunks of the stream as they would be without the error, but the
// bytes that were buffered and not yet returned as chunks are not returned:
// what remains of a broken stream cannot be chunked as the whole stream
// would have been. A reader that returns (0, nil) 100 times in a row gives
// io.ErrNoProgress.
func (c *Chunker) Next() ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	for {
		data := c.buf[c.start:c.end]
		n, match := c.s.cut(data, c.tried)
		// Cut needs Max bytes or the rest of the stream; with fewer
		// buffered, a cut before their end is still final (the scan
		// stopped at a hash match), so only a chunk that may run past
		// them needs more data, and a read. The lengths tested so far
		// are not tested again after it.
		if match || len(data) >= c.s.p.Max || c.eof {
			if n == 0 {
				return nil, io.EOF
			}
			c.start += n
			c.tried = 0
			return data[:n:n], nil
		}
		if n > c.s.p.Min { // else no length was tested
			c.tried = n + 1
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

// fill moves the unread bytes to the front of the buffer and reads until at
// least Max bytes are buffered, the stream ends, or a read fails.
func (c *Chunker) fill() error {
	if c.start > 0 {
		c.end = copy(c.buf, c.buf[c.start:c.end])
		c.start = 0
	}
	empty := 0
	for c.end < c.s.p.Max {
		n, err := c.r.Read(c.buf[c.end:])
		if n < 0 || n > len(c.buf)-c.end {
			err = errBadRead
			n = 0
		}
		c.end += n
		switch {
		case err == io.EOF:
			c.eof = true
			return nil
		case err != nil:
			c.err = err
			return err
		case n > 0:
			empty = 0
		default:
			if empty++; empty >= maxEmptyReads {
				c.err = io.ErrNoProgress
				return c.err
			}
		}
	}
	return nil
}

// errBadRead reports a reader that returned an impossible count.
var errBadRead = errors.New("chunk: reader returned invalid count")
