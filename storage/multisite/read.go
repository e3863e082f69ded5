package multisite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/reprise-backup/reprise/storage"
)

// Get implements [storage.Storage.Get]. It opens the range on the sites in
// order of health, falling back to the next site when one fails, lacks the
// object or refuses the range while another serves it. The reader it
// returns resumes on another site, at the offset reached, when the
// stream fails midway or, for an exact range (n >= 0), when it ends
// before n bytes while some site holds more of the object (a truncated
// answer or a truncated copy). Whole-object reads (n < 0) are not checked
// for truncation: telling a silently cut stream from the end of the object
// would cost a request per read, and Reprise authenticates every object
// above this layer anyway.
func (s *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := checkKey(ctx, "get", key); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("multisite: get %q: negative offset %d: %w", key, off, storage.ErrInvalidRange)
	}
	r := &reader{s: s, ctx: ctx, key: key, off: off, n: n, site: -1, dead: make([]bool, len(s.sites))}
	for i := range r.dead {
		r.dead[i] = s.deleted(i, key) // a copy that should be gone
	}
	if err := r.open(nil); err != nil {
		return nil, err
	}
	return r, nil
}

// reader is the ReadCloser of Get.
type reader struct {
	s       *Store
	ctx     context.Context
	key     string
	off, n  int64 // the range asked for
	pos     int64 // bytes delivered
	cur     io.ReadCloser
	site    int
	dead    []bool // sites that failed this read
	resumes int
	err     error // sticky
}

// open opens the rest of the range on the first usable site, trying the
// sites of prefer first (in that order), then the others by health.
func (r *reader) open(prefer []int) error {
	s := r.s
	rem := int64(-1)
	if r.n >= 0 {
		rem = r.n - r.pos
	}
	order := slices.Concat(prefer, s.readOrder(r.key))
	var missing, short []int
	var errs []error
	var rangeErr error
	tried := make([]bool, len(s.sites))
	for _, i := range order {
		if tried[i] || r.dead[i] {
			continue
		}
		tried[i] = true
		start := time.Now()
		rc, err := s.sites[i].st.Get(r.ctx, r.key, r.off+r.pos, rem)
		s.observe(r.ctx, i, err, time.Since(start))
		switch {
		case err == nil:
			r.cur, r.site = rc, i
			for _, j := range short {
				s.recordBad(j, r.key, Short, fmt.Sprintf("refused offset %d that another site serves", r.off+r.pos))
			}
			s.foundAfter(r.key, missing, r.pos > 0 || len(errs)+len(short) > 0)
			return nil
		case errors.Is(err, storage.ErrNotExist):
			missing = append(missing, i)
		case errors.Is(err, storage.ErrInvalidRange):
			short = append(short, i)
			if rangeErr == nil {
				rangeErr = err
			}
		case r.ctx.Err() != nil:
			return fmt.Errorf("multisite: get %q: %w", r.key, r.ctx.Err())
		default:
			errs = append(errs, s.siteErr(i, err))
		}
		r.dead[i] = true
	}
	if r.pos > 0 {
		errs = append(errs, io.ErrUnexpectedEOF)
		return &multiError{msg: fmt.Sprintf("multisite: get %q: no site could resume the read at offset %d", r.key, r.off+r.pos), errs: errs}
	}
	if rangeErr != nil {
		return fmt.Errorf("multisite: get %q: %w", r.key, rangeErr)
	}
	return s.notFound("get", r.key, errs)
}

// Read implements io.Reader.
func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.n >= 0 {
		if r.pos >= r.n {
			return 0, io.EOF
		}
		if int64(len(p)) > r.n-r.pos {
			p = p[:r.n-r.pos]
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		k, err := r.cur.Read(p)
		r.pos += int64(k)
		r.s.sites[r.site].bytesRead.Add(int64(k))
		switch {
		case err == nil:
			return k, nil
		case err == io.EOF:
			if r.n < 0 || r.pos >= r.n {
				return k, io.EOF
			}
			// Short of the range: the end of the object, or a cut.
			prefer, ok := r.truncated()
			if !ok {
				return k, io.EOF
			}
			if err := r.reopen(prefer); err != nil {
				return k, err
			}
		case r.ctx.Err() != nil:
			r.err = err
			return k, err
		default:
			r.s.observe(r.ctx, r.site, err, 0)
			name := r.s.sites[r.site].name
			if rerr := r.reopen(nil); rerr != nil {
				r.err = fmt.Errorf("%w (after site %q failed midway: %v)", rerr, name, err)
				return k, r.err
			}
		}
		if k > 0 {
			return k, nil
		}
	}
}

// reopen abandons the current answer and goes on from the sites of
// prefer, then the others; the current site is not tried again unless it
// is in prefer.
func (r *reader) reopen(prefer []int) error {
	r.cur.Close()
	if !slices.Contains(prefer, r.site) {
		r.dead[r.site] = true
	}
	failed := r.site
	r.resumes++
	if r.resumes > 2*len(r.s.sites) {
		r.err = fmt.Errorf("multisite: get %q: giving up after %d resumed answers ended early at offset %d: %w", r.key, r.resumes-1, r.off+r.pos, io.ErrUnexpectedEOF)
		r.cur = io.NopCloser(eofReader{})
		return r.err
	}
	if err := r.open(prefer); err != nil {
		r.err = err
		r.site = failed
		r.cur = io.NopCloser(eofReader{})
		return err
	}
	return nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// truncated checks an exact-range read that ended early, at r.off+r.pos:
// it asks every site still in play for the object's size. When some site
// holds more of the object, the current answer was cut (by the site or on
// the way): the copy is recorded bad and truncated returns the sites to
// resume from, best first. Otherwise the object really ends there.
func (r *reader) truncated() ([]int, bool) {
	s := r.s
	end := r.off + r.pos
	type answer struct {
		i    int
		size int64
		err  error
	}
	ch := make(chan answer, len(s.sites))
	asked := 0
	for i := range s.sites {
		if r.dead[i] && i != r.site {
			continue
		}
		asked++
		go func() {
			start := time.Now()
			info, err := s.sites[i].st.Stat(r.ctx, r.key)
			s.observe(r.ctx, i, err, time.Since(start))
			ch <- answer{i, info.Size, err}
		}()
	}
	longer := map[int]bool{}
	selfLonger := false
	for range asked {
		a := <-ch
		if a.err != nil || a.size <= end {
			continue
		}
		if a.i == r.site {
			selfLonger = true
		} else {
			longer[a.i] = true
		}
	}
	if len(longer) == 0 && !selfLonger {
		return nil, false
	}
	why := fmt.Sprintf("answer ended at offset %d; another site holds more", end)
	if selfLonger {
		why = fmt.Sprintf("answer ended at offset %d, before the end of the site's own copy", end)
	}
	s.recordBad(r.site, r.key, Short, why)
	var prefer []int
	for _, i := range s.readOrder(r.key) {
		if longer[i] {
			prefer = append(prefer, i)
		}
	}
	if selfLonger {
		prefer = append(prefer, r.site) // a cut answer: the site may do better next time
	}
	return prefer, true
}

// Close implements io.Closer.
func (r *reader) Close() error {
	if r.cur == nil {
		return nil
	}
	err := r.cur.Close()
	r.cur = nil
	if r.err == nil {
		r.err = errors.New("multisite: read after Close")
	}
	return err
}
