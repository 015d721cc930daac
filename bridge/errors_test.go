package bridge_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

func TestRetryable(t *testing.T) {
	base := errors.New("dial tcp 127.0.0.1:4222: connect: connection refused")
	err := fmt.Errorf("NATS_URL nats://127.0.0.1:4222: connect: %w", base)
	r := bridge.Retryable(err)
	var re *bridge.RetryableError
	if !errors.As(r, &re) || re.Wait != 0 || !bridge.IsRetryable(r) {
		t.Fatalf("Retryable(%v) = %#v, not a RetryableError", err, r)
	}
	if r.Error() != err.Error() || !errors.Is(r, base) {
		t.Fatalf("Retryable changed the error: %q", r)
	}
	if bridge.IsRetryable(err) || bridge.IsPermanent(r) {
		t.Fatal("retryable and permanent are not told apart")
	}
	var inner *bridge.RetryableError
	if again := bridge.Retryable(fmt.Errorf("open sink: %w", r)); !errors.As(again, &re) || errors.As(re.Err, &inner) {
		t.Fatalf("a retryable error is wrapped twice: %#v", again)
	}
	if p := bridge.Retryable(bridge.Permanent(base)); bridge.IsRetryable(p) || !bridge.IsPermanent(p) {
		t.Fatal("Retryable turned a permanent error retryable")
	}
	if bridge.Retryable(nil) != nil || bridge.Permanent(nil) != nil {
		t.Fatal("nil does not stay nil")
	}
	w := fmt.Errorf("start: %w", &bridge.RetryableError{Err: base, Wait: time.Second})
	if !errors.As(w, &re) || re.Wait != time.Second {
		t.Fatalf("Wait lost: %#v", w)
	}
}
