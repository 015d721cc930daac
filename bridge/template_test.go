package bridge_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

func tmplNote(identifier string) *bridge.Notification {
	return &bridge.Notification{EventType: "mars", Sequence: 42, ID: "mars@42", Identifier: json.RawMessage(identifier)}
}

func TestTemplateRender(t *testing.T) {
	const ident = `{"class":"od","stream":"en.fc","date":20250101,"step":1.5,"expver":"0001","weird":"a.b*c>d%e f","empty":"","nul":null,"obj":{"b":1, "a":[1, 2]},"utf":"é","dash_ok":"a-b_c"}`
	tests := []struct {
		tmpl string
		enc  bridge.Encoding
		want string
	}{
		// NATS: each value is one token, percent-encoded outside [A-Za-z0-9_-].
		{"aviso.{event_type}", bridge.EncodeNATSSubject, "aviso.mars"},
		{"aviso.{event_type}.{identifier.class}.{identifier.stream}", bridge.EncodeNATSSubject, "aviso.mars.od.en%2Efc"},
		{"x.{identifier.weird}", bridge.EncodeNATSSubject, "x.a%2Eb%2Ac%3Ed%25e%20f"},
		{"x.{identifier.missing}.{identifier.nul}", bridge.EncodeNATSSubject, "x._._"},
		{"x.{identifier.empty}", bridge.EncodeNATSSubject, "x._"},
		{"x.{identifier.date}.{identifier.step}", bridge.EncodeNATSSubject, "x.20250101.1%2E5"},
		{"x.{identifier.obj}", bridge.EncodeNATSSubject, "x.%7B%22b%22%3A1%2C%22a%22%3A%5B1%2C2%5D%7D"},
		{"x.{identifier.utf}.{identifier.dash_ok}", bridge.EncodeNATSSubject, "x.%C3%A9.a-b_c"},
		{"x.{id}.{sequence}", bridge.EncodeNATSSubject, "x.mars%4042.42"},
		{"static.subject", bridge.EncodeNATSSubject, "static.subject"},
		// Kafka topics: outside [A-Za-z0-9._-] becomes '_'.
		{"aviso.{event_type}.{identifier.weird}", bridge.EncodeKafkaTopic, "aviso.mars.a.b_c_d_e_f"},
		{"aviso-{identifier.stream}-{identifier.utf}", bridge.EncodeKafkaTopic, "aviso-en.fc-__"},
		{"t.{identifier.missing}", bridge.EncodeKafkaTopic, "t._"},
		// Keys: verbatim.
		{"{event_type}", bridge.EncodeNone, "mars"},
		{"{identifier.class}/{identifier.weird}/{id}", bridge.EncodeNone, "od/a.b*c>d%e f/mars@42"},
		{"{identifier.missing}", bridge.EncodeNone, "_"},
		{"", bridge.EncodeNone, ""},
	}
	n := tmplNote(ident)
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			tm, err := bridge.ParseTemplate(tt.tmpl, tt.enc)
			if err != nil {
				t.Fatal(err)
			}
			if got := tm.Render(n); got != tt.want {
				t.Fatalf("Render = %q, want %q", got, tt.want)
			}
			if tm.String() != tt.tmpl {
				t.Fatalf("String = %q", tm.String())
			}
		})
	}
}

// {listener} renders the notification's listener name, encoded like every
// other value: one percent-encoded token in NATS subjects, '_' for bytes
// outside [A-Za-z0-9._-] in Kafka topics, verbatim in keys; an unnamed
// listener renders like a missing value.
func TestTemplateListener(t *testing.T) {
	tests := []struct {
		tmpl     string
		enc      bridge.Encoding
		listener string
		want     string
	}{
		{"aviso.{listener}.{event_type}", bridge.EncodeNATSSubject, "mars-od_1", "aviso.mars-od_1.mars"},
		{"aviso.{listener}", bridge.EncodeNATSSubject, "mars.od *>%", "aviso.mars%2Eod%20%2A%3E%25"},
		{"dlq.{listener}", bridge.EncodeNATSSubject, "", "dlq._"},
		{"aviso-{listener}", bridge.EncodeKafkaTopic, "mars.od/en fc", "aviso-mars.od_en_fc"},
		{"aviso-{listener}", bridge.EncodeKafkaTopic, "", "aviso-_"},
		{"{listener}/{identifier.class}", bridge.EncodeNone, "mars od/é", "mars od/é/od"},
		{"{listener}", bridge.EncodeNone, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl+"/"+tt.listener, func(t *testing.T) {
			tm, err := bridge.ParseTemplate(tt.tmpl, tt.enc)
			if err != nil {
				t.Fatal(err)
			}
			n := tmplNote(`{"class":"od"}`)
			n.Listener = tt.listener
			if got := tm.Render(n); got != tt.want {
				t.Fatalf("Render with listener %q = %q, want %q", tt.listener, got, tt.want)
			}
		})
	}
}

func TestTemplateRenderWithoutIdentifier(t *testing.T) {
	tm, err := bridge.ParseTemplate("a.{identifier.class}", bridge.EncodeNATSSubject)
	if err != nil {
		t.Fatal(err)
	}
	for _, ident := range []string{"", "null", "[1]", "{bad"} {
		if got := tm.Render(tmplNote(ident)); got != "a._" {
			t.Errorf("identifier %q: %q", ident, got)
		}
	}
}

func TestParseTemplateErrors(t *testing.T) {
	tests := []struct{ tmpl, want string }{
		{"aviso.{event}", "unknown placeholder {event}"},
		{"aviso.{identifier.}", "unknown placeholder {identifier.}"},
		{"aviso.{identifier}", "unknown placeholder {identifier}"},
		{"aviso.{}", "unknown placeholder {}"},
		{"aviso.{listeners}", "unknown placeholder {listeners} (known: {event_type}, {sequence}, {id}, {identifier.KEY}, {listener})"},
		{"aviso.{event_type", "'{' without a matching '}'"},
		{"aviso.event_type}", "'}' without a matching '{'"},
		{"a.{x{y}}", "unknown placeholder"},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			_, err := bridge.ParseTemplate(tt.tmpl, bridge.EncodeNATSSubject)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"`+tt.tmpl+`"`) {
				t.Fatalf("error %q does not quote the template and say %q", err, tt.want)
			}
		})
	}
}

func TestTemplateStaticAndWildcard(t *testing.T) {
	tests := []struct {
		tmpl     string
		static   bool
		wildcard string
	}{
		{"aviso.dlq", true, "aviso.dlq"},
		{"aviso.{event_type}", false, "aviso.*"},
		{"aviso.{event_type}.{identifier.class}.x", false, "aviso.*.*.x"},
		{"aviso.pre{event_type}post.end", false, "aviso.*.end"},
		{"{event_type}", false, "*"},
		{"aviso.{listener}.{event_type}", false, "aviso.*.*"},
		{"a.{event_type}{sequence}.b", false, "a.*.b"},
		{"a.>", true, "a.>"},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			tm, err := bridge.ParseTemplate(tt.tmpl, bridge.EncodeNATSSubject)
			if err != nil {
				t.Fatal(err)
			}
			if tm.Static() != tt.static || tm.Wildcard() != tt.wildcard {
				t.Fatalf("Static %v Wildcard %q, want %v %q", tm.Static(), tm.Wildcard(), tt.static, tt.wildcard)
			}
		})
	}
}

func TestIdentifierValue(t *testing.T) {
	n := tmplNote(`{"s":"x\"y","n":12,"b":true,"z":null,"o":{ "k" : [1, 2] }}`)
	for k, want := range map[string]string{"s": `x"y`, "n": "12", "b": "true", "o": `{"k":[1,2]}`} {
		if v, ok := n.IdentifierValue(k); !ok || v != want {
			t.Errorf("IdentifierValue(%q) = %q, %v; want %q", k, v, ok, want)
		}
	}
	for _, k := range []string{"z", "absent"} {
		if v, ok := n.IdentifierValue(k); ok {
			t.Errorf("IdentifierValue(%q) = %q, true; want absent", k, v)
		}
	}
}

// Identifier values that are not strings (interface.md section 4) render
// as their compact JSON, then encoded for the target: numbers, booleans,
// polygons (arrays of [lat, lon] pairs) and objects, in NATS subjects,
// Kafka topics and Kafka keys.
func TestTemplateNonStringIdentifierValues(t *testing.T) {
	const ident = `{"step": 12, "neg": -3, "frac": 1.50, "exp": 1E+3, "big": 12345678901234567890,
		"flag": true, "off": false,
		"poly": [ [52.5, -1.25], [ 53.0,0.75 ] , [52.5,-1.25]],
		"point": [[10, 20]], "empty": [], "obj": { "lat" : 1, "lon" : [2] }, "emptyobj": {}}`
	tests := []struct {
		key       string
		subject   string // NATS subject token
		topic     string // Kafka topic part
		recordKey string // Kafka key (verbatim)
	}{
		{"step", "12", "12", "12"},
		{"neg", "-3", "-3", "-3"},
		{"frac", "1%2E50", "1.50", "1.50"},
		{"exp", "1E%2B3", "1E_3", "1E+3"},
		{"big", "12345678901234567890", "12345678901234567890", "12345678901234567890"},
		{"flag", "true", "true", "true"},
		{"off", "false", "false", "false"},
		{"poly", "%5B%5B52%2E5%2C-1%2E25%5D%2C%5B53%2E0%2C0%2E75%5D%2C%5B52%2E5%2C-1%2E25%5D%5D",
			"__52.5_-1.25___53.0_0.75___52.5_-1.25__", "[[52.5,-1.25],[53.0,0.75],[52.5,-1.25]]"},
		{"point", "%5B%5B10%2C20%5D%5D", "__10_20__", "[[10,20]]"},
		{"empty", "%5B%5D", "__", "[]"},
		{"obj", "%7B%22lat%22%3A1%2C%22lon%22%3A%5B2%5D%7D", "__lat__1__lon___2__", `{"lat":1,"lon":[2]}`},
		{"emptyobj", "%7B%7D", "__", "{}"},
	}
	n := tmplNote(ident)
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			for _, c := range []struct {
				tmpl string
				enc  bridge.Encoding
				want string
			}{
				{"aviso.{event_type}.{identifier." + tt.key + "}.end", bridge.EncodeNATSSubject, "aviso.mars." + tt.subject + ".end"},
				{"aviso.{event_type}.{identifier." + tt.key + "}", bridge.EncodeKafkaTopic, "aviso.mars." + tt.topic},
				{"{event_type}/{identifier." + tt.key + "}", bridge.EncodeNone, "mars/" + tt.recordKey},
			} {
				tm, err := bridge.ParseTemplate(c.tmpl, c.enc)
				if err != nil {
					t.Fatal(err)
				}
				got := tm.Render(n)
				if got != c.want {
					t.Errorf("%q renders %q, want %q", c.tmpl, got, c.want)
				}
				if c.enc == bridge.EncodeNATSSubject && strings.Count(got, ".") != 3 {
					t.Errorf("%q: the value is not one subject token: %q", c.tmpl, got)
				}
			}
		})
	}
}
