package bridge_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/aviso-bridge/aviso-bridge/bridge"
)

func TestNormalizeBaseURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://aviso.ecmwf.int", "https://aviso.ecmwf.int/"},
		{"https://aviso.ecmwf.int/", "https://aviso.ecmwf.int/"},
		{"HTTPS://Aviso.ECMWF.int:443/", "https://aviso.ecmwf.int/"},
		{"http://host:80", "http://host/"},
		{"http://host:443", "http://host:443/"},
		{"https://host:80/", "https://host:80/"},
		{"https://host:8443/aviso", "https://host:8443/aviso/"},
		{"https://host/aviso/", "https://host/aviso/"},
		{"https://host/Aviso/v1", "https://host/Aviso/v1/"}, // path case is kept
		{"https://user:pw@host/p?q=1#frag", "https://host/p/"},
		{"  https://host  ", "https://host/"},
		{"http://[::1]:8080/x", "http://[::1]:8080/x/"},
		{"http://[::1]:80", "http://[::1]/"},
		{"http://[FE80::1]", "http://[fe80::1]/"},
		{"http://127.0.0.1:8000", "http://127.0.0.1:8000/"},
	}
	for _, tt := range tests {
		got, err := bridge.NormalizeBaseURL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeBaseURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "ftp://host", "host:8080", "https://", "https:///path", "://x", "http://[::1"} {
		if got, err := bridge.NormalizeBaseURL(bad); err == nil || !strings.Contains(err.Error(), "base URL") {
			t.Errorf("NormalizeBaseURL(%q) = %q, %v; want a base URL error", bad, got, err)
		}
	}
}

func TestCheckpointKey(t *testing.T) {
	key := func(u, et, ident string) string {
		t.Helper()
		k, err := bridge.CheckpointKey(u, et, json.RawMessage(ident))
		if err != nil {
			t.Fatalf("CheckpointKey(%q, %q, %q): %v", u, et, ident, err)
		}
		return k
	}
	base := key("https://aviso.example/", "mars", `{"class":"od","stream":"enfo","step":[0,6]}`)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(base) {
		t.Fatalf("key %q is not 64 lowercase hex characters", base)
	}
	// Stable: a golden value guards against accidental changes of the
	// derivation (which would make every deployment restart from scratch).
	if got := key("https://aviso.example", "mars", `{}`); got != goldenKey {
		t.Fatalf("key of an empty identifier = %s, want %s", got, goldenKey)
	}
	same := []struct{ u, ident string }{
		{"https://aviso.example", `{"class":"od","stream":"enfo","step":[0,6]}`},
		{"HTTPS://AVISO.example:443/", `{"class":"od","stream":"enfo","step":[0,6]}`},
		{"https://user@aviso.example/?x=1", `{"stream":"enfo","step":[0,6],"class":"od"}`},
		{"https://aviso.example/", "{\n  \"step\" : [0, 6.0],\n  \"class\":\"od\", \"stream\":\"enfo\"}"},
		{"https://aviso.example/", `{"class":"\u006fd","stream":"enfo","step":[0e0,6]}`},
	}
	for _, s := range same {
		if got := key(s.u, "mars", s.ident); got != base {
			t.Errorf("key(%q, %q) = %s, want %s", s.u, s.ident, got, base)
		}
	}
	different := []struct{ u, et, ident string }{
		{"https://aviso.example/aviso/", "mars", `{"class":"od","stream":"enfo","step":[0,6]}`},
		{"http://aviso.example/", "mars", `{"class":"od","stream":"enfo","step":[0,6]}`},
		{"https://aviso.example:8443/", "mars", `{"class":"od","stream":"enfo","step":[0,6]}`},
		{"https://aviso.example/", "diss", `{"class":"od","stream":"enfo","step":[0,6]}`},
		{"https://aviso.example/", "mars", `{"class":"od","stream":"enfo","step":[6,0]}`},
		{"https://aviso.example/", "mars", `{"class":"od","stream":"enfo"}`},
		{"https://aviso.example/", "mars", `{"class":"od","stream":"enfo","step":["0","6"]}`},
	}
	for _, d := range different {
		if got := key(d.u, d.et, d.ident); got == base {
			t.Errorf("key(%q, %q, %q) equals the base key", d.u, d.et, d.ident)
		}
	}
	// An absent identifier is the empty filter.
	if key("https://aviso.example", "mars", "") != key("https://aviso.example", "mars", " {} ") {
		t.Error("empty identifier differs from {}")
	}
	// Length prefixes keep fields apart.
	if key("https://a.example/", "ab", `{}`) == key("https://a.example/a", "b", `{}`) {
		t.Error("fields run together")
	}
}

// goldenKey is CheckpointKey("https://aviso.example", "mars", {}), computed
// independently from aviso-protocol.md 5.13:
//
//	h = sha256(pack('<I', 2))
//	for f in [b'https://aviso.example/', b'mars', b'{}']: h.update(pack('<Q', len(f)) + f)
//	h.update(b'\x00')  # schema fingerprint absent
const goldenKey = "1d04aeab052d4467999e9bfe7c824d1207fcd029e4090748a770f7a0dbeac83c"

func TestCheckpointKeyErrors(t *testing.T) {
	for _, c := range []struct{ u, ident, want string }{
		{"ftp://x", `{}`, "base URL"},
		{"https://x", `{"a":`, "identifier"},
		{"https://x", `{} {}`, "identifier"},
		{"https://x", `{}]`, "identifier"},
		{"https://x", `{"a":1e999}`, "identifier"},
	} {
		if _, err := bridge.CheckpointKey(c.u, "mars", json.RawMessage(c.ident)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckpointKey(%q, %q): %v, want an error naming %s", c.u, c.ident, err, c.want)
		}
	}
}

func TestCanonicalJSON(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{` { "z" : [ 1 , { "y":null, "x":true } ] } `, `{"z":[1,{"x":true,"y":null}]}`},
		{`1.0`, `1`},
		{`-0`, `0`},
		{`1e21`, `1e+21`},
		{`1e20`, `100000000000000000000`},
		{`0.000001`, `0.000001`},
		{`0.0000001`, `1e-7`},
		{`123456789012345678901234567890`, `1.2345678901234568e+29`},
		{`-1.5E-10`, `-1.5e-10`},
		{`"\u00e9\n\t\u0001\"\\/"`, "\"é\\n\\t\\u0001\\\"\\\\/\""},
		{`"\u2028"`, "\"\u2028\""},
		// RFC 8785 orders keys by UTF-16 code units: U+FB33 sorts after
		// U+1F600 (surrogates D83D...) in UTF-16 but before it in UTF-8.
		{`{"\ufb33":1,"\ud83d\ude00":2,"a":3}`, "{\"a\":3,\"\U0001F600\":2,\"\uFB33\":1}"},
	}
	for _, tt := range tests {
		got, err := bridge.CanonicalJSON([]byte(tt.in))
		if err != nil || string(got) != tt.want {
			t.Errorf("CanonicalJSON(%s) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}
