// Package faulty wraps a [storage.Storage] with seeded fault injection, for
// tests and disaster drills: failed requests, answers lost after the work
// was done, truncated or broken downloads, flipped bits, added latency, and
// a whole site going down.
//
// Faults are drawn from a random generator seeded by [New], under a mutex:
// for one seed and one sequence of calls the same faults strike the same
// calls. (Concurrent callers make the sequence, hence the faults, depend on
// scheduling.)
//
// The faults are honest: a flipped bit really changes the bytes the caller
// reads, a truncation really shortens them, so integrity checks above must
// catch them. The wrapped store itself is never damaged.
//
// # Latency injection
//
// A rule's Latency and Jitter delay every matching call by
// Latency + a uniform draw in [0, Jitter), before the call reaches the
// wrapped store; a rule with no fault rates is a pure latency injector,
// for benchmarks over a local or in-memory store:
//
//	s := faulty.New(storage.NewMem(), 1)
//	s.SetRuleAll(faulty.Rule{Latency: 20 * time.Millisecond, Jitter: 10 * time.Millisecond})
//
// The delay ends early, with the context's error, when the context is done.
package faulty

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/reprise-backup/reprise/storage"
)

// Op names the operation a [Rule] applies to.
type Op int

// The operations of [storage.Storage] that rules can target.
const (
	OpPut Op = iota
	OpGet
	OpStat
	OpList
	OpDelete
	numOps
)

// Ops lists every Op.
var Ops = []Op{OpPut, OpGet, OpStat, OpList, OpDelete}

// String returns the lower-case name of the operation ("put", "get", ...).
func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpGet:
		return "get"
	case OpStat:
		return "stat"
	case OpList:
		return "list"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Rule describes the faults injected into one operation. Rates are
// probabilities per call, from 0 (never) to 1 (always).
type Rule struct {
	// ErrRate fails the call with Err before it reaches the wrapped store.
	// A failing List first passes a random number (0 to 64) of entries to
	// the callback, as when a later page request fails.
	ErrRate float64
	// Err is the injected error. Nil means an error wrapping
	// storage.ErrTransient. Whatever Err is, the injected error wraps it
	// and names the operation and key.
	Err error
	// LostReplyRate performs the call on the wrapped store, then reports
	// the injected error anyway when it succeeded, as when the response
	// is lost on the way back. (A Put is stored, a Delete deletes.)
	LostReplyRate float64
	// TruncateRate makes a Get reader end early without any error, after
	// a random prefix of the range: a silently short read, as from a
	// broken proxy.
	TruncateRate float64
	// ReadErrRate makes a Get reader fail after a random prefix of the
	// range, with Err or else an error wrapping both storage.ErrTransient
	// and io.ErrUnexpectedEOF: a dropped connection.
	ReadErrRate float64
	// FlipRate flips one random bit of the bytes a Get returns.
	FlipRate float64
	// Latency delays every matching call, Jitter adds a uniform random
	// part in [0, Jitter).
	Latency, Jitter time.Duration
	// KeyFilter, if set, limits the rule to the keys for which it returns
	// true (for List, to the prefixes). It is called under the injector's
	// lock and must not call the Store.
	KeyFilter func(key string) bool
}

// Counts tallies what an injector did.
type Counts struct {
	Calls       int64         // calls matched by a rule (or rejected by Down)
	Errors      int64         // calls failed by ErrRate
	LostReplies int64         // successful calls reported as failed
	Truncations int64         // Get readers cut short silently
	ReadErrors  int64         // Get readers failed midway
	Flips       int64         // Get results with a flipped bit
	DownRejects int64         // calls refused while Down
	Delay       time.Duration // total injected latency
}

func (c *Counts) add(d Counts) {
	c.Calls += d.Calls
	c.Errors += d.Errors
	c.LostReplies += d.LostReplies
	c.Truncations += d.Truncations
	c.ReadErrors += d.ReadErrors
	c.Flips += d.Flips
	c.DownRejects += d.DownRejects
	c.Delay += d.Delay
}

// Store is a fault-injecting [storage.Storage]. Its methods are safe for
// concurrent use, and rules may change while calls run.
type Store struct {
	s storage.Storage

	mu     sync.Mutex
	rng    *rand.Rand
	rules  [numOps]*Rule
	down   bool
	counts [numOps]Counts
}

var (
	_ storage.Storage = (*Store)(nil)
	_ storage.Wrapper = (*Store)(nil)
)

// ErrDown is wrapped by the errors of calls made while the store is down
// (see [Store.Down]), together with storage.ErrTransient.
var ErrDown = errors.New("faulty: site down")

// New wraps s with an injector seeded with seed. It injects nothing until
// rules are set.
func New(s storage.Storage, seed int64) *Store {
	return &Store{s: s, rng: rand.New(rand.NewPCG(uint64(seed), 0xfa017))}
}

// SetRule sets the rule of op, replacing any previous one.
func (f *Store) SetRule(op Op, r Rule) {
	if op < 0 || op >= numOps {
		panic(fmt.Sprintf("faulty: SetRule: unknown %v", op))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules[op] = &r
}

// SetRuleAll sets r as the rule of every operation.
func (f *Store) SetRuleAll(r Rule) {
	for _, op := range Ops {
		f.SetRule(op, r)
	}
}

// ClearRules removes every rule (Down stays as it is).
func (f *Store) ClearRules() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = [numOps]*Rule{}
}

// Down takes the whole site down (true) or back up (false). While down,
// every call fails at once with an error wrapping ErrDown and
// storage.ErrTransient, and open Get readers fail too.
func (f *Store) Down(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *Store) isDown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down
}

// Counts returns the tallies of op.
func (f *Store) Counts(op Op) Counts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

// Total returns the tallies of all operations summed.
func (f *Store) Total() Counts {
	f.mu.Lock()
	defer f.mu.Unlock()
	var t Counts
	for _, c := range f.counts {
		t.add(c)
	}
	return t
}

// ResetCounts zeroes the tallies.
func (f *Store) ResetCounts() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts = [numOps]Counts{}
}

// Unwrap returns the wrapped store.
func (f *Store) Unwrap() storage.Storage { return f.s }

// Close closes the wrapped store.
func (f *Store) Close() error { return f.s.Close() }

// plan is what the injector decided for one call.
type plan struct {
	op       Op
	key      string
	err      error // inject at once (ErrRate or Down)
	listCut  int   // List: entries to pass before err
	lost     bool
	truncate bool
	readErr  bool
	flip     bool
	cutRand  uint64 // position draws for Get faults
	flipRand uint64
	delay    time.Duration
	ruleErr  error
}

// decide draws the faults of one call, under the lock. Which draws are
// made depends only on the rule and on earlier draws, so the faults
// depend only on the seed and the sequence of calls.
func (f *Store) decide(op Op, key string) plan {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := plan{op: op, key: key}
	c := &f.counts[op]
	if f.down {
		c.Calls++
		c.DownRejects++
		p.err = fmt.Errorf("faulty: %s %q: %w: %w", op, key, ErrDown, storage.ErrTransient)
		return p
	}
	r := f.rules[op]
	if r == nil || (r.KeyFilter != nil && !r.KeyFilter(key)) {
		return p
	}
	c.Calls++
	p.ruleErr = r.Err
	hit := func(rate float64) bool {
		if rate <= 0 {
			return false
		}
		return f.rng.Float64() < rate
	}
	p.delay = r.Latency
	if r.Jitter > 0 {
		p.delay += time.Duration(f.rng.Int64N(int64(r.Jitter)))
	}
	c.Delay += p.delay
	if hit(r.ErrRate) {
		c.Errors++
		p.err = f.injected(op, key, r.Err)
		if op == OpList {
			p.listCut = f.rng.IntN(65)
		}
		return p
	}
	p.lost = hit(r.LostReplyRate)
	if op == OpGet {
		p.truncate = hit(r.TruncateRate)
		p.readErr = hit(r.ReadErrRate)
		p.flip = hit(r.FlipRate)
		if p.truncate || p.readErr || p.flip {
			p.cutRand, p.flipRand = f.rng.Uint64(), f.rng.Uint64()
		}
	}
	return p
}

func (f *Store) injected(op Op, key string, err error) error {
	if err == nil {
		err = storage.ErrTransient
	}
	return fmt.Errorf("faulty: injected %s failure on %q: %w", op, key, err)
}

func (f *Store) count(op Op, fn func(c *Counts)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.counts[op])
}

// begin waits out the planned delay and returns the error to inject
// before the call, if any.
func (f *Store) begin(ctx context.Context, p plan) error {
	if p.delay > 0 {
		t := time.NewTimer(p.delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("faulty: %s %q: %w", p.op, p.key, ctx.Err())
		case <-t.C:
		}
	}
	if p.op == OpList {
		return nil // List injects its error midway
	}
	return p.err
}

// lostReply turns a success into the injected error when planned.
func (f *Store) lostReply(p plan, err error) error {
	if err != nil || !p.lost {
		return err
	}
	f.count(p.op, func(c *Counts) { c.LostReplies++ })
	return f.injected(p.op, p.key, p.ruleErr)
}

// Put implements [storage.Storage.Put].
func (f *Store) Put(ctx context.Context, key string, r io.ReaderAt, size int64, opts *storage.PutOptions) error {
	p := f.decide(OpPut, key)
	if err := f.begin(ctx, p); err != nil {
		return err
	}
	return f.lostReply(p, f.s.Put(ctx, key, r, size, opts))
}

// Stat implements [storage.Storage.Stat].
func (f *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	p := f.decide(OpStat, key)
	if err := f.begin(ctx, p); err != nil {
		return storage.Info{}, err
	}
	info, err := f.s.Stat(ctx, key)
	if err = f.lostReply(p, err); err != nil {
		return storage.Info{}, err
	}
	return info, nil
}

// Delete implements [storage.Storage.Delete].
func (f *Store) Delete(ctx context.Context, key string) error {
	p := f.decide(OpDelete, key)
	if err := f.begin(ctx, p); err != nil {
		return err
	}
	return f.lostReply(p, f.s.Delete(ctx, key))
}

// List implements [storage.Storage.List].
func (f *Store) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	p := f.decide(OpList, prefix)
	if err := f.begin(ctx, p); err != nil {
		return err
	}
	if p.err != nil && p.listCut == 0 {
		return p.err
	}
	passed := 0
	var fnErr error
	errCut := errors.New("cut")
	err := f.s.List(ctx, prefix, func(info storage.Info) error {
		if p.err != nil && passed == p.listCut {
			return errCut
		}
		if f.isDown() {
			f.count(OpList, func(c *Counts) { c.DownRejects++ })
			return fmt.Errorf("faulty: list %q: %w: %w", prefix, ErrDown, storage.ErrTransient)
		}
		passed++
		if err := fn(info); err != nil {
			fnErr = err
			return err
		}
		return nil
	})
	switch {
	case fnErr != nil:
		return fnErr
	case p.err != nil && (err == nil || errors.Is(err, errCut)):
		return p.err
	}
	return f.lostReply(p, err)
}

// Get implements [storage.Storage.Get]. When a Get fault strikes, the
// range is read whole into memory first, then damaged, so that positions
// can be drawn over its real length.
func (f *Store) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	p := f.decide(OpGet, key)
	if err := f.begin(ctx, p); err != nil {
		return nil, err
	}
	rc, err := f.s.Get(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	if p.lost {
		rc.Close()
		return nil, f.lostReply(p, nil)
	}
	if !p.truncate && !p.readErr && !p.flip {
		return &downReader{f: f, key: key, rc: rc}, nil
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	var c Counts
	if p.flip && len(b) > 0 {
		bit := p.flipRand % (uint64(len(b)) * 8)
		b[bit/8] ^= 1 << (bit % 8)
		c.Flips++
	}
	var tailErr error
	if p.truncate && len(b) > 0 {
		b = b[:p.cutRand%uint64(len(b))]
		c.Truncations++
	}
	if p.readErr && len(b) > 0 {
		b = b[:(p.cutRand>>1)%uint64(len(b))]
		c.ReadErrors++
		tailErr = p.ruleErr
		if tailErr == nil {
			tailErr = fmt.Errorf("%w: %w", storage.ErrTransient, io.ErrUnexpectedEOF)
		}
		tailErr = fmt.Errorf("faulty: injected read failure on %q after %d bytes: %w", key, len(b), tailErr)
	}
	f.count(OpGet, func(cc *Counts) { cc.add(c) })
	return &downReader{f: f, key: key, rc: &damaged{r: bytes.NewReader(b), err: tailErr}}, nil
}

// damaged serves its bytes, then its error (or io.EOF).
type damaged struct {
	r   *bytes.Reader
	err error
}

func (d *damaged) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err == io.EOF && d.err != nil {
		return n, d.err
	}
	return n, err
}

func (d *damaged) Close() error { return nil }

// downReader fails reads while the site is down.
type downReader struct {
	f   *Store
	key string
	rc  io.ReadCloser
}

func (d *downReader) Read(p []byte) (int, error) {
	if d.f.isDown() {
		d.f.count(OpGet, func(c *Counts) { c.DownRejects++ })
		return 0, fmt.Errorf("faulty: reading %q: %w: %w", d.key, ErrDown, storage.ErrTransient)
	}
	return d.rc.Read(p)
}

func (d *downReader) Close() error { return d.rc.Close() }
