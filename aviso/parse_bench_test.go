package aviso

import (
	"strings"
	"testing"
)

// BenchmarkParseNotification is the decode cost per notification on the
// stream path (no copy of the input).
func BenchmarkParseNotification(b *testing.B) {
	raw := []byte(`{"data":{"identifier":{"class":"od","date":"20250706","domain":"g","expver":"0001","step":"12","stream":"oper","time":"1200","type":"fc"},"payload":{"note":"` +
		strings.Repeat("x", 250) + `"}},"datacontenttype":"application/json","dataschema":"http://localhost/schema/mars","id":"mars@123456","source":"http://localhost","specversion":"1.0","time":"2026-03-04T10:00:00.384985528Z","type":"int.ecmwf.aviso.mars"}`)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := parseNotification(raw); err != nil {
			b.Fatal(err)
		}
	}
}
