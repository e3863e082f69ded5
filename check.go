package reprise

import (
	"context"

	"github.com/reprise-backup/reprise/internal/repo"
)

// CheckOptions tune Check. The zero value checks the structure only.
type CheckOptions struct {
	// ReadData also reads every pack, authenticates and decrypts every
	// chunk and checks it against its ID.
	ReadData bool
}

// CheckReport is the outcome of Check. The repository is sound when
// Problems is empty.
type CheckReport struct {
	Tenants, Snapshots, Packs, Chunks int64
	// BytesRead counts the pack bytes read with ReadData.
	BytesRead int64
	// Unreferenced counts packs that no index names: left by interrupted
	// backups, harmless (their chunks are stored again when needed).
	Unreferenced int64
	// Problems lists every defect found, each naming the object at fault.
	Problems []Problem
}

// Problem is one defect found by Check. Err wraps the cause, testable with
// errors.Is (ErrAuth, ErrCorrupt, ErrChunkMissing, storage.ErrNotExist...).
type Problem struct {
	Tenant string // empty for repository-level objects
	Object string // the stored object at fault, when there is one
	Err    error
}

func (p Problem) Error() string { return repo.Problem(p).Error() }

// Unwrap returns the cause.
func (p Problem) Unwrap() error { return p.Err }

// Check verifies the repository: for every tenant, that every snapshot's
// tree reads back and every chunk it references is indexed, and that every
// pack an index names exists; with ReadData, that every chunk in every
// pack authenticates, decrypts and matches its ID. It returns an error
// only when it could not run (backend unreachable, cancelled); defects are
// reported in the CheckReport.
func (r *Repository) Check(ctx context.Context, opts *CheckOptions) (*CheckReport, error) {
	var o repo.CheckOptions
	if opts != nil {
		o.ReadData = opts.ReadData
	}
	rep, err := r.r.Check(ctx, o)
	if err != nil {
		return nil, err
	}
	out := &CheckReport{
		Tenants: rep.Tenants, Snapshots: rep.Snapshots, Packs: rep.Packs, Chunks: rep.Chunks,
		BytesRead: rep.BytesRead, Unreferenced: rep.Unreferenced,
	}
	for _, p := range rep.Problems {
		out.Problems = append(out.Problems, Problem(p))
	}
	return out, nil
}
