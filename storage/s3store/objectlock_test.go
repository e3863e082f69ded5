package s3store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/reprise-backup/reprise"
	"github.com/reprise-backup/reprise/backup"
	"github.com/reprise-backup/reprise/internal/testutil"
	"github.com/reprise-backup/reprise/restore"
	"github.com/reprise-backup/reprise/storage"
	"github.com/reprise-backup/reprise/storage/s3store"
	"github.com/reprise-backup/reprise/storage/storagetest"
)

// Object Lock and versioned buckets, against the real server (.ci/servers.sh
// starts MinIO, which implements Object Lock: GOVERNANCE and COMPLIANCE
// retention, legal holds, and refuses to delete a locked version).

// newLockedStore opens a store with Object Lock in a fresh bucket created
// with Object Lock enabled (hence versioned), removed at cleanup: every
// version is deleted, bypassing governance retention; compliance versions
// still retained after a short wait are left (and logged).
func newLockedStore(tb testing.TB, prefix string, mode s3store.LockMode, retention time.Duration) *s3store.Store {
	tb.Helper()
	s, err := s3store.Open(context.Background(), uniqueBucket(), prefix, &s3store.Options{
		Endpoint: endpoint(tb), PathStyle: true, Region: "us-east-1", CreateBucket: true,
		PartSize: testPartSize, ObjectLock: mode, Retention: retention,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Close()
		removeVersionedBucket(tb, s.Client(), s.Bucket())
	})
	return s
}

type version struct{ key, id string }

// allVersions lists every version and delete marker under prefix.
func allVersions(tb testing.TB, c *s3.Client, bucket, prefix string) []version {
	tb.Helper()
	var out []version
	in := &s3.ListObjectVersionsInput{Bucket: &bucket, Prefix: aws.String(prefix)}
	for {
		page, err := c.ListObjectVersions(context.Background(), in)
		if err != nil {
			tb.Fatalf("listing versions of %s: %v", bucket, err)
		}
		for _, v := range page.Versions {
			out = append(out, version{aws.ToString(v.Key), aws.ToString(v.VersionId)})
		}
		for _, m := range page.DeleteMarkers {
			out = append(out, version{aws.ToString(m.Key), aws.ToString(m.VersionId)})
		}
		if !aws.ToBool(page.IsTruncated) {
			return out
		}
		in.KeyMarker, in.VersionIdMarker = page.NextKeyMarker, page.NextVersionIdMarker
	}
}

func removeVersionedBucket(tb testing.TB, c *s3.Client, bucket string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	deadline := time.Now().Add(15 * time.Second) // short compliance retentions end
	for {
		left := 0
		for _, v := range allVersions(tb, c, bucket, "") {
			_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &v.key, VersionId: &v.id, BypassGovernanceRetention: aws.Bool(true)})
			if err != nil {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			tb.Logf("cleanup: %d locked versions left in bucket %s (compliance retention)", left, bucket)
			return
		}
		time.Sleep(time.Second)
	}
	pendingUploads(tb, c, bucket)
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket}); err != nil {
		tb.Errorf("cleanup: deleting bucket %s: %v", bucket, err)
	}
}

func head(t *testing.T, s *s3store.Store, key string) *s3.HeadObjectOutput {
	t.Helper()
	h, err := s.Client().HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(s.Bucket()), Key: aws.String(s.Prefix() + key)})
	if err != nil {
		t.Fatalf("HeadObject(%s): %v", key, err)
	}
	return h
}

// TestConformanceObjectLockBucket runs the suite on a store with Object
// Lock configured, in a versioned bucket: the suite's puts do not ask for
// retention, so every delete must go through, removing every version.
func TestConformanceObjectLockBucket(t *testing.T) {
	endpoint(t)
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		s := newLockedStore(t, "", s3store.LockGovernance, time.Hour)
		t.Cleanup(func() {
			// Whatever the suite deleted left no version behind.
			var live []string
			s.List(context.Background(), "", func(i storage.Info) error { live = append(live, i.Key); return nil })
			for _, v := range allVersions(t, s.Client(), s.Bucket(), "") {
				if !slices.Contains(live, v.key) {
					t.Errorf("a version of deleted key %q is left", v.key)
				}
			}
		})
		return s
	}, &storagetest.Options{MultipartSize: testPartSize, Objects: 1100})
}

func TestObjectLockPuts(t *testing.T) {
	s := newLockedStore(t, "pre", s3store.LockGovernance, time.Hour)
	ctx := t.Context()
	retain := &storage.PutOptions{IfNotExist: true, Retain: true}
	if err := s.Put(ctx, "locked", strings.NewReader("history"), 7, retain); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 2*testPartSize+1)
	rand.Read(big)
	if err := s.Put(ctx, "big", bytes.NewReader(big), int64(len(big)), retain); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "plain", strings.NewReader("keys"), 4, &storage.PutOptions{IfNotExist: true}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"locked", "big"} {
		h := head(t, s, k)
		until := aws.ToTime(h.ObjectLockRetainUntilDate)
		if h.ObjectLockMode != types.ObjectLockModeGovernance || until.Before(time.Now().Add(59*time.Minute)) || until.After(time.Now().Add(61*time.Minute)) {
			t.Errorf("%s: lock %q until %v, want GOVERNANCE for an hour", k, h.ObjectLockMode, until)
		}
	}
	if h := head(t, s, "plain"); h.ObjectLockMode != "" || h.ObjectLockRetainUntilDate != nil {
		t.Errorf("plain: locked (%q until %v) without Retain", h.ObjectLockMode, h.ObjectLockRetainUntilDate)
	}

	// Deleting a locked object fails, says until when, and changes nothing.
	for _, k := range []string{"locked", "big"} {
		err := s.Delete(ctx, k)
		until, ok := storage.RetainedUntil(err)
		if !errors.Is(err, storage.ErrRetained) || !errors.Is(err, storage.ErrPermission) || !ok || until.Before(time.Now().Add(59*time.Minute)) {
			t.Fatalf("Delete(%s) = %v (until %v), want ErrRetained and ErrPermission until in an hour", k, err, until)
		}
	}
	if b, err := storage.ReadAll(ctx, s, "locked"); err != nil || string(b) != "history" {
		t.Fatalf("locked object after the refused delete: %q, %v", b, err)
	}
	if b, err := storage.ReadAll(ctx, s, "big"); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("big locked object after the refused delete: %d bytes, %v", len(b), err)
	}

	// A versioned delete leaves no version: after overwrites, after a
	// delete marker made by another tool.
	for i := range 3 {
		if err := s.Put(ctx, "plain", strings.NewReader(fmt.Sprint(i)), 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "plain"); err != nil {
		t.Fatal(err)
	}
	if vs := allVersions(t, s.Client(), s.Bucket(), "pre/plain"); len(vs) != 0 {
		t.Fatalf("versions left after Delete: %v", vs)
	}
	if err := s.Put(ctx, "marked", strings.NewReader("x"), 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.Bucket()), Key: aws.String("pre/marked")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "marked"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Delete of a key hidden by a delete marker = %v, want ErrNotExist", err)
	}
	if vs := allVersions(t, s.Client(), s.Bucket(), "pre/marked"); len(vs) != 0 {
		t.Fatalf("versions left after Delete of a hidden key: %v", vs)
	}
	if err := s.Delete(ctx, "nothing"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Delete(missing) = %v", err)
	}
}

// TestObjectLockCompliance: a compliance lock refuses even the bucket's
// owner, and lets go when it ends.
func TestObjectLockCompliance(t *testing.T) {
	s := newLockedStore(t, "", s3store.LockCompliance, 3*time.Second)
	ctx := t.Context()
	if err := s.Put(ctx, "k", strings.NewReader("v"), 1, &storage.PutOptions{IfNotExist: true, Retain: true}); err != nil {
		t.Fatal(err)
	}
	if h := head(t, s, "k"); h.ObjectLockMode != types.ObjectLockModeCompliance {
		t.Fatalf("mode %q, want COMPLIANCE", h.ObjectLockMode)
	}
	if err := s.Delete(ctx, "k"); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("Delete under compliance retention = %v, want ErrRetained", err)
	}
	_, err := s.Client().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.Bucket()), Key: aws.String("k"),
		VersionId: head(t, s, "k").VersionId, BypassGovernanceRetention: aws.Bool(true)})
	if err == nil {
		t.Fatal("the owner deleted a compliance-locked version, bypass or not")
	}
	time.Sleep(time.Until(aws.ToTime(head(t, s, "k").ObjectLockRetainUntilDate)) + 500*time.Millisecond)
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete after the retention: %v", err)
	}
	if vs := allVersions(t, s.Client(), s.Bucket(), ""); len(vs) != 0 {
		t.Fatalf("versions left: %v", vs)
	}
}

func TestObjectLockOpenChecks(t *testing.T) {
	ep := endpoint(t)
	plain := newStore(t, "", s3store.Options{})
	_, err := s3store.Open(t.Context(), plain.Bucket(), "", &s3store.Options{Endpoint: ep, PathStyle: true, Region: "us-east-1",
		ObjectLock: s3store.LockGovernance, Retention: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "has no Object Lock") {
		t.Fatalf("Open with Object Lock on a bucket without = %v", err)
	}
	// A default retention would lock the keys too.
	locked := newLockedStore(t, "", s3store.LockGovernance, time.Hour)
	if _, err := locked.Client().PutObjectLockConfiguration(t.Context(), &s3.PutObjectLockConfigurationInput{
		Bucket: aws.String(locked.Bucket()),
		ObjectLockConfiguration: &types.ObjectLockConfiguration{ObjectLockEnabled: types.ObjectLockEnabledEnabled,
			Rule: &types.ObjectLockRule{DefaultRetention: &types.DefaultRetention{Mode: types.ObjectLockRetentionModeGovernance, Days: aws.Int32(1)}}},
	}); err != nil {
		t.Fatal(err)
	}
	_, err = s3store.Open(t.Context(), locked.Bucket(), "", &s3store.Options{Endpoint: ep, PathStyle: true, Region: "us-east-1",
		ObjectLock: s3store.LockGovernance, Retention: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "default retention") {
		t.Fatalf("Open with Object Lock on a bucket with a default retention = %v", err)
	}
	// Through a URL.
	st, err := storage.Open(t.Context(), "s3://"+uniqueBucket()+"/r?endpoint="+ep+"&path_style=true&region=us-east-1&create=true&object_lock=governance&retention=2h")
	if err != nil {
		t.Fatal(err)
	}
	s := st.(*s3store.Store)
	defer removeVersionedBucket(t, s.Client(), s.Bucket())
	if err := s.Put(t.Context(), "k", strings.NewReader("v"), 1, &storage.PutOptions{Retain: true}); err != nil {
		t.Fatal(err)
	}
	if h := head(t, s, "k"); h.ObjectLockMode != types.ObjectLockModeGovernance || aws.ToTime(h.ObjectLockRetainUntilDate).Before(time.Now().Add(119*time.Minute)) {
		t.Fatalf("object put through a URL store: lock %q until %v", h.ObjectLockMode, h.ObjectLockRetainUntilDate)
	}
}

// TestObjectLockRepository backs up into a bucket with Object Lock: the data
// objects are locked, the keys are not. Forgetting and pruning keep what is
// locked and report it, the repository stays sound and restorable, and a
// tenant can still be crypto-shredded: no version of its key envelope is
// left.
func TestObjectLockRepository(t *testing.T) {
	st := newLockedStore(t, "repo", s3store.LockGovernance, time.Hour)
	ctx := t.Context()
	c, bucket := st.Client(), st.Bucket()
	r := testutil.InitRepo(t, st, testutil.SmallChunks)
	acme, err := r.Tenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	defer acme.Close()
	data := map[string][]byte{}
	var ids []string
	for range 2 {
		b := make([]byte, 200<<10)
		rand.Read(b)
		res, err := backup.Stream(ctx, acme, "db.sql", bytes.NewReader(b), nil)
		if err != nil {
			t.Fatal(err)
		}
		data[res.Snapshot.ID] = b
		ids = append(ids, res.Snapshot.ID)
	}

	// Data objects are locked; keys, config and coordination are not.
	locked := map[string]bool{}
	err = st.List(ctx, "", func(i storage.Info) error {
		h := head(t, st, i.Key)
		locked[i.Key] = h.ObjectLockMode == types.ObjectLockModeGovernance
		parts := strings.Split(i.Key, "/")
		wantLocked := parts[0] == "t" && strings.Contains("pisr", parts[2])
		if locked[i.Key] != wantLocked {
			t.Errorf("%s: locked=%v", i.Key, locked[i.Key])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Forget everything but the last: the older snapshot is retained,
	// reported, and stays; prune then finds nothing to delete.
	ds, err := acme.Forget(ctx, reprise.Retention{KeepLast: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || !ds[1].Retained || ds[1].RetainedUntil.Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("forget under Object Lock: %+v", ds)
	}
	// The first snapshot's lock is removed by an administrator (it
	// could have ended): forget takes it, and its data is unused.
	for _, v := range allVersions(t, c, bucket, "repo/") {
		if strings.HasSuffix(v.key, "/s/"+ids[0]) {
			if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &v.key, VersionId: &v.id, BypassGovernanceRetention: aws.Bool(true)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	now := time.Now()
	if rep, err := r.Prune(ctx, &reprise.PruneOptions{Now: now}); err != nil || rep.PacksMarked == 0 {
		t.Fatalf("marking prune: %+v, %v", rep, err)
	}
	rep, err := r.Prune(ctx, &reprise.PruneOptions{Now: now.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sweep under Object Lock: %d packs and %d index objects retained, %d packs deleted", rep.PacksRetained, rep.IndexesRetained, rep.PacksDeleted)
	if rep.PacksRetained == 0 || rep.IndexesRetained == 0 || rep.PacksDeleted != 0 || len(rep.Retained) == 0 {
		t.Fatalf("sweep under Object Lock: %+v", rep)
	}
	// A locked pack cannot be deleted through the driver either.
	var pack string
	for _, k := range rep.Retained {
		if strings.Contains(k, "/p/") {
			pack = k
		}
	}
	if err := st.Delete(ctx, pack); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("Delete of a locked pack = %v, want ErrRetained", err)
	}
	check, err := r.Check(ctx, &reprise.CheckOptions{ReadData: true})
	if err != nil || len(check.Problems) != 0 {
		t.Fatalf("check after the sweep: %v %v", check.Problems, err)
	}
	var out bytes.Buffer
	if _, err := restore.Stream(ctx, acme, ids[1], &out, nil); err != nil || !bytes.Equal(out.Bytes(), data[ids[1]]) {
		t.Fatalf("restore after the sweep: %v", err)
	}

	// Crypto-shredding: the envelope goes, every version of it; the
	// locked data stays, reported, undecryptable.
	tenantsBefore := allVersions(t, c, bucket, "repo/tenants/")
	gone, err := r.Tenant(ctx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Stream(ctx, gone, "x", strings.NewReader(strings.Repeat("secret ", 10000)), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := gone.RollKey(ctx); err != nil { // a second envelope version
		t.Fatal(err)
	}
	gone.Close()
	var envelope string
	for _, v := range allVersions(t, c, bucket, "repo/tenants/") {
		if !slices.Contains(tenantsBefore, v) {
			envelope = v.key[:strings.LastIndexByte(v.key, '/')+1]
		}
	}
	if envelope == "" {
		t.Fatal("no envelope found for the new tenant")
	}
	er, err := r.EraseTenant(ctx, "gone")
	if err != nil {
		t.Fatalf("erase under Object Lock: %v", err)
	}
	if len(er.Retained) == 0 {
		t.Fatalf("erase under Object Lock: %+v, want retained objects reported", er)
	}
	if vs := allVersions(t, c, bucket, envelope); len(vs) != 0 {
		t.Fatalf("versions of the erased tenant's envelope left: %v", vs)
	}
	if _, err := r.OpenTenant(ctx, "gone"); !errors.Is(err, reprise.ErrTenantNotFound) {
		t.Fatalf("erased tenant opens: %v", err)
	}
	r2, err := reprise.Open(ctx, st, reprise.Credentials{Passphrase: []byte(testutil.Passphrase)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if _, err := r2.OpenTenant(ctx, "gone"); !errors.Is(err, reprise.ErrTenantNotFound) {
		t.Fatalf("erased tenant opens in a new session: %v", err)
	}
	if check, err := r2.Check(ctx, nil); err != nil || len(check.Problems) != 0 {
		t.Fatalf("check after the erasure: %v %v", check.Problems, err)
	}
}

// TestAppendOnlyCredentials backs up with credentials that a server-side
// policy forbids to delete (MinIO's STS AssumeRole with an inline session
// policy denying s3:DeleteObject*): the backup works, in append-only mode
// and without it, and a delete is refused by the server.
func TestAppendOnlyCredentials(t *testing.T) {
	ep := endpoint(t)
	admin := newStore(t, "repo", s3store.Options{PartSize: testPartSize})
	ctx := t.Context()
	testutil.InitRepo(t, admin, testutil.SmallChunks)

	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	const policy = `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]},
		{"Effect":"Deny","Action":["s3:DeleteObject","s3:DeleteObjectVersion","s3:PutBucket*","s3:DeleteBucket*","s3:PutObjectRetention","s3:PutObjectLegalHold","s3:BypassGovernanceRetention","s3:PutLifecycleConfiguration"],"Resource":["arn:aws:s3:::*"]}]}`
	out, err := sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = aws.String(ep) }).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::000000000000:role/reprise-backup"), RoleSessionName: aws.String("backup"),
		Policy: aws.String(policy), DurationSeconds: aws.Int32(900),
	})
	if err != nil {
		t.Fatalf("STS AssumeRole on the test server: %v", err)
	}
	creds := credentials.NewStaticCredentialsProvider(aws.ToString(out.Credentials.AccessKeyId), aws.ToString(out.Credentials.SecretAccessKey), aws.ToString(out.Credentials.SessionToken))
	st, err := s3store.Open(ctx, admin.Bucket(), "repo", &s3store.Options{Endpoint: ep, PathStyle: true, Region: "us-east-1", Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	pass := reprise.Credentials{Passphrase: []byte(testutil.Passphrase)}
	for _, appendOnly := range []bool{true, false} {
		r, err := reprise.Open(ctx, st, pass, &reprise.Options{AppendOnly: appendOnly})
		if err != nil {
			t.Fatal(err)
		}
		ten, err := r.Tenant(ctx, fmt.Sprint("acme-", appendOnly))
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 300<<10)
		rand.Read(b)
		res, err := backup.Stream(ctx, ten, "db.sql", bytes.NewReader(b), nil)
		if err != nil {
			t.Fatalf("backup with append-only credentials (AppendOnly=%v): %v", appendOnly, err)
		}
		var got bytes.Buffer
		if _, err := restore.Stream(ctx, ten, res.Snapshot.ID, &got, nil); err != nil || !bytes.Equal(got.Bytes(), b) {
			t.Fatalf("restore: %v", err)
		}
		if !appendOnly {
			// Forget reaches the server, which refuses.
			backup.Stream(ctx, ten, "db.sql", strings.NewReader("newer"), nil)
			if _, err := ten.Forget(ctx, reprise.Retention{KeepLast: 1}, nil); !errors.Is(err, storage.ErrPermission) {
				t.Errorf("forget with append-only credentials = %v, want ErrPermission", err)
			}
		}
		ten.Close()
		r.Close()
	}
	// The server refuses a delete by these credentials.
	var key string
	st.List(ctx, "t/", func(i storage.Info) error { key = i.Key; return nil })
	if err := st.Delete(ctx, key); !errors.Is(err, storage.ErrPermission) {
		t.Fatalf("Delete with append-only credentials = %v, want ErrPermission", err)
	}
	if _, err := admin.Stat(ctx, key); err != nil {
		t.Fatalf("the object is gone after a refused delete: %v", err)
	}
	// The released leases left by these backups are removed by a prune
	// with full credentials.
	r, err := reprise.Open(ctx, admin, pass, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := r.Prune(ctx, nil)
	if err != nil || rep.LeasesRemoved == 0 {
		t.Fatalf("prune with full credentials: %+v, %v", rep, err)
	}
}
