package storage

// Replicated is implemented by storages that keep several copies of each
// object (multisite). Readers that detect a bad copy at a higher level
// (authentication failure) use it to read another copy and to report the
// bad one.
//
// A storage wrapped by decorators (retry, metrics) is found with
// [AsReplicated].
type Replicated interface {
	// Replicas returns the copies, best first by the storage's current
	// view of their health. Each Storage is the raw store of one copy:
	// reading it bypasses the fallback and the bookkeeping of the
	// replicated storage.
	Replicas() []Replica

	// ReportBadCopy tells the storage that the copy of key held by the
	// replica named replica is damaged (reason says how, for logs). The
	// storage reads that copy last from then on and restores it from
	// another copy at its next repair. Unknown replica names are ignored.
	ReportBadCopy(replica, key string, reason error)
}

// Replica is one copy of a [Replicated] storage.
type Replica struct {
	// Name identifies the copy (a site name, say "sbg1").
	Name string
	// Domain is the failure domain holding it: a building, region or
	// provider.
	Domain string
	// Storage is the store of that copy alone.
	Storage Storage
}

// AsReplicated returns the Replicated storage s is, or wraps (through
// [Wrapper]), if any.
func AsReplicated(s Storage) (Replicated, bool) {
	for s != nil {
		if r, ok := s.(Replicated); ok {
			return r, true
		}
		w, ok := s.(Wrapper)
		if !ok {
			return nil, false
		}
		s = w.Unwrap()
	}
	return nil, false
}
