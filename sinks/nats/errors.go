package nats

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Errors of this package's own making. All are retryable.
var (
	// ErrEarlierFailed is returned by Publish after a retryable failure was
	// reported, until every outstanding acknowledgement has been received:
	// sending now could store this notification before the failed one.
	ErrEarlierFailed = errors.New("nats: an earlier publish failed; waiting for outstanding acknowledgements before re-publishing")
	// ErrReconnected fails a publish that was outstanding, or would follow
	// outstanding publishes, across a reconnect: what the old connection
	// carried is unknown.
	ErrReconnected = errors.New("nats: connection re-established while publishes were outstanding")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("nats: sink closed")
)

// JetStream API error codes that nats.go has no constant for.
const (
	codeStreamNotMatch jetstream.ErrorCode = 10060 // expected stream does not match
	codeStreamSealed   jetstream.ErrorCode = 10109 // invalid operation on sealed stream
)

// permanentCode reports whether a JetStream API error code means that
// publishing the same message again cannot succeed.
func permanentCode(c jetstream.ErrorCode) bool {
	switch c {
	case jetstream.JSErrCodeStreamMessageExceedsMaximum, // stream max_msg_size
		jetstream.JSErrCodeStreamNotFound,
		codeStreamNotMatch,
		codeStreamSealed:
		return true
	}
	return false
}

// isPermanentPublishErr classifies an error of a publish that reached the
// server or was refused by nats.go before sending. Errors that need a
// look-up (no responders) are not handled here.
func isPermanentPublishErr(err error) bool {
	switch {
	case errors.Is(err, natsgo.ErrMaxPayload),
		errors.Is(err, natsgo.ErrBadSubject),
		errors.Is(err, natsgo.ErrHeadersNotSupported),
		errors.Is(err, jetstream.ErrStreamNotFound):
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return permanentCode(apiErr.ErrorCode)
	}
	return false
}

// isNoResponders reports a publish nobody answered: no stream listens on
// the subject, or the stream is between leaders.
func isNoResponders(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, natsgo.ErrNoResponders)
}

// permissionDenied reports whether the connection's last error is a
// publish permission violation for subj. nats.go records it synchronously
// while reading, before it processes any later reply or PONG.
func permissionDenied(err error, subj string) bool {
	return err != nil && errors.Is(err, natsgo.ErrPermissionViolation) &&
		strings.Contains(err.Error(), "Publish to \""+subj+"\"")
}

// classified wraps err as permanent when permanent is true.
func classified(err error, permanent bool) error {
	if permanent {
		return bridge.Permanent(err)
	}
	return err
}

// startError marks a start-up failure that waiting can fix (no server
// answers yet, JetStream has no leader yet, a timeout) as a
// bridge.RetryableError, leaving its text unchanged; anything else
// (authentication, a missing stream, a configuration mismatch) is
// returned as it is.
func startError(err error) error {
	if err != nil && unreachable(err) {
		return bridge.Retryable(err)
	}
	return err
}

// unreachable reports whether err says the server is not reachable or not
// ready yet. A certificate that does not verify needs an operator.
func unreachable(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	if errors.As(err, &verify) || errors.As(err, &unknownCA) || errors.As(err, &badHost) {
		return false
	}
	for _, target := range []error{
		natsgo.ErrNoServers, natsgo.ErrTimeout, natsgo.ErrNoResponders,
		natsgo.ErrConnectionReconnecting, natsgo.ErrDisconnected, natsgo.ErrStaleConnection,
		jetstream.ErrNoStreamResponse, context.DeadlineExceeded, io.EOF, io.ErrUnexpectedEOF,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}
