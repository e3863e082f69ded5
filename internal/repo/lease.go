package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/reprise-backup/reprise/crypto"
	"github.com/reprise-backup/reprise/storage"
)

// Leases announce running backups to prune, which must not delete what a
// running backup may have deduplicated against. A lease is not a lock: it
// blocks nobody; prune only postpones deleting packs it marked after the
// lease's backup started. "t/<handle>/l/<id>" holds the backup's start and
// the time of the lease's last refresh; a lease not refreshed for
// LeaseStale is from a dead process and ignored.
const (
	LeaseRefresh = time.Minute
	LeaseStale   = 10 * time.Minute
)

type leaseBody struct {
	Start     time.Time `json:"start"`
	Refreshed time.Time `json:"refreshed"`
}

// Lease is a running backup's announcement.
type Lease struct {
	t    *Tenant
	key  string
	body leaseBody
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// TakeLease writes a lease and refreshes it until Release.
func (t *Tenant) TakeLease(ctx context.Context, start time.Time) (*Lease, error) {
	id, err := crypto.RandomID()
	if err != nil {
		return nil, err
	}
	l := &Lease{t: t, key: t.DataPrefix() + "l/" + id.String(), body: leaseBody{Start: start.UTC(), Refreshed: time.Now().UTC()}, stop: make(chan struct{})}
	if err := l.write(ctx); err != nil {
		return nil, fmt.Errorf("writing backup lease: %w", err)
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tk := time.NewTicker(LeaseRefresh)
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

func (l *Lease) write(ctx context.Context) error {
	b, _ := json.Marshal(l.body)
	return putBytes(ctx, l.t.Repo.St, l.key, b, false)
}

// Release stops refreshing and deletes the lease. It may be called more
// than once.
func (l *Lease) Release() { l.once.Do(l.release) }

func (l *Lease) release() {
	close(l.stop)
	l.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.t.Repo.St.Delete(ctx, l.key); err != nil && !errors.Is(err, storage.ErrNotExist) {
		l.t.Repo.Log.Warn("could not remove backup lease", "err", err)
	}
}

// oldestLiveLease returns the start of the oldest running backup of the
// tenant, or the zero time when none runs.
func (t *Tenant) oldestLiveLease(ctx context.Context, now time.Time) (time.Time, error) {
	var oldest time.Time
	prefix := t.DataPrefix() + "l/"
	err := t.Repo.St.List(ctx, prefix, func(i storage.Info) error {
		b, err := storage.ReadAll(ctx, t.Repo.St, i.Key)
		if errors.Is(err, storage.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		var lb leaseBody
		if json.Unmarshal(b, &lb) != nil || !strings.HasPrefix(i.Key, prefix) {
			return nil
		}
		if now.Sub(lb.Refreshed) > LeaseStale {
			return nil // its process died
		}
		if oldest.IsZero() || lb.Start.Before(oldest) {
			oldest = lb.Start
		}
		return nil
	})
	return oldest, err
}
