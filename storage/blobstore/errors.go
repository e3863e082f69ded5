package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"gocloud.dev/gcerrors"
	"google.golang.org/api/googleapi"

	"github.com/reprise-backup/reprise/storage"
)

// httpStatus digs the HTTP status out of the services' own errors wrapped
// by the Go CDK, or returns 0.
func httpStatus(err error) int {
	var az *azcore.ResponseError
	if errors.As(err, &az) {
		return az.StatusCode
	}
	var g *googleapi.Error
	if errors.As(err, &g) {
		return g.Code
	}
	var h interface{ HTTPStatusCode() int } // aws-sdk-go-v2 (s3blob)
	if errors.As(err, &h) {
		return h.HTTPStatusCode()
	}
	return 0
}

// serviceCode returns the service's error code (Azure's ContainerNotFound,
// S3's NoSuchBucket, ...), or "".
func serviceCode(err error) string {
	var az *azcore.ResponseError
	if errors.As(err, &az) {
		return az.ErrorCode
	}
	var c interface{ ErrorCode() string } // smithy.APIError (s3blob)
	if errors.As(err, &c) {
		return c.ErrorCode()
	}
	var g *googleapi.Error
	if errors.As(err, &g) && len(g.Errors) > 0 {
		return g.Errors[0].Reason
	}
	return ""
}

func isNotFound(err error) bool {
	return gcerrors.Code(err) == gcerrors.NotFound && httpStatus(err) != 403 && httpStatus(err) != 401
}

// isPrecondition reports a failed create-only condition: Azure answers
// 409 BlobAlreadyExists or 412 ConditionNotMet, GCS and S3 412.
func isPrecondition(err error) bool {
	switch gcerrors.Code(err) {
	case gcerrors.FailedPrecondition, gcerrors.AlreadyExists:
		return true
	}
	st := httpStatus(err)
	return st == 412 || st == 409 && serviceCode(err) == "BlobAlreadyExists"
}

// isBucketMissing reports an error about the bucket (container) itself.
func isBucketMissing(err error) bool {
	switch serviceCode(err) {
	case "ContainerNotFound", "NoSuchBucket":
		return true
	}
	return strings.Contains(err.Error(), "storage: bucket doesn't exist")
}

// isTransient reports whether err is worth retrying: throttling, server
// errors, timeouts, connection failures.
func isTransient(err error) bool {
	if err == nil {
		return false
	}
	if st := httpStatus(err); st == 408 || st == 429 || st >= 500 {
		return true
	}
	switch gcerrors.Code(err) {
	case gcerrors.ResourceExhausted, gcerrors.DeadlineExceeded, gcerrors.Internal:
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return !dns.IsNotFound
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe") ||
		strings.Contains(msg, "use of closed network connection")
}

// outcomeUnknown reports whether a failed write may nevertheless have
// been applied: no answer came back, or a server error did.
func outcomeUnknown(err error) bool {
	st := httpStatus(err)
	return st >= 500 || st == 0 && isTransient(err)
}

func transientIf(err error) error {
	if isTransient(err) {
		return fmt.Errorf("%w: %w", storage.ErrTransient, err)
	}
	return err
}

// mapCtxError is mapError, except that a failure caused by the caller's
// context ending reports the context's error.
func mapCtxError(ctx context.Context, op, key string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("blobstore: %s %q: %w", op, key, cerr)
	}
	return mapError(op, key, err)
}

// mapError wraps a Go CDK error with the storage sentinel it stands for.
func mapError(op, key string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("blobstore: %s %q: %w", op, key, err)
	}
	var sentinel error
	st := httpStatus(err)
	switch code := gcerrors.Code(err); {
	case isBucketMissing(err):
		return fmt.Errorf("blobstore: %s %q: the bucket (container) does not exist: %w", op, key, err)
	case st == 401 || st == 403 || code == gcerrors.PermissionDenied:
		sentinel = storage.ErrPermission
	case code == gcerrors.NotFound || st == 404:
		sentinel = storage.ErrNotExist
	case st == 416:
		sentinel = storage.ErrInvalidRange
	case isTransient(err):
		sentinel = storage.ErrTransient
	default:
		return fmt.Errorf("blobstore: %s %q: %w", op, key, err)
	}
	return fmt.Errorf("blobstore: %s %q: %w: %w", op, key, sentinel, err)
}
