package e2ebench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/supervisor"
)

// Defaults of the runner configurations.
const (
	// DefaultFrameSize is the size of one notification on the wire: the
	// whole SSE event "event: replay\ndata: <CloudEvent>\n\n".
	DefaultFrameSize = 600
	// DefaultWindow is BRIDGE_MAX_IN_FLIGHT and NATS_MAX_PENDING at their
	// defaults; the bare baselines get the same window.
	DefaultWindow = 256
	// DefaultRounds is how many alternating rounds of bridge and baseline a
	// throughput runner makes.
	DefaultRounds = 4
)

// The identifier of every benchmark notification (a MARS forecast field).
var benchIdentifier = map[string]string{
	"class": "od", "date": "20250706", "domain": "g", "expver": "0001",
	"step": "12", "stream": "oper", "time": "1200", "type": "fc",
}

// fixedClock gives replayed notifications a constant CloudEvent time (with
// nanoseconds, so every frame of a run has the same length).
func fixedClock() time.Time { return time.Date(2026, 3, 4, 10, 0, 0, 384985528, time.UTC) }

// scratch returns dir, or a new temporary directory and a function that
// removes it.
func scratch(dir string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, nil
	}
	d, err := os.MkdirTemp("", "aviso-bench-")
	if err != nil {
		return "", nil, fmt.Errorf("scratch directory: %w", err)
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// newAvisoClient builds the aviso client as cmd/aviso-bridge does at its
// defaults (no TLS material, no credentials): a cloned default transport
// without a response header timeout, redirects surfaced, the default
// maximum event size and idle budget.
func newAvisoClient(baseURL string) (*aviso.Client, func()) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 0
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	c := &aviso.Client{
		BaseURL: baseURL,
		HTTPClient: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		UserAgent:    "aviso-bridge/bench",
		MaxEventSize: aviso.DefaultMaxEventSize,
		IdleTimeout:  aviso.IdleBudget(aviso.DefaultHeartbeatInterval),
	}
	return c, tr.CloseIdleConnections
}

// payloadPad returns the payload note that makes the SSE event of a
// notification of eventType, sent as SSE event name event (replay or
// live-notification), exactly frameSize bytes long for a sequence of
// digits digits, on a server built with opts. It measures one notification
// on a throwaway server.
func payloadPad(ctx context.Context, eventType, event string, digits, frameSize int, opts ...avisotest.Option) (string, error) {
	probe, err := avisotest.New(opts...)
	if err != nil {
		return "", fmt.Errorf("aviso test server: %w", err)
	}
	defer probe.Close()
	probe.Publish(eventType, benchIdentifier, map[string]string{"note": ""})
	c, done := newAvisoClient(probe.URL)
	defer done()
	ns, err := readNotifications(ctx, c, eventType, 1)
	if err != nil {
		return "", err
	}
	// "event: <event>\ndata: <CloudEvent>\n\n" for sequence 1 (one digit).
	frame := len("event: ") + len(event) + len("\ndata: ") + len(ns[0].CloudEvent) + len("\n\n")
	pad := frameSize - frame - (digits - 1)
	if pad < 0 {
		return "", fmt.Errorf("a %d-byte frame is too small: a notification with an empty note takes %d bytes", frameSize, frame)
	}
	return strings.Repeat("x", pad), nil
}

// publishN publishes n notifications of eventType with the payload note pad.
func publishN(s *avisotest.Server, eventType string, n int, pad string) {
	payload := map[string]string{"note": pad}
	for range n {
		s.Publish(eventType, benchIdentifier, payload)
	}
}

// readNotifications replays eventType from sequence 1 to the end of the
// stream and returns the notifications exactly as the supervisor hands them
// to the pipeline. want > 0 checks the count.
func readNotifications(ctx context.Context, c *aviso.Client, eventType string, want int) ([]*bridge.Notification, error) {
	from := uint64(1)
	st, err := c.Connect(ctx, aviso.Replay, aviso.Request{EventType: eventType, FromID: &from})
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", eventType, err)
	}
	defer st.Close()
	var out []*bridge.Notification
	for {
		f, err := st.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("replay %s after %d notifications: %w", eventType, len(out), err)
		}
		if f.Kind == aviso.KindNotification {
			out = append(out, toBridge(&f.Notification))
		}
		if f.Kind == aviso.KindClosing {
			break
		}
	}
	if want > 0 && len(out) != want {
		return nil, fmt.Errorf("replay %s: %d notifications, want %d", eventType, len(out), want)
	}
	return out, nil
}

// toBridge converts as the supervisor does.
func toBridge(an *aviso.Notification) *bridge.Notification {
	n := supervisor.Convert(an, time.Now())
	return &n
}

// roundEventType is the event type of round r: each round replays its own
// event type, so that message ids never repeat inside a stream's duplicate
// window.
func roundEventType(r int) string { return fmt.Sprintf("e%02d", r) }

// chunks splits n into rounds parts that differ by at most one.
func chunks(n, rounds int) []int {
	out := make([]int, rounds)
	for i := range out {
		out[i] = n*(i+1)/rounds - n*i/rounds
	}
	return out
}

func digits(n int) int { return len(strconv.Itoa(max(n, 1))) }
