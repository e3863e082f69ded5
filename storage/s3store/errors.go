package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/reprise-backup/reprise/storage"
)

// httpStatus returns the HTTP status of an SDK error, or 0 when the request
// got no answer.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// apiCode returns the S3 error code (NoSuchKey, SlowDown, ...) of an SDK
// error, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	return errors.As(err, &nsk) || errors.As(err, &nf) || httpStatus(err) == 404
}

func isPreconditionFailed(err error) bool {
	return httpStatus(err) == 412 || apiCode(err) == "PreconditionFailed"
}

// throttleCodes are error codes of throttling that some servers send with
// statuses the SDK does not retry (400, 429).
var throttleCodes = map[string]bool{
	"SlowDown": true, "Throttling": true, "ThrottlingException": true,
	"RequestLimitExceeded": true, "TooManyRequests": true, "TooManyRequestsException": true,
	"RequestThrottled": true, "BandwidthLimitExceeded": true, "RequestTimeout": true,
	"ServiceUnavailable": true, "InternalError": true, "XMinioServerNotInitialized": true,
	// A concurrent conditional write is in progress on the key (AWS
	// answers 409 and asks for a retry).
	"ConditionalRequestConflict": true, "OperationAborted": true,
}

// isTransient reports whether err is worth retrying: throttling, 5xx,
// timeouts and connection failures.
func isTransient(err error) bool {
	if err == nil {
		return false
	}
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return false // a misspelt endpoint: retrying will not help
	}
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary {
		return true
	}
	if st := httpStatus(err); st == 429 || st >= 500 {
		return true
	}
	if throttleCodes[apiCode(err)] {
		return true
	}
	var send *smithyhttp.RequestSendError
	if errors.As(err, &send) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED)
}

// outcomeUnknown reports whether a failed write may nevertheless have
// been applied: no answer came back, or a server error did.
func outcomeUnknown(err error) bool {
	switch st := httpStatus(err); {
	case st >= 500:
		return true
	case st == 0:
		var send *smithyhttp.RequestSendError
		return isTransient(err) || errors.As(err, &send)
	}
	return false
}

// transientIf marks err as transient when it is.
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
		return fmt.Errorf("s3store: %s %q: %w", op, key, cerr)
	}
	return mapError(op, key, err)
}

// mapError wraps an SDK error with the storage sentinel it stands for.
func mapError(op, key string, err error) error {
	var sentinel error
	st := httpStatus(err)
	code := apiCode(err)
	switch {
	case code == "NoSuchBucket":
		return fmt.Errorf("s3store: %s %q: the bucket does not exist: %w", op, key, err)
	case isNotFound(err):
		sentinel = storage.ErrNotExist
	case isPreconditionFailed(err):
		sentinel = storage.ErrExist
	case st == 416 || code == "InvalidRange":
		sentinel = storage.ErrInvalidRange
	case st == 401 || st == 403 || code == "AccessDenied" || code == "InvalidAccessKeyId" ||
		code == "SignatureDoesNotMatch" || code == "ExpiredToken" || code == "InvalidToken":
		sentinel = storage.ErrPermission
	case isTransient(err):
		sentinel = storage.ErrTransient
	default:
		return fmt.Errorf("s3store: %s %q: %w", op, key, err)
	}
	return fmt.Errorf("s3store: %s %q: %w: %w", op, key, sentinel, err)
}
