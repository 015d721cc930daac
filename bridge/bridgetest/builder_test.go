package bridgetest_test

import (
	"encoding/json"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/bridge"
	"github.com/aviso-bridge/aviso-bridge/bridge/bridgetest"
)

func TestNotification(t *testing.T) {
	for _, tt := range []struct {
		name           string
		opts           []bridgetest.Option
		dataLen, ceLen int
		schema, ident  bool
	}{
		{name: "default", schema: true, ident: true},
		{name: "data size", opts: []bridgetest.Option{bridgetest.DataSize(500)}, dataLen: 500, schema: true, ident: true},
		{name: "size", opts: []bridgetest.Option{bridgetest.Size(2048), bridgetest.NoDataSchema()}, ceLen: 2048},
		{name: "identifier", opts: []bridgetest.Option{bridgetest.Identifier(`{"step":12}`), bridgetest.EventType("my.event")}, schema: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := bridgetest.Notification(42, tt.opts...)
			var ce struct {
				ID, Source, Type, Time, DataSchema string
				Data                               json.RawMessage
			}
			if err := json.Unmarshal(n.CloudEvent, &ce); err != nil {
				t.Fatalf("CloudEvent %s: %v", n.CloudEvent, err)
			}
			var data struct{ Identifier json.RawMessage }
			if err := json.Unmarshal(n.Data, &data); err != nil {
				t.Fatal(err)
			}
			switch {
			case ce.ID != n.ID || n.ID != bridge.EventID(n.EventType, 42) || ce.Source != n.Source || ce.Type != n.Type || ce.Time != n.TimeRaw || ce.DataSchema != n.DataSchema:
				t.Fatalf("attributes differ from the CloudEvent: %+v\n%s", n, n.CloudEvent)
			case string(ce.Data) != string(n.Data) || string(data.Identifier) != string(n.Identifier):
				t.Fatalf("Data %s / Identifier %s differ from the CloudEvent %s", n.Data, n.Identifier, n.CloudEvent)
			case tt.dataLen > 0 && len(n.Data) != tt.dataLen, tt.ceLen > 0 && len(n.CloudEvent) != tt.ceLen:
				t.Fatalf("sizes %d / %d, want %d / %d", len(n.Data), len(n.CloudEvent), tt.dataLen, tt.ceLen)
			case (n.DataSchema != "") != tt.schema:
				t.Fatalf("dataschema %q", n.DataSchema)
			}
			if v, ok := n.IdentifierValue("step"); tt.ident && (!ok || v != "2") {
				t.Fatalf("default step = %q, want 42 mod 4", v)
			}
		})
	}
}
