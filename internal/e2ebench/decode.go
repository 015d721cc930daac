package e2ebench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

// DecodeConfig configures Decode.
type DecodeConfig struct {
	// N is the number of notifications in the replayed stream (default
	// 100000).
	N int
	// Passes is how many times each reader reads the whole stream, the two
	// alternating (default 3).
	Passes int
	// FrameSize is the SSE event size of a notification (default
	// DefaultFrameSize).
	FrameSize int
}

// Pass is what one reader did over all passes: Frames notifications and
// Bytes of response body in Elapsed.
type Pass struct {
	Frames  int
	Bytes   int64
	Elapsed time.Duration
}

// FramesPerSec is notifications per second.
func (p Pass) FramesPerSec() float64 { return perSec(float64(p.Frames), p.Elapsed) }

// MBPerSec is megabytes (10^6) of response body per second.
func (p Pass) MBPerSec() float64 { return perSec(float64(p.Bytes)/1e6, p.Elapsed) }

func perSec(v float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return v / d.Seconds()
}

// DecodeResult compares the aviso client with a raw line scan of the same
// bytes.
type DecodeResult struct {
	// Aviso is Client.Connect + Stream.Next (go-sse parsing, frame and
	// CloudEvent decoding), configured as the bridge configures it.
	Aviso Pass
	// Raw is a bufio line scan of the same response that counts data
	// lines: the floor set by the server and the loopback connection.
	Raw Pass
	// FrameBytes is the average size of a notification's SSE event.
	FrameBytes float64
}

// Ratio is the aviso client's rate over the raw scan's.
func (r DecodeResult) Ratio() float64 {
	if r.Raw.FramesPerSec() == 0 {
		return 0
	}
	return r.Aviso.FramesPerSec() / r.Raw.FramesPerSec()
}

// Decode measures the aviso client reading N notifications of FrameSize
// bytes from avisotest's /replay over loopback, next to a raw bufio line
// scan of the same response, alternating, Passes times each (the approach
// of aviso's BenchmarkDecode).
func Decode(ctx context.Context, cfg DecodeConfig) (DecodeResult, error) {
	if cfg.N <= 0 {
		cfg.N = 100_000
	}
	if cfg.Passes <= 0 {
		cfg.Passes = 3
	}
	if cfg.FrameSize <= 0 {
		cfg.FrameSize = DefaultFrameSize
	}
	var res DecodeResult
	const et = "mars"
	opts := []avisotest.Option{avisotest.WithClock(fixedClock), avisotest.WithReplayBatch(1000, 0)}
	pad, err := payloadPad(ctx, et, aviso.EventReplay, digits(cfg.N), cfg.FrameSize, opts...)
	if err != nil {
		return res, err
	}
	src, err := avisotest.New(opts...)
	if err != nil {
		return res, fmt.Errorf("aviso test server: %w", err)
	}
	defer src.Close()
	publishN(src, et, cfg.N, pad)
	c, idle := newAvisoClient(src.URL)
	defer idle()

	viaAviso := func() error {
		start := time.Now()
		n, err := decodeAll(ctx, c, et)
		d := time.Since(start)
		if err != nil {
			return err
		}
		if n != cfg.N {
			return fmt.Errorf("aviso client decoded %d notifications, want %d", n, cfg.N)
		}
		res.Aviso.Frames += n
		res.Aviso.Elapsed += d
		return nil
	}
	var size int64
	raw := func() error {
		start := time.Now()
		lines, bytes, err := scanAll(ctx, c.HTTPClient, src.URL, et)
		d := time.Since(start)
		if err != nil {
			return err
		}
		if lines < cfg.N {
			return fmt.Errorf("raw scan found %d data lines, want at least %d", lines, cfg.N)
		}
		size = bytes
		res.Raw.Frames += cfg.N
		res.Raw.Bytes += bytes
		res.Raw.Elapsed += d
		return nil
	}
	for p := range cfg.Passes {
		if err := alternate(p, raw, viaAviso); err != nil {
			return res, err
		}
	}
	res.Aviso.Bytes = res.Raw.Bytes // the same responses
	// Control frames (replay_started, replay_completed, closing) are a few
	// hundred bytes of the whole body.
	res.FrameBytes = float64(size) / float64(cfg.N)
	return res, nil
}

// decodeAll reads a whole replay of eventType with the aviso client and
// counts its notifications.
func decodeAll(ctx context.Context, c *aviso.Client, eventType string) (int, error) {
	from := uint64(1)
	st, err := c.Connect(ctx, aviso.Replay, aviso.Request{EventType: eventType, FromID: &from})
	if err != nil {
		return 0, fmt.Errorf("aviso client: %w", err)
	}
	defer st.Close()
	n := 0
	for {
		f, err := st.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("aviso client after %d notifications: %w", n, err)
		}
		if f.Kind == aviso.KindNotification {
			n++
		}
	}
}

// scanAll POSTs the same replay request and counts the data lines of the
// response with a bufio.Scanner; it returns the count and the body size.
func scanAll(ctx context.Context, hc *http.Client, baseURL, eventType string) (int, int64, error) {
	body := `{"event_type":"` + eventType + `","identifier":{},"from_id":"1"}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/api/v1/replay", strings.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("raw scan: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("raw scan: HTTP %d from %s", resp.StatusCode, req.URL)
	}
	cr := &countingReader{r: resp.Body}
	sc := bufio.NewScanner(cr)
	sc.Buffer(make([]byte, 64<<10), aviso.DefaultMaxEventSize)
	n := 0
	for sc.Scan() {
		if bytes.HasPrefix(sc.Bytes(), []byte("data: ")) {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		return n, cr.n, fmt.Errorf("raw scan: %w", err)
	}
	return n, cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
