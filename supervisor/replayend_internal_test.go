package supervisor

import (
	"testing"
	"time"
)

// The to_date bound the bridge enforces itself (0.7.1 servers) parses every
// format aviso-server accepts (aviso-protocol.md section 2.4).
func TestParseAvisoDate(t *testing.T) {
	t.Parallel()
	ref := time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{in: "2025-01-15T10:00:00Z", want: ref},
		{in: "2025-01-15T12:00:00+02:00", want: ref},
		{in: " 2025-01-15 10:00:00+00:00 ", want: ref},
		{in: "2025-01-15 10:00:00.5+00:00", want: ref.Add(500 * time.Millisecond)},
		{in: "2025-01-15T10:00:00", want: ref},
		{in: "2025-01-15T10:00:00.456", want: ref.Add(456 * time.Millisecond)},
		{in: "2025-01-15 10:00:00", want: ref},
		{in: "1736935200", want: ref},
		{in: "+1736935200", want: ref},
		{in: "1736935200000", want: ref},
		{in: "00001736935200", want: ref},
		{in: "10000000000", want: time.Unix(10000000000, 0).UTC()},
		{in: "946684800000", want: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{in: "-1", bad: true},
		{in: "2025-06-09", bad: true},
		{in: "not-a-date", bad: true},
		{in: "", bad: true},
	}
	for _, tc := range tests {
		got, err := parseAvisoDate(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseAvisoDate(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseAvisoDate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
