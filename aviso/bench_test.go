package aviso_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aviso-bridge/aviso-bridge/aviso"
	"github.com/aviso-bridge/aviso-bridge/avisotest"
)

const benchFrames = 100_000

var benchIdentifier = map[string]string{
	"class": "od", "date": "20250706", "domain": "g", "expver": "0001",
	"step": "12", "stream": "oper", "time": "1200", "type": "fc",
}

// benchServer serves benchFrames replay frames of about 600 bytes each and
// returns the size of the whole replay stream.
func benchServer(b *testing.B) (*avisotest.Server, int64) {
	b.Helper()
	clock := func() time.Time { return time.Date(2026, 3, 4, 10, 0, 0, 384985528, time.UTC) }
	s := avisotest.NewServer(b, avisotest.WithClock(clock), avisotest.WithReplayBatch(1000, 0))
	// Size the payload so that "event: replay\ndata: <CloudEvent>\n\n" is 600 bytes for 6-digit sequences.
	probe := avisotest.NewServer(b, avisotest.WithClock(clock))
	probe.Publish("mars", benchIdentifier, map[string]string{"note": ""})
	one := replayStreamSize(b, probe) // opening + 1 frame + closing
	probe.Publish("mars", benchIdentifier, map[string]string{"note": ""})
	frameLen := replayStreamSize(b, probe) - one
	pad := strings.Repeat("x", 600-int(frameLen)-5) // 5: sequence digits beyond "2"
	for range benchFrames {
		s.Publish("mars", benchIdentifier, map[string]string{"note": pad})
	}
	return s, replayStreamSize(b, s)
}

func replayStreamSize(b *testing.B, s *avisotest.Server) int64 {
	b.Helper()
	body := replayBody(b, s)
	defer body.Close()
	n, err := io.Copy(io.Discard, body)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func replayBody(b *testing.B, s *avisotest.Server) io.ReadCloser {
	b.Helper()
	resp, err := http.Post(s.URL+"/api/v1/replay", "application/json",
		strings.NewReader(`{"event_type":"mars","identifier":{},"from_id":"0"}`))
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("replay: HTTP %d", resp.StatusCode)
	}
	return resp.Body
}

// BenchmarkDecode measures the decoder over a loopback connection to
// avisotest: one op is a whole /replay stream of 100k notifications of 600
// bytes. "aviso" is Client.Connect + Stream.Next (go-sse parsing, frame and
// CloudEvent decoding); "rawscan" is a bufio line scan of the same bytes that
// counts data lines, the floor set by the network and the server.
//
//	go test ./aviso -run '^$' -bench Decode -benchtime 5x
func BenchmarkDecode(b *testing.B) {
	s, size := benchServer(b)
	report := func(b *testing.B) {
		b.ReportMetric(float64(benchFrames*b.N)/b.Elapsed().Seconds(), "frames/s")
		b.ReportMetric(float64(size)/float64(benchFrames), "B/frame")
	}
	b.Run("aviso", func(b *testing.B) {
		c := &aviso.Client{BaseURL: s.URL}
		from := uint64(0)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			st, err := c.Connect(context.Background(), aviso.Replay, aviso.Request{EventType: "mars", FromID: &from})
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for {
				f, err := st.Next()
				if err != nil {
					break
				}
				if f.Kind == aviso.KindNotification {
					n++
				}
			}
			st.Close()
			if n != benchFrames {
				b.Fatalf("decoded %d notifications, want %d", n, benchFrames)
			}
		}
		report(b)
	})
	b.Run("rawscan", func(b *testing.B) {
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			body := replayBody(b, s)
			sc := bufio.NewScanner(body)
			sc.Buffer(make([]byte, 64<<10), 8<<20)
			n := 0
			for sc.Scan() {
				if bytes.HasPrefix(sc.Bytes(), []byte("data: ")) {
					n++
				}
			}
			body.Close()
			if n < benchFrames {
				b.Fatalf("scanned %d data lines, want at least %d", n, benchFrames)
			}
		}
		report(b)
	})
}

var sampleCloudEvent = []byte(`{"data":{"identifier":{"class":"od","date":"20250706","domain":"g","expver":"0001","step":"12","stream":"oper","time":"1200","type":"fc"},"payload":{"note":"` +
	strings.Repeat("x", 250) + `"}},"datacontenttype":"application/json","dataschema":"http://localhost/schema/mars","id":"mars@123456","source":"http://localhost","specversion":"1.0","time":"2026-03-04T10:00:00.384985528Z","type":"int.ecmwf.aviso.mars"}`)

// BenchmarkParseCloudEvent compares the CloudEvent scanner with the
// encoding/json alternatives it replaced (the reason it exists).
func BenchmarkParseCloudEvent(b *testing.B) {
	b.Run("scanner", func(b *testing.B) {
		b.SetBytes(int64(len(sampleCloudEvent)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := aviso.ParseCloudEvent(sampleCloudEvent); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json-struct", func(b *testing.B) {
		type ce struct {
			ID, Source, Type, Time, DataSchema, DataContentType, SpecVersion string
			Data                                                             struct {
				Identifier json.RawMessage `json:"identifier"`
			} `json:"data"`
		}
		b.SetBytes(int64(len(sampleCloudEvent)))
		b.ReportAllocs()
		for b.Loop() {
			var v ce
			if err := json.Unmarshal(sampleCloudEvent, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json-valid-only", func(b *testing.B) {
		b.SetBytes(int64(len(sampleCloudEvent)))
		for b.Loop() {
			if !json.Valid(sampleCloudEvent) {
				b.Fatal("invalid")
			}
		}
	})
}
