package repo

// Unwrap returns the internal tenant behind a public *reprise.Tenant. The
// root package sets it in its init, so the backup and restore packages can
// reach a tenant's keys without the public API exposing them.
var Unwrap func(publicTenant any) *Tenant
