package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// errHeldBack fails produce requests that follow a reported failure until
// the pipeline has re-published from the failed notification (see Sink). It
// is not "temporary" to kafka-go, so the writer reports it at once instead
// of retrying.
var errHeldBack = errors.New("held back: an earlier publish failed and has not been re-published yet")

// errClosed is returned by Publish and DeadLetter after Close.
var errClosed = errors.New("kafka sink: closed")

// class is what retrying can do about an error.
type class int

const (
	// retryable: broker unavailable, leader change, network, timeout.
	retryable class = iota
	// permanent: retrying the same record cannot succeed.
	permanent
	// unknownTopic: permanent once metadata confirms the topic is missing.
	unknownTopic
	// tooLarge: the broker refused the batch as too large; permanent for a
	// single record, retryable (one record per request) for a batch.
	tooLarge
)

// permanentCodes are the Kafka error codes that retrying cannot fix.
var permanentCodes = map[kafkago.Error]bool{
	kafkago.InvalidTopic:                       true,
	kafkago.InvalidRequiredAcks:                true,
	kafkago.TopicAuthorizationFailed:           true,
	kafkago.GroupAuthorizationFailed:           true,
	kafkago.ClusterAuthorizationFailed:         true,
	kafkago.TransactionalIDAuthorizationFailed: true,
	kafkago.BrokerAuthorizationFailed:          true,
	kafkago.SASLAuthenticationFailed:           true,
	kafkago.UnsupportedSASLMechanism:           true,
	kafkago.IllegalSASLState:                   true,
	kafkago.InvalidTimestamp:                   true,
	kafkago.UnsupportedForMessageFormat:        true,
	kafkago.PolicyViolation:                    true,
	kafkago.UnsupportedCompressionType:         true,
	kafkago.InvalidRecord:                      true,
	kafkago.InvalidMessageSize:                 true,
}

// classify says what retrying can do about err, a kafka-go error from a
// produce (WriteMessages, Completion) or a metadata request.
func classify(err error) class {
	if err == nil || errors.Is(err, errHeldBack) {
		return retryable
	}
	var werrs kafkago.WriteErrors
	if errors.As(err, &werrs) {
		// kafka-go's WriteErrors does not unwrap: classify the first failure.
		for _, e := range werrs {
			if e != nil {
				return classify(e)
			}
		}
		return retryable
	}
	var tooBig kafkago.MessageTooLargeError
	if errors.As(err, &tooBig) {
		// The record alone is larger than KAFKA_BATCH_BYTES (client side).
		return permanent
	}
	var code kafkago.Error
	if errors.As(err, &code) {
		switch {
		case code == kafkago.MessageSizeTooLarge || code == kafkago.RecordListTooLarge:
			return tooLarge
		case code == kafkago.UnknownTopicOrPartition:
			return unknownTopic
		case permanentCodes[code]:
			return permanent
		}
		return retryable
	}
	// A broker certificate that does not verify needs an operator, not a retry.
	var unknownCA x509.UnknownAuthorityError
	var invalidCert x509.CertificateInvalidError
	var badHost x509.HostnameError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &unknownCA) || errors.As(err, &invalidCert) || errors.As(err, &badHost) || errors.As(err, &verify) {
		return permanent
	}
	return retryable
}

// wrapTopic names the topic (and partition when known) in err.
func wrapTopic(err error, topic string, partition int) error {
	if partition >= 0 {
		return fmt.Errorf("kafka topic %q partition %d: %w", topic, partition, err)
	}
	return fmt.Errorf("kafka topic %q: %w", topic, err)
}

// startError classifies a start-up failure: permanent (bridge.Permanent)
// when retrying cannot fix it (authentication, authorisation, certificates),
// so that the caller stops waiting for the brokers; retryable
// (bridge.Retryable) when the brokers are not reachable or not ready yet
// (refused, reset, timeout, no leader), so that the caller waits for them.
// The text is unchanged either way.
func startError(err error) error {
	switch {
	case err == nil || bridge.IsPermanent(err) || bridge.IsRetryable(err):
		return err
	case classify(err) == permanent:
		return bridge.Permanent(err)
	case classify(err) == retryable && unreachable(err):
		return bridge.Retryable(err)
	}
	return err
}

// unreachable reports whether err says a broker is not reachable or not
// ready yet: a network failure, a timeout, or a Kafka error code that
// kafka-go marks temporary (leader not available, not enough replicas).
func unreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var code kafkago.Error
	if errors.As(err, &code) {
		return code.Temporary() || code.Timeout()
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}
