package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// abortTimeout bounds the AbortMultipartUpload sent after a failure; it
// runs on a context detached from the caller's, which may be cancelled.
const abortTimeout = 30 * time.Second

// The multipart upload is driven here rather than by the transfer manager
// (feature/s3/transfermanager) because the data is an io.ReaderAt: each
// part is an io.SectionReader over it, so nothing is copied and any number
// of parts can be read concurrently, and a part's body is seekable, which
// lets the SDK sign it and rewind it for its retries over plain http. The
// transfer manager takes an io.Reader and copies every part into pooled
// buffers (PartSize × (Concurrency+1) bytes per upload).

// putMultipart uploads size bytes of r as a multipart upload. token is
// empty for an overwriting put; otherwise the put is create-only and the
// token is stored in the object's metadata (see resolveConditional).
// lockMode and lockUntil, when set, lock the object (Object Lock).
func (s *Store) putMultipart(ctx context.Context, key string, r io.ReaderAt, size int64, token string, lockMode types.ObjectLockMode, lockUntil *time.Time) error {
	objKey := aws.String(s.prefix + key)
	ifNotExist := token != ""
	partSize := s.partSize
	if (size+partSize-1)/partSize > MaxParts {
		partSize = (size + MaxParts - 1) / MaxParts
	}
	nparts := int((size + partSize - 1) / partSize)

	create := &s3.CreateMultipartUploadInput{
		Bucket:            &s.bucket,
		Key:               objKey,
		ContentType:       aws.String(contentType),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	}
	if ifNotExist {
		create.Metadata = map[string]string{metaToken: token}
	}
	if lockUntil != nil {
		create.ObjectLockMode, create.ObjectLockRetainUntilDate = lockMode, lockUntil
	}
	cout, err := s.client.CreateMultipartUpload(ctx, create)
	if err != nil {
		return mapCtxError(ctx, "put", key, err)
	}
	uploadID := cout.UploadId
	completed := false
	defer func() {
		if !completed {
			s.abort(ctx, objKey, uploadID)
		}
	}()

	parts, err := s.uploadParts(ctx, key, objKey, uploadID, r, size, partSize, nparts)
	if err != nil {
		return err
	}

	complete := &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             objKey,
		UploadId:        uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if ifNotExist {
		complete.IfNoneMatch = aws.String("*")
	}
	_, err = s.client.CompleteMultipartUpload(ctx, complete)
	if err == nil {
		completed = true
		return nil
	}
	if ifNotExist {
		err = s.resolveConditional(ctx, "put", key, token, err)
		completed = err == nil
		return err
	}
	return mapCtxError(ctx, "put", key, err)
}

// uploadParts uploads the nparts parts of r, s.concurrency at a time, and
// returns them in part-number order. The first failure cancels the parts
// in flight.
func (s *Store) uploadParts(ctx context.Context, key string, objKey, uploadID *string, r io.ReaderAt, size, partSize int64, nparts int) ([]types.CompletedPart, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	parts := make([]types.CompletedPart, nparts)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	next := make(chan int)
	workers := min(s.concurrency, nparts)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				off := int64(i) * partSize
				n := min(partSize, size-off)
				body := &trackedBody{SectionReader: io.NewSectionReader(r, off, n)}
				out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
					Bucket:            &s.bucket,
					Key:               objKey,
					UploadId:          uploadID,
					PartNumber:        aws.Int32(int32(i + 1)),
					Body:              body,
					ContentLength:     aws.Int64(n),
					ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
				})
				if err != nil {
					if rerr := body.readErr(); rerr != nil {
						err = fmt.Errorf("s3store: put %q: reading part %d: %w", key, i+1, rerr)
					} else {
						err = mapCtxError(ctx, "put", key, err)
					}
					fail(err)
					continue
				}
				parts[i] = types.CompletedPart{
					PartNumber:    aws.Int32(int32(i + 1)),
					ETag:          out.ETag,
					ChecksumCRC32: out.ChecksumCRC32,
				}
			}
		}()
	}
feed:
	for i := range nparts {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		// A cancellation caused by the first failure is not the story;
		// fail keeps the first error, which is the root cause unless
		// the caller's own context ended.
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3store: put %q: %w", key, err)
	}
	return parts, nil
}

// abort aborts a multipart upload, so that its parts stop taking space.
// It runs even when ctx is done; a failure is ignored (a bucket lifecycle
// rule "AbortIncompleteMultipartUpload" is the safety net).
func (s *Store) abort(ctx context.Context, objKey, uploadID *string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	_, _ = s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket:   &s.bucket,
		Key:      objKey,
		UploadId: uploadID,
	})
}

// trackedBody is a request body over the caller's io.ReaderAt that
// remembers a read failure, to tell the caller's errors from the
// network's. It stays an io.Seeker, which the SDK needs over plain http.
type trackedBody struct {
	*io.SectionReader
	mu  sync.Mutex
	err error
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.SectionReader.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *trackedBody) readErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}
