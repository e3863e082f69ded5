package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/storage"
)

// Leases announce running backups to prune, which must not delete what a
// running backup may have deduplicated against. A lease is not a lock: it
// blocks nobody; prune only postpones deleting packs it marked after the
// lease's backup started. A lease not refreshed for LeaseStale is from a
// dead process and ignored.
//
// Every write of a lease creates a new object, so that a backup never
// deletes nor overwrites (append-only credentials allow neither):
//
//	t/<handle>/l/<lease id>/<seq>      refresh number seq (10 digits, from 1)
//	t/<handle>/l/<lease id>/released   the backup ended (append-only mode)
//
// each holding {"start", "refreshed"}. Readers take the highest seq of
// each lease id; a lease with a "released" object has ended. In normal
// mode a refresh deletes the previous one once the new one is stored, and
// the end of the backup deletes the lease; in append-only mode nothing is
// deleted and prune, run elsewhere with other credentials, removes the
// objects of ended and dead leases and superseded refreshes. Objects named
// t/<handle>/l/<lease id> (one object, rewritten in place: written by
// earlier versions) are still read as leases.
const (
	LeaseRefresh = time.Minute
	LeaseStale   = 10 * time.Minute
)

// leaseRefresh is the refresh interval in use: LeaseRefresh, shortened by
// tests (export_test.go).
var leaseRefresh = LeaseRefresh

const (
	leaseSeqDigits = 10
	leaseReleased  = "released"
)

type leaseBody struct {
	Start     time.Time `json:"start"`
	Refreshed time.Time `json:"refreshed"`
}

// Lease is a running backup's announcement.
type Lease struct {
	t    *Tenant
	dir  string // t/<handle>/l/<lease id>/
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	// Owned by the refreshing goroutine, then by release.
	body  leaseBody
	seq   uint64 // the newest refresh stored
	tried uint64 // the highest seq a put was attempted for
}

func leaseSeqName(seq uint64) string { return fmt.Sprintf("%0*d", leaseSeqDigits, seq) }

// TakeLease writes a lease and refreshes it until Release.
func (t *Tenant) TakeLease(ctx context.Context, start time.Time) (*Lease, error) {
	id, err := crypto.RandomID()
	if err != nil {
		return nil, err
	}
	l := &Lease{t: t, dir: t.DataPrefix() + "l/" + id.String() + "/", stop: make(chan struct{}),
		body: leaseBody{Start: start.UTC(), Refreshed: time.Now().UTC()}}
	if err := l.write(ctx); err != nil {
		return nil, fmt.Errorf("writing backup lease: %w", err)
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tk := time.NewTicker(leaseRefresh)
		defer tk.Stop()
		for {
			select {
			case <-tk.C:
				l.body.Refreshed = time.Now().UTC()
				if err := l.write(context.WithoutCancel(ctx)); err != nil {
					t.Repo.Log.Warn("could not refresh backup lease", "err", err)
				}
			case <-l.stop:
				return
			}
		}
	}()
	return l, nil
}

// write stores the next refresh, create-only, and in normal mode deletes
// the previous one.
func (l *Lease) write(ctx context.Context) error {
	b, _ := json.Marshal(l.body)
	l.tried++
	next := l.tried
	if err := putBytes(ctx, l.t.Repo.St, l.dir+leaseSeqName(next), b, true); err != nil {
		return err
	}
	prev := l.seq
	l.seq = next
	if prev > 0 && !l.t.Repo.AppendOnly {
		if err := l.t.Repo.St.Delete(ctx, l.dir+leaseSeqName(prev)); err != nil && !errors.Is(err, storage.ErrNotExist) {
			l.t.Repo.Log.Debug("could not remove a superseded lease refresh (prune will)", "err", err)
		}
	}
	return nil
}

// Release stops refreshing and ends the lease: it deletes the lease's
// objects or, append-only, marks it released. It may be called more than
// once.
func (l *Lease) Release() { l.once.Do(l.release) }

func (l *Lease) release() {
	close(l.stop)
	l.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := l.t.Repo
	if !r.AppendOnly {
		var keys []string
		err := r.St.List(ctx, l.dir, func(i storage.Info) error {
			keys = append(keys, i.Key)
			return nil
		})
		for _, k := range keys {
			if err == nil {
				if err = r.St.Delete(ctx, k); errors.Is(err, storage.ErrNotExist) {
					err = nil
				}
			}
		}
		if err == nil {
			return
		}
		if !errors.Is(err, storage.ErrPermission) {
			r.Log.Warn("could not remove backup lease", "err", err)
			return
		}
		// The storage refuses deletes (append-only credentials without
		// AppendOnly set): say the backup ended the append-only way.
	}
	l.body.Refreshed = time.Now().UTC()
	b, _ := json.Marshal(l.body)
	if err := putBytes(ctx, r.St, l.dir+leaseReleased, b, true); err != nil && !errors.Is(err, storage.ErrExist) {
		r.Log.Warn("could not mark backup lease released", "err", err)
	}
}

// leaseScan is what prune learns from the tenant's lease objects.
type leaseScan struct {
	// oldest is the start of the oldest running backup, zero when none
	// runs.
	oldest time.Time
	// removable lists lease objects no reader needs any more: every
	// object of ended (released) and dead (stale) leases, refreshes
	// superseded by a newer one, and objects that do not parse.
	removable []string
}

// scanLeases lists the tenant's lease objects and reads the newest refresh
// of each lease that has not ended.
func (t *Tenant) scanLeases(ctx context.Context, now time.Time) (leaseScan, error) {
	type lease struct {
		legacy   string // t/<handle>/l/<id>, written by earlier versions
		seqs     []string
		maxSeq   uint64
		newest   string
		released bool
		other    []string // under the lease's directory, not a valid name
	}
	var scan leaseScan
	prefix := t.DataPrefix() + "l/"
	leases := map[string]*lease{}
	var order []string
	err := t.Repo.St.List(ctx, prefix, func(i storage.Info) error {
		rest, ok := strings.CutPrefix(i.Key, prefix)
		if !ok {
			return nil
		}
		id, sub, nested := strings.Cut(rest, "/")
		l := leases[id]
		if l == nil {
			l = &lease{}
			leases[id] = l
			order = append(order, id)
		}
		switch {
		case !nested:
			l.legacy = i.Key
		case sub == leaseReleased:
			l.released = true
			l.other = append(l.other, i.Key)
		default:
			n, err := strconv.ParseUint(sub, 10, 64)
			if err != nil || len(sub) != leaseSeqDigits || n == 0 {
				l.other = append(l.other, i.Key)
				return nil
			}
			l.seqs = append(l.seqs, i.Key)
			if n > l.maxSeq {
				l.maxSeq, l.newest = n, i.Key
			}
		}
		return nil
	})
	if err != nil {
		return leaseScan{}, err
	}
	for _, id := range order {
		l := leases[id]
		all := append(append([]string(nil), l.seqs...), l.other...)
		if l.legacy != "" {
			all = append(all, l.legacy)
		}
		if l.released {
			scan.removable = append(scan.removable, all...)
			continue
		}
		newest := l.newest
		if newest == "" {
			newest = l.legacy
		}
		live := false
		var start time.Time
		if newest != "" {
			b, err := storage.ReadAll(ctx, t.Repo.St, newest)
			if errors.Is(err, storage.ErrNotExist) {
				// Superseded or removed since listed: a live lease
				// has a newer refresh, which the next prune sees.
				continue
			} else if err != nil {
				return leaseScan{}, err
			}
			var lb leaseBody
			if json.Unmarshal(b, &lb) == nil && now.Sub(lb.Refreshed) <= LeaseStale {
				live, start = true, lb.Start
			}
		}
		if !live {
			scan.removable = append(scan.removable, all...)
			continue
		}
		if scan.oldest.IsZero() || start.Before(scan.oldest) {
			scan.oldest = start
		}
		for _, k := range all {
			if k != newest {
				scan.removable = append(scan.removable, k)
			}
		}
	}
	return scan, nil
}
