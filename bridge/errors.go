package bridge

import (
	"errors"
	"fmt"
	"time"
)

// Errors of the pipeline and of the Store contract, matched with errors.Is.
var (
	// ErrInputClosed is returned by Submit after CloseInput.
	ErrInputClosed = errors.New("bridge: pipeline input is closed")
	// ErrStopped is returned by Submit once the pipeline has stopped taking
	// input (its context was cancelled, it failed, or Run returned). Run's
	// return value says why.
	ErrStopped = errors.New("bridge: pipeline stopped")
	// ErrOutOfOrder is wrapped by Submit when a sequence is not greater than
	// the previous one (or than the start checkpoint).
	ErrOutOfOrder = errors.New("bridge: notification sequences must be strictly increasing")
	// ErrSinkContract is wrapped by Run's error when the sink broke the Sink
	// contract (an Ack for a notification that is not the next one expected).
	ErrSinkContract = errors.New("bridge: sink broke the acknowledgement contract")
	// ErrKeyHeld is wrapped by stores when another bridge holds the
	// checkpoint key.
	ErrKeyHeld = errors.New("checkpoint key is held by another bridge")
)

// PermanentError marks a sink failure that retrying cannot fix (too large,
// invalid subject, unknown topic, not authorised).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError (nil stays nil).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err (or anything it wraps) is a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RetryableError marks a failure that waiting can fix: the destination is
// not reachable or not ready yet (connection refused, no servers, timeout,
// no leader). Sinks and stores return it from their constructors when the
// broker is not there yet, so that a caller starting next to the broker
// waits for it (errors.As) instead of exiting; its text is Err's.
//
// An error that is neither a RetryableError nor a PermanentError is a
// failure of another kind: at start-up, a configuration or environment
// problem that waiting does not fix.
type RetryableError struct {
	Err error
	// Wait is the least pause the source suggests before the next try;
	// zero means the caller's own backoff.
	Wait time.Duration
}

func (e *RetryableError) Error() string { return e.Err.Error() }
func (e *RetryableError) Unwrap() error { return e.Err }

// Retryable wraps err as a RetryableError (nil stays nil; an error that is
// already retryable or permanent is returned as it is).
func Retryable(err error) error {
	if err == nil || IsRetryable(err) || IsPermanent(err) {
		return err
	}
	return &RetryableError{Err: err}
}

// IsRetryable reports whether err (or anything it wraps) is a
// RetryableError.
func IsRetryable(err error) bool {
	var r *RetryableError
	return errors.As(err, &r)
}

// RejectedError is a notification the sink rejected permanently while
// BRIDGE_ON_REJECT=fail: Run returns an error wrapping it. The committed
// checkpoint stays before Sequence.
type RejectedError struct {
	ID       string
	Sequence uint64
	// Err is the sink's error (a *PermanentError).
	Err error
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("sink rejected notification %s (sequence %d) permanently: %v", e.ID, e.Sequence, e.Err)
}

func (e *RejectedError) Unwrap() error { return e.Err }
