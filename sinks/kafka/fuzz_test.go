package kafka

import (
	"encoding/json"
	"testing"

	kafkago "github.com/segmentio/kafka-go"
)

// FuzzRecordID feeds record bodies read back from the topic (outside input)
// to the start-up scan's id decoder: it must not panic, and it must find
// the id of any JSON object with a string "id".
func FuzzRecordID(f *testing.F) {
	f.Add([]byte(`{"data":{},"id":"mars@42","specversion":"1.0"}`), "")
	f.Add([]byte(`{"identifier":{"step":"1"},"payload":null}`), "mars@1")
	f.Add([]byte(`not json`), "")
	f.Add([]byte(`{"id":42}`), "")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		r := &kafkago.Record{Value: kafkago.NewBytes(body)}
		if header != "" {
			r.Headers = []kafkago.Header{{Key: HeaderID, Value: []byte(header)}}
		}
		got := recordID(r)
		if header != "" {
			if got != header {
				t.Fatalf("recordID = %q, want the ce_id header %q", got, header)
			}
			return
		}
		var ce struct {
			ID *string `json:"id"`
		}
		if len(body) > 0 && body[0] == '{' && json.Unmarshal(body, &ce) == nil && ce.ID != nil && got != *ce.ID {
			t.Fatalf("recordID(%q) = %q, want %q", body, got, *ce.ID)
		}
	})
}
