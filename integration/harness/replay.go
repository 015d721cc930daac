package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// ReplayEvent is one notification of a replay, as the server wrote it.
type ReplayEvent struct {
	Sequence   uint64
	CloudEvent []byte // the SSE data line: the CloudEvent JSON
}

// Replay asks an aviso server (avisotest or aviso-server) at baseURL for the
// history of eventType matching identifier (a JSON object) from sequence
// from, with a plain POST /api/v1/replay, and returns every notification of
// the answer in order, until the server ends the stream. It is the oracle
// the suites compare the sink with: what the server itself says it holds.
func Replay(t testing.TB, client *http.Client, baseURL, eventType, identifier string, from uint64) []ReplayEvent {
	t.Helper()
	body := fmt.Sprintf(`{"event_type":%q,"identifier":%s,"from_id":"%d"}`, eventType, identifier, from)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(baseURL, "/")+"/api/v1/replay", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("replay: %s", resp.Status)
	}
	var out []ReplayEvent
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	event := ""
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("event: ")):
			event = string(line[len("event: "):])
		case bytes.HasPrefix(line, []byte("data: ")) && event == "replay":
			data := bytes.Clone(line[len("data: "):])
			var ce struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(data, &ce); err != nil {
				t.Fatalf("replay frame %q: %v", data, err)
			}
			out = append(out, ReplayEvent{Sequence: SeqOfID(t, eventType, ce.ID), CloudEvent: data})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("replay: reading the stream: %v", err)
	}
	return out
}
