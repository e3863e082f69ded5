package restore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/internal/format"
)

// DrillOptions tune a restore drill. The zero value drills every file.
type DrillOptions struct {
	Options
	// SamplePercent, in (0, 100], drills a random sample of the files;
	// 0 means all of them.
	SamplePercent float64
}

// DrillResult is a measured restore: what was read and verified, how long
// it took in total, and where the time went.
type DrillResult struct {
	Snapshot reprise.Snapshot
	Files    int64
	Bytes    int64
	Duration time.Duration
	// Stages sums the time spent in each stage over all goroutines
	// ("fetch", "decrypt", "decompress", "verify"); with several
	// goroutines the sum exceeds Duration. It shows which stage bounds the
	// restore time objective.
	Stages map[string]time.Duration
	// Failed lists the files that did not restore.
	Failed []*FileError
}

// Drill restores snapshot ref to nowhere: every chunk of every (sampled)
// file is fetched, authenticated, decrypted, decompressed and checked
// against its ID, and each file's length against the tree, exactly as a
// real restore would — but nothing is written. It records a run record of
// kind "drill" with the stage timings, so the recovery time objective is
// measured, not guessed. An error matching ErrIncomplete means some files
// would not have restored.
func Drill(ctx context.Context, t *reprise.Tenant, ref string, opts *DrillOptions) (*DrillResult, error) {
	if opts == nil {
		opts = &DrillOptions{}
	}
	if opts.SamplePercent < 0 || opts.SamplePercent > 100 {
		return nil, fmt.Errorf("restore: sample percentage %v not in (0, 100]", opts.SamplePercent)
	}
	s, err := newSession(ctx, t, ref, &opts.Options)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	d := &dirRestore{s: s, drill: true, keep: func(*format.Node) bool {
		return opts.SamplePercent == 0 || rng.Float64()*100 < opts.SamplePercent
	}}
	walkErr := d.run(ctx)
	stages := map[string]time.Duration{
		"fetch": time.Duration(s.loader.Fetch.Load()), "decrypt": time.Duration(s.loader.Decrypt.Load()),
		"decompress": time.Duration(s.loader.Decompress.Load()), "verify": time.Duration(s.loader.Verify.Load()),
	}
	res := &DrillResult{Files: s.files.Load(), Bytes: s.bytes.Load(), Duration: time.Since(s.start), Stages: stages, Failed: s.failed}
	res.Snapshot = reprise.Snapshot{ID: s.snap.ID.String(), Time: s.snap.Time, Host: s.snap.Host, Kind: s.snap.Kind,
		Source: s.snap.Source, Tags: s.snap.Tags, Stats: s.snap.Stats}
	var outErr error
	switch {
	case walkErr != nil:
		outErr = fmt.Errorf("restore drill: %w", walkErr)
	case len(s.failed) > 0:
		outErr = &IncompleteError{Failed: s.failed}
	}
	rec := &format.Record{Kind: format.RunDrill, Source: s.snap.Source, Start: s.start, End: time.Now(), OK: outErr == nil,
		Snapshot: s.snap.ID.String(), Files: res.Files, Bytes: res.Bytes, Problems: int64(len(s.failed)),
		Stages: map[string]float64{"total": res.Duration.Seconds()}}
	for k, v := range stages {
		rec.Stages[k] = v.Seconds()
	}
	if outErr != nil {
		rec.Error = outErr.Error()
	}
	s.writeRecord(rec)
	return res, outErr
}
