package cliutil

import (
	"context"
	"log/slog"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/multisite"
)

// Config says how to open a repository.
type Config struct {
	// Repos are the --repo values.
	Repos []string
	// WriteQuorum and AllowSingleDomain apply to multi-site repositories.
	WriteQuorum       int
	AllowSingleDomain bool
	// Getenv reads the credentials' environment variables.
	Getenv func(string) string
	// Logger receives the library's logs; nil discards them.
	Logger *slog.Logger
	// Warn receives one-line warnings; nil discards them.
	Warn func(msg string)
	// AppendOnly opens the repository append-only
	// (reprise.Options.AppendOnly).
	AppendOnly bool
}

// Session is an open repository with what opened it.
type Session struct {
	Repo    *reprise.Repository
	Storage storage.Storage
	// Multi is the multi-site store, nil for a single site.
	Multi *multisite.Store
	Sites []Site
	Creds *Creds
}

// Close closes the repository, its storage and the credentials.
func (s *Session) Close() {
	s.Repo.Close()
	s.Storage.Close()
	s.Creds.Close()
}

// Open opens the repository cfg names, with the credentials of the
// environment. It writes nothing.
func Open(ctx context.Context, cfg Config) (*Session, error) {
	sites, err := ParseSites(cfg.Repos)
	if err != nil {
		return nil, err
	}
	st, ms, err := OpenStorage(ctx, sites, StorageOptions{
		WriteQuorum: cfg.WriteQuorum, AllowSingleDomain: cfg.AllowSingleDomain, Warn: cfg.Warn, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	c, err := LoadCredentials(ctx, cfg.Getenv)
	if err != nil {
		st.Close()
		return nil, err
	}
	r, err := reprise.Open(ctx, st, c.Credentials, &reprise.Options{Logger: cfg.Logger, AppendOnly: cfg.AppendOnly})
	if err != nil {
		st.Close()
		c.Close()
		return nil, ExplainOpenError(err, c, sites)
	}
	return &Session{Repo: r, Storage: st, Multi: ms, Sites: sites, Creds: c}, nil
}
