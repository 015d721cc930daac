package nats

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

// Event types and identifier values come from aviso-server: whatever they
// hold, the rendered subject must be a valid publish subject with one token
// per placeholder.
func FuzzRenderedSubjectValid(f *testing.F) {
	f.Add("mars", "20260304", "od")
	f.Add("my.event", "a b*>%.c", "")
	f.Add("", "\t\r\n", ">")
	f.Add("ünïcode", "..", "*")
	tmpl, err := parseSubjectTemplate("aviso.{event_type}.{identifier.date}.{identifier.class}.{id}")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, eventType, date, class string) {
		ident, _ := json.Marshal(map[string]string{"date": date, "class": class})
		n := &bridge.Notification{EventType: eventType, Sequence: 42, ID: bridge.EventID(eventType, 42), Identifier: ident}
		subj := tmpl.Render(n)
		if err := checkPublishSubject(subj); err != nil {
			t.Fatalf("%q: %v", subj, err)
		}
		if got := strings.Count(subj, "."); got != 4 {
			t.Fatalf("%q has %d dots, want 4", subj, got)
		}
	})
}
